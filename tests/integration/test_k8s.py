"""k8s/: the kustomize base and example overlay render with `kubectl kustomize`, every resource is
valid against the Kubernetes schemas, every TALLY_* key is a real setting, and ports, probes and
commands match what the server does with that configuration."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from server.config import ALL_ROLES, Settings
from server.envoy import envoy_binary
from tests.support.services import ROOT, require

K8S = ROOT / "k8s"
TARGETS = ["base", "overlays/example"]
# The schemas to hold the manifests to: the newest the package knows, and an older supported release.
KUBERNETES_VERSIONS = [kubernetes_validate.latest_version(), "1.30"]


def render(target: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    require(kubectl is not None, "kubectl (Debian package kubernetes-client)")
    assert kubectl is not None
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / target)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=TARGETS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def is_collector(resource: dict[str, Any]) -> bool:
    """`tally collect` reads its own YAML config (workers/collector/config.py), not TALLY_* settings."""
    return resource["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "collector"


def pod_specs(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pod specs of `tally serve` and `tally migrate` (the collector is checked on its own)."""
    return {
        f"{r['kind']}/{r['metadata']['name']}": r["spec"]["template"]["spec"]
        for r in resources
        if r["kind"] in ("Deployment", "Job") and not is_collector(r)
    }


def server_deployments(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: d for name, d in by_kind(resources, "Deployment").items() if not is_collector(d)}


def is_setting(key: str) -> bool:
    """TALLY_KAFKA__TOPIC -> Settings.kafka.topic, following nested models."""
    assert key.startswith("TALLY_"), key
    model: type[BaseModel] = Settings
    parts = key.removeprefix("TALLY_").lower().split("__")
    for index, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if index < len(parts) - 1:
            nested = field.annotation
            if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
                return False
            model = nested
    return True


def settings_for(
    resources: list[dict[str, Any]], container: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The Settings a container's process builds from its environment (ConfigMap, Secret, env)."""
    configmaps = by_kind(resources, "ConfigMap")
    secrets = by_kind(resources, "Secret")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]]["data"])
        elif source["secretRef"]["name"] in secrets:
            env.update(secrets[source["secretRef"]["name"]].get("stringData", {}))
    env.update({item["name"]: item["value"] for item in container.get("env", []) if "value" in item})
    with monkeypatch.context() as patch:
        for key in [k for k in list(__import__("os").environ) if k.startswith("TALLY_")]:
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        return Settings()


def test_renders_with_every_role(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, resources = rendered
    deployments = server_deployments(resources)
    roles = set()
    for deployment in deployments.values():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["tally", "serve"]
        (role,) = [e["value"] for e in container["env"] if e["name"] == "TALLY_ROLES"]
        roles.add(role)
        assert deployment["metadata"]["name"] == f"tally-{role}"
    assert roles == set(ALL_ROLES)
    assert by_kind(resources, "Job")["tally-migrate"]["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "tally",
        "migrate",
    ]


def test_every_resource_is_valid(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, resources = rendered
    for version in KUBERNETES_VERSIONS:
        for resource in resources:
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{resource['kind']}/{resource['metadata']['name']} on {version}: {exc.message}")


def test_validation_catches_a_bad_field() -> None:
    deployment = by_kind(render("base"), "Deployment")["tally-api"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_every_tally_key_is_a_setting(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, resources = rendered
    keys: set[str] = set()
    for configmap in by_kind(resources, "ConfigMap").values():
        if not is_collector(configmap):
            keys |= set(configmap["data"])
    for secret in by_kind(resources, "Secret").values():
        if not is_collector(secret):
            keys |= set(secret.get("data", {})) | set(secret.get("stringData", {}))
    for spec in pod_specs(resources).values():
        for container in spec.get("initContainers", []) + spec["containers"]:
            keys |= {item["name"] for item in container.get("env", [])}
    tally_keys = {key for key in keys if key.startswith("TALLY_")}
    assert tally_keys, "no TALLY_* configuration found"
    assert [key for key in sorted(tally_keys) if not is_setting(key)] == []
    assert keys == tally_keys, f"configuration that Tally does not read: {sorted(keys - tally_keys)}"


def test_references_resolve(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    target, resources = rendered
    configmaps, secrets = by_kind(resources, "ConfigMap"), by_kind(resources, "Secret")
    for name, spec in pod_specs(resources).items():
        for container in spec.get("initContainers", []) + spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps, name
                elif target != "base":  # the base references a Secret that overlays provide
                    assert source["secretRef"]["name"] in secrets, name
    deployments = by_kind(resources, "Deployment")
    for hpa in by_kind(resources, "HorizontalPodAutoscaler").values():
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    pdbs = by_kind(resources, "PodDisruptionBudget")
    assert set(pdbs) == {"tally-api", "tally-sink"} == set(by_kind(resources, "HorizontalPodAutoscaler"))
    for pdb in pdbs.values():
        selected = [
            d
            for d in deployments.values()
            if pdb["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, pdb["metadata"]["name"]
    for service in by_kind(resources, "Service").values():
        selected = [
            d
            for d in deployments.values()
            if service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected, service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            named = {
                p["name"] for d in selected for c in d["spec"]["template"]["spec"]["containers"] for p in c["ports"]
            }
            assert port["targetPort"] in named, (service["metadata"]["name"], port)


def test_ports_and_probes_match_the_server(
    rendered: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, resources = rendered
    for name, deployment in server_deployments(resources).items():
        spec = deployment["spec"]["template"]["spec"]
        tally = spec["containers"][0]
        settings = settings_for(resources, tally, monkeypatch)
        ports = {p["name"]: p["containerPort"] for p in tally["ports"]}
        assert ports["metrics"] == settings.metrics_port
        assert settings.metrics_host == "0.0.0.0"
        assert not settings.envoy_enabled and not settings.migrate_on_start
        assert settings.kafka_brokers, "roles in separate pods need Kafka"
        assert settings.postgres_url is None or settings.postgres_url.startswith("postgresql://")
        if settings.roles == ["api"]:
            assert ports["grpc"] == settings.grpc_port and settings.grpc_host == "0.0.0.0"
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert tally[probe]["grpc"]["port"] == settings.grpc_port, probe
            envoy = spec["containers"][1]
            assert [p["containerPort"] for p in envoy["ports"]] == [settings.rest_port]
            assert envoy["readinessProbe"]["tcpSocket"]["port"] == settings.rest_port
            init = spec["initContainers"][0]
            assert init["command"][:2] == ["tally", "envoy-config"]
            out = init["command"][init["command"].index("--out") + 1]
            assert envoy["command"][envoy["command"].index("-c") + 1] == f"{out}/envoy.yaml"
            mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
            assert {m["mountPath"]: m["name"] for m in envoy["volumeMounts"]}[out] == mounts[out]
        else:
            assert "grpc" not in ports, f"{name}: only the api role serves gRPC"
            for probe in ("startupProbe", "livenessProbe"):
                # /healthz: the role's loops are alive (adapters/metrics.py), not merely the port.
                assert tally[probe]["httpGet"] == {"path": "/healthz", "port": settings.metrics_port}, probe
        assert all("requests" in c["resources"] for c in spec["containers"] + spec.get("initContainers", []))
        if settings.roles == ["sink"]:
            ceiling = by_kind(resources, "HorizontalPodAutoscaler")["tally-sink"]["spec"]["maxReplicas"]
            assert ceiling <= settings.kafka.partitions, "sink replicas beyond the partitions would idle"


def test_envoy_sidecar_config_is_envoy_yaml_and_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the api pod's init container writes, from the same envoy/envoy.yaml, is a valid Envoy config."""
    resources = render("overlays/example")
    spec = by_kind(resources, "Deployment")["tally-api"]["spec"]["template"]["spec"]
    init = spec["initContainers"][0]
    settings_env = settings_for(resources, init, monkeypatch)
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("TALLY_")}
    for source in init["envFrom"]:
        env.update(by_kind(resources, "ConfigMap")[source["configMapRef"]["name"]]["data"])
    out = tmp_path / "envoy"
    subprocess.run(
        [sys.executable, "-m", "server.cli", "envoy-config", "--out", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    rendered_config = (out / "envoy.yaml").read_text()
    template_lines = (ROOT / "envoy" / "envoy.yaml").read_text().splitlines()
    assert len(rendered_config.splitlines()) == len(template_lines)
    assert "${" not in rendered_config
    listener = yaml.safe_load(rendered_config)["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert (listener["address"], listener["port_value"]) == ("0.0.0.0", settings_env.rest_port)
    assert (out / "tally.binpb").exists() and (out / "tally.lua").exists()
    # Every file Envoy serves (OpenAPI, the /api/docs page, Swagger UI's assets, the console) is in the volume.
    served = [Path(name) for name in re.findall(r'filename: "?([^"\s}]+)', rendered_config)]
    assert len(served) >= 11
    assert all(path.is_relative_to(out.resolve()) and path.is_file() for path in served), served
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(out / "envoy.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The sidecar image is the Envoy release the tests run.
    version = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True, check=True).stdout
    image = spec["containers"][1]["image"]
    minor = image.rsplit(":v", 1)[1].rsplit(".", 1)[0]
    assert f"/{minor}." in version, (image, version)


def test_collector_deployment_config_and_rbac(
    rendered: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collector's preset config is valid with the pod's environment and matches its pod; its
    ServiceAccount may list what the sources read and hold the Lease the leader election uses."""
    from workers.collector.config import parse_config

    target, resources = rendered
    deployment = by_kind(resources, "Deployment")["tally-collector"]
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    command = container["command"]
    assert command[:3] == ["tally", "collect", "--config"]
    config_path = Path(command[3])
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert mounts["config"] == str(config_path.parent)
    configmap = by_kind(resources, "ConfigMap")[volumes["config"]["configMap"]["name"]]
    with monkeypatch.context() as patch:
        env = {item["name"]: "from-the-pod" for item in container["env"]}
        for name in env:
            patch.setenv(name, env[name])
        config = parse_config(configmap["data"][config_path.name], f"{target}:{config_path}")
    assert config.leader.mode == "auto" and config.leader.identity == "from-the-pod"
    for item in container["env"]:
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref and target != "base":  # the base references a Secret that overlays provide
            assert ref["key"] in by_kind(resources, "Secret")[ref["name"]]["data"], ref
    assert config.sink.api_key == "from-the-pod"
    # The buffer lives on the emptyDir (the root filesystem is read-only).
    assert "emptyDir" in volumes["buffer"]
    assert Path(config.buffer.path).parent == Path(mounts["buffer"])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # Metrics and probes on the port the config listens on.
    assert config.metrics.listen is not None
    port = int(config.metrics.listen.rsplit(":", 1)[1])
    assert config.metrics.listen.startswith("0.0.0.0:")
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": port}
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port}
    # SIGTERM's delivery fits in the grace period.
    assert spec["terminationGracePeriodSeconds"] > config.shutdown_timeout
    # The sink is the api Service's gRPC port.
    host_port = config.sink.url.removeprefix("grpc://")
    service = by_kind(resources, "Service")[host_port.split(":")[0]]
    assert int(host_port.split(":")[1]) in {p["port"] for p in service["spec"]["ports"]}
    # RBAC: list every resource a kubernetes source reads, cluster-wide; the Lease in its namespace.
    account = spec["serviceAccountName"]
    assert account in by_kind(resources, "ServiceAccount")
    namespace = deployment["metadata"].get("namespace", "default")

    def granted(binding_kind: str, role_kind: str) -> list[dict[str, Any]]:
        rules = []
        for binding in by_kind(resources, binding_kind).values():
            if any(
                s["kind"] == "ServiceAccount"
                and s["name"] == account
                and s.get("namespace", binding["metadata"].get("namespace", "default")) == namespace
                for s in binding["subjects"]
            ):
                assert binding["roleRef"]["kind"] == role_kind
                rules += by_kind(resources, role_kind)[binding["roleRef"]["name"]]["rules"]
        return rules

    cluster_rules = granted("ClusterRoleBinding", "ClusterRole")
    for source in config.sources:
        if source.type == "kubernetes":
            assert any(
                "" in r["apiGroups"] and source.resource in r["resources"] and "list" in r["verbs"]
                for r in cluster_rules
            ), source.resource
    lease_rules = [r for r in granted("RoleBinding", "Role") if "coordination.k8s.io" in r["apiGroups"]]
    assert lease_rules and {"get", "create", "update"} <= set(lease_rules[0]["verbs"])
    assert "leases" in lease_rules[0]["resources"]
