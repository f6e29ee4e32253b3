"""The Kubernetes source on API objects in the API's own JSON (tests/data/kubernetes): run time
clipped to the window, effective requests and limits, quantities, and the k8s/ preset's mapping.

No Kubernetes API server installs from the registries this project can use, so these objects are
written in the form `kubectl get pods -o json` prints; the live test (tests/integration/
test_collector_kubernetes_live.py, marker k8s_live) runs the same code against a real cluster.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.collectors.kubernetes import Selection, pod_resources, quantity, records
from tests.support.services import ROOT
from workers.collector.config import KubernetesSource, parse_config
from workers.collector.mapping import Mapper, event_id

DATA = Path(__file__).resolve().parents[1] / "data" / "kubernetes"
START, END = datetime(2025, 3, 1, 11, 59, tzinfo=UTC), datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def items(name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = orjson.loads((DATA / name).read_bytes())["items"]
    return items


def preset(monkeypatch: pytest.MonkeyPatch) -> KubernetesSource:
    monkeypatch.setenv("POD_NAME", "tally-collector-0")
    config = parse_config((ROOT / "k8s/base/collector/collector.yaml").read_text())
    (source,) = config.sources
    assert isinstance(source, KubernetesSource)
    return source


def source(resource: str) -> Selection:
    return Selection(resource=resource)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", "0.5"),
        ("1", "1"),
        ("0.1", "0.1"),
        ("1.5", "1.5"),
        ("2Gi", "2147483648"),
        ("123Mi", "128974848"),
        ("64M", "64000000"),
        ("1e9", "1000000000"),
        ("32386100Ki", "33163366400"),
        ("100n", "0.0000001"),
        ("1Ei", "1152921504606846976"),
        (3, "3"),
        (None, "0"),
    ],
)
def test_quantities(text: object, value: str) -> None:
    assert quantity(text) == Decimal(value)


def test_quantity_refuses_garbage() -> None:
    with pytest.raises(ValueError):
        quantity("12 cores")


def test_effective_requests_and_limits() -> None:
    trainer, _, _, coredns, sidecar = items("pods.json")
    # The init container (2 CPUs) runs alone before the containers (0.75): the pod needs 2.
    assert pod_resources(trainer["spec"], "requests") == {
        "cpu": Decimal(2),
        "memory": Decimal(1024 + 128) * 2**20,
        "nvidia.com/gpu": Decimal(1),
    }
    assert pod_resources(trainer["spec"], "limits")["cpu"] == Decimal("1.25")
    # Pod overhead counts; a restartable init container (sidecar) runs beside the containers.
    assert pod_resources(coredns["spec"], "requests") == {"cpu": Decimal("0.11"), "memory": Decimal(75 * 2**20)}
    assert pod_resources(sidecar["spec"], "requests")["cpu"] == Decimal("1.6")


def test_an_init_container_runs_beside_the_sidecars_started_before_it_only() -> None:
    """Kubernetes' PodRequests: an init container needs its own requests plus the sidecars started
    before it (restartPolicy Always, earlier in the list), never those started after it."""

    def pod(*init: tuple[str, bool]) -> dict[str, Any]:
        return {
            "containers": [{"resources": {"requests": {"cpu": "1"}}}],
            "initContainers": [
                {"resources": {"requests": {"cpu": cpu}}} | ({"restartPolicy": "Always"} if sidecar else {})
                for cpu, sidecar in init
            ],
        }

    # A 3-CPU init container, then a 1-CPU sidecar: 3 while initializing, 1 + 1 after: 3, not 4.
    assert pod_resources(pod(("3", False), ("1", True)), "requests") == {"cpu": Decimal(3)}
    # The sidecar first: it runs beside the 3-CPU init container: 4, not 3.
    assert pod_resources(pod(("1", True), ("3", False)), "requests") == {"cpu": Decimal(4)}
    # Two sidecars around a 2.5-CPU init container: 0.5 + 2.5 = 3 while initializing, 1 + 0.5 + 1 after.
    assert pod_resources(pod(("0.5", True), ("2.5", False), ("1", True)), "requests") == {"cpu": Decimal(3)}


def test_pod_records_clip_run_time_to_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    found = {r.values["name"]: r for r in records(items("pods.json"), preset(monkeypatch).selection(), START, END)}
    # Pending pods do not run; every other pod gets the part of its run inside the window.
    assert sorted(found) == [
        "api-with-sidecar",
        "coredns-6d4b75cb6d-7hx5k",
        "report-28991234-qk8zt",
        "trainer-7d9f8c6b5-x2x4p",
    ]
    trainer = found["trainer-7d9f8c6b5-x2x4p"].values
    assert trainer["duration_seconds"] == 60
    assert trainer["cpu_request_core_seconds"] == 120
    assert trainer["memory_request_byte_seconds"] == 1152 * 2**20 * 60
    assert trainer["gpu_request_seconds"] == 60
    assert trainer["cpu_limit_core_seconds"] == 75
    assert trainer["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert trainer["subject"] == "acme" and trainer["node"] == "gpu-node-1"
    assert trainer["data"] == {"project": "llm-finetune"}
    # Finished 15.5 s into the window.
    report = found["report-28991234-qk8zt"].values
    assert report["duration_seconds"] == 15.5
    assert report["cpu_request_core_seconds"] == 1.55
    assert report["memory_request_byte_seconds"] == 992_000_000
    # Started 20 s into the window.
    assert found["api-with-sidecar"].values["duration_seconds"] == 40
    assert found["api-with-sidecar"].values["memory_limit_byte_seconds"] == 40 * 10**9
    assert found["coredns-6d4b75cb6d-7hx5k"].values["subject"] is None
    # A window after the job finished holds nothing for it.
    later = records(items("pods.json"), preset(monkeypatch).selection(), END, END.replace(minute=1, hour=12))
    assert "report-28991234-qk8zt" not in {r.values["name"] for r in later}


def test_the_preset_maps_annotated_pods_to_events(monkeypatch: pytest.MonkeyPatch) -> None:
    kubernetes = preset(monkeypatch)
    mapper = Mapper(kubernetes.name, kubernetes.mapping)
    found = records(items("pods.json"), kubernetes.selection(), START, END)
    events = {e["data"]["pod"]: e for r in found if mapper.accepts(r) for e in [mapper.map(r)]}
    # coredns carries no tally.io/subject annotation: not metered.
    assert sorted(events) == ["api-with-sidecar", "report-28991234-qk8zt", "trainer-7d9f8c6b5-x2x4p"]
    trainer = events["trainer-7d9f8c6b5-x2x4p"]
    assert trainer["type"] == "kube_pod_runtime" and trainer["subject"] == "acme"
    assert trainer["time"] == "2025-03-01T12:00:00.000Z"
    assert trainer["id"] == event_id(
        "pod_runtime", "5f1c2a7e-4a7b-4d0c-9d7e-1b2f3c4d5e6f", "2025-03-01T11:59:00.000Z/2025-03-01T12:00:00.000Z"
    )
    assert trainer["data"] | {"annotations": None} == {
        "pod": "trainer-7d9f8c6b5-x2x4p",
        "namespace": "team-a",
        "node": "gpu-node-1",
        "phase": "Running",
        "duration_seconds": 60,
        "cpu_request_core_seconds": 120,
        "cpu_limit_core_seconds": 75,
        "memory_request_byte_seconds": 72_477_573_120,
        "memory_limit_byte_seconds": 136_902_082_560,
        "gpu_request_seconds": 60,
        "gpu_limit_seconds": 60,
        "annotations": None,
    }
    assert trainer["data"]["annotations"] == {"project": "llm-finetune"}
    # The same window run again (a retry, another replica): the same ids.
    again = [
        mapper.map(r)["id"]
        for r in records(items("pods.json"), kubernetes.selection(), START, END)
        if mapper.accepts(r)
    ]
    assert sorted(again) == sorted(e["id"] for e in events.values())


def test_node_and_pvc_records() -> None:
    (node,) = records(items("nodes.json"), source("nodes"), START, END)
    assert node.values["duration_seconds"] == 60
    assert node.values["cpu_capacity_core_seconds"] == 480
    assert node.values["cpu_allocatable_cores"] == 7.91
    assert node.values["memory_capacity_bytes"] == 33_163_366_400
    assert node.values["gpu_capacity_seconds"] == 60
    assert node.values["labels"]["node.kubernetes.io/instance-type"] == "g5.2xlarge"
    # Only bound claims hold storage.
    (pvc,) = records(items("pvcs.json"), source("persistentvolumeclaims"), START, END)
    assert pvc.values["storage_request_bytes"] == 10 * 2**30
    assert pvc.values["storage_capacity_byte_seconds"] == 10 * 2**30 * 60
    assert pvc.values["storage_class"] == "gp3" and pvc.values["subject"] == "acme"


def test_a_finished_pod_runs_until_its_last_container_stops() -> None:
    """Init containers and sidecars are containers too: the pod holds its requests until they stop."""

    def finished(phase: str, containers: list[str | None], init: list[str | None]) -> dict[str, Any]:
        def statuses(ends: list[str | None]) -> list[dict[str, Any]]:
            return [
                {"state": {"terminated": {"finishedAt": end}} if end else {"waiting": {"reason": "PodInitializing"}}}
                for end in ends
            ]

        return {
            "metadata": {"uid": phase, "name": phase, "namespace": "n"},
            "spec": {"containers": [{"resources": {"requests": {"cpu": "2"}}}]},
            "status": {
                "phase": phase,
                "startTime": "2025-03-01T11:59:00Z",
                "containerStatuses": statuses(containers),
                "initContainerStatuses": statuses(init),
            },
        }

    pods = [
        # Its init container failed after 30 s; the main container never started.
        finished("Failed", [None], ["2025-03-01T11:59:30Z"]),
        # A Job with a sidecar: the main container ended at 11:59:40, the sidecar 5 s later.
        finished("Succeeded", ["2025-03-01T11:59:40Z"], ["2025-03-01T11:59:05Z", "2025-03-01T11:59:45Z"]),
    ]
    found = {r.values["name"]: r.values for r in records(pods, Selection(), START, END)}
    assert found["Failed"]["duration_seconds"] == 30
    assert found["Failed"]["cpu_request_core_seconds"] == 60
    assert found["Succeeded"]["duration_seconds"] == 45
    assert found["Succeeded"]["cpu_request_core_seconds"] == 90
