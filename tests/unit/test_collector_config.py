"""The collector's config: what a valid file gives, and errors that name the line and the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import ROOT
from workers.collector.config import ConfigError, parse_config, parse_duration

VALID = """
sink:
  url: grpc://127.0.0.1:50051
  api_key: ${COLLECTOR_TEST_KEY:-none}
batch: {size: 200, period: 500ms}
sources:
  - name: gpu_hours
    type: prometheus
    url: http://127.0.0.1:9090
    query: sum by (namespace) (DCGM_FI_DEV_GPU_UTIL)
    schedule: {cron: "*/5 * * * *"}
    offset: 1m
    mapping:
      type: gpu_usage
      subject: metric.namespace
      data: {value: value}
  - name: pods
    type: kubernetes
    namespaces: [team-a]
    schedule: {interval: 1m}
    mapping: {type: pod_runtime, subject: subject, filter: subject}
  - name: logs
    type: otel_logs
    listen: 127.0.0.1:4317
    mapping: {type: llm_call, subject: 'attributes."customer.id"'}
  - name: relay
    type: http
    listen: 127.0.0.1:8889
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml")
    return [problem.render("c.yaml") for problem in info.value.problems]


def test_a_valid_config_with_every_source() -> None:
    config = parse_config(VALID)
    assert [s.type for s in config.sources] == ["prometheus", "kubernetes", "otel_logs", "http"]
    prometheus = config.sources[0]
    assert prometheus.type == "prometheus" and prometheus.offset == 60.0
    assert config.batch.period == 0.5
    assert config.sink.api_key == "none"
    assert config.sources[3].mapping is None


def test_environment_variables_are_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLECTOR_TEST_KEY", "secret-key")
    assert parse_config(VALID).sink.api_key == "secret-key"
    assert problems(VALID.replace("${COLLECTOR_TEST_KEY:-none}", "${COLLECTOR_TEST_UNSET}")) == [
        "c.yaml: sink.api_key: environment variable COLLECTOR_TEST_UNSET is not set"
    ]


def test_errors_name_line_and_field() -> None:
    broken = (
        VALID.replace("grpc://127.0.0.1:50051", "ftp://x")
        .replace('{cron: "*/5 * * * *"}', '{cron: "every day"}')
        .replace("subject: metric.namespace", "subject: metric.[")
        .replace("namespaces: [team-a]", "namespaces: [team-a]\n    typo: 1")
    )
    found = problems(broken)
    assert found[0].startswith("c.yaml:3: sink.url: must be grpc://")
    assert found[1].startswith("c.yaml:11: sources[0].schedule.cron: 'every day' is not a cron expression")
    assert found[2].startswith("c.yaml:15: sources[0].mapping.subject: 'metric.[' is not a JMESPath expression")
    assert found[3] == "c.yaml:20: sources[1].typo: Extra inputs are not permitted"
    assert len(found) == 4


def test_schedule_needs_one_of_interval_or_cron() -> None:
    found = problems(VALID.replace("{interval: 1m}", "{interval: 1m, cron: '* * * * *'}"))
    assert found == ["c.yaml:20: sources[1].schedule: set exactly one of interval or cron"]


def test_names_unique_and_mapping_required() -> None:
    assert any("source names must be unique: pods" in p for p in problems(VALID.replace("name: logs", "name: pods")))
    no_mapping = VALID.replace("    mapping: {type: pod_runtime, subject: subject, filter: subject}\n", "")
    assert problems(no_mapping) == ["c.yaml:17: sources[1].mapping: Field required"]


def test_not_yaml_and_not_a_mapping() -> None:
    assert problems("sink: [")[0].startswith("c.yaml:1: (top level): not valid YAML")
    assert problems("- 1") == ["c.yaml:1: (top level): must be a mapping with sink: and sources:"]


def test_durations() -> None:
    assert [parse_duration(v) for v in (90, "90s", "500ms", "5m", "1h", "1d", "1.5s")] == [
        90,
        90,
        0.5,
        300,
        3600,
        86400,
        1.5,
    ]
    for bad in ("5 minutes", True, "-1s", "1w"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_check_command(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(VALID)
    bad.write_text(VALID.replace("type: kubernetes", "type: kubernets"))
    run = [sys.executable, "-m", "server.cli", "collect", "--check"]
    ok = subprocess.run([*run, str(good)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "valid; sources: gpu_hours (prometheus), pods (kubernetes), logs (otel_logs), relay (http)" in ok.stdout
    failed = subprocess.run([*run, str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1
    assert f"{bad}:17: sources[1]" in failed.stderr and "kubernets" in failed.stderr


def test_every_config_in_the_docs_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/collectors.md and the README: each YAML example (a whole file, or one source) passes --check."""
    import re

    import yaml

    monkeypatch.setenv("PROMETHEUS_TOKEN", "t")
    monkeypatch.setenv("TALLY_API_KEY", "k")
    checked = 0
    for doc in ("docs/collectors.md", "README.md", "k8s/README.md"):
        text = (ROOT / doc).read_text()
        blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
        blocks += re.findall(r"<<'EOF'\n(.*?)\nEOF", text, re.S)
        for block in blocks:
            if block.lstrip().startswith("- name:"):
                block = yaml.safe_dump({"sink": {"url": "grpc://127.0.0.1:50051"}, "sources": yaml.safe_load(block)})
            parse_config(block, doc)
            checked += 1
    assert checked >= 6


def test_leader_lease_leaves_room_to_renew() -> None:
    found = problems(VALID + "leader: {lease_duration: 3s, retry_period: 2s}\n")
    assert found == ["c.yaml:29: leader: lease_duration must be more than 1.8 times retry_period"]


def test_the_relay_takes_no_mapping() -> None:
    with_mapping = VALID.replace(
        "    listen: 127.0.0.1:8889\n", "    listen: 127.0.0.1:8889\n    mapping: {type: t, subject: s}\n"
    )
    assert problems(with_mapping) == [
        "c.yaml:29: sources[3].mapping: the http relay forwards CloudEvents as they are sent: it takes no mapping"
    ]


def test_pod_phases_are_kubernetes_phases() -> None:
    # A misspelt phase matched no pod: the source ran, delivered nothing, and no pod was billed.
    typo = VALID.replace("    namespaces: [team-a]\n", "    namespaces: [team-a]\n    phases: [running, Succeeded]\n")
    assert len(found := problems(typo)) == 1
    assert found[0].startswith("c.yaml:20: sources[1].phases[0]: Input should be 'Pending', 'Running'")
    none = VALID.replace("    namespaces: [team-a]\n", "    namespaces: [team-a]\n    phases: []\n")
    assert problems(none) == ["c.yaml:20: sources[1].phases: List should have at least 1 item after validation, not 0"]
    phases = VALID.replace("    namespaces: [team-a]\n", "    namespaces: [team-a]\n    phases: [Running, Pending]\n")
    assert parse_config(phases).sources[1].selection().phases == ("Running", "Pending")  # type: ignore[union-attr]


def test_listen_addresses_are_host_and_port() -> None:
    # A port left out passed --check and the collector then died on start with a traceback.
    no_port = (
        VALID.replace("listen: 127.0.0.1:8889", "listen: localhost")
        .replace("listen: 127.0.0.1:4317", "listen: '0.0.0.0:99999'")
        .replace("sources:\n", "metrics: {listen: '0.0.0.0'}\nsources:\n")
    )
    assert problems(no_port) == [
        "c.yaml:6: metrics.listen: '0.0.0.0' must be HOST:PORT (a port from 1 to 65535), e.g. 127.0.0.1:9465",
        "c.yaml:25: sources[2].listen: '0.0.0.0:99999' must be HOST:PORT (a port from 1 to 65535), e.g. 127.0.0.1:9465",
        "c.yaml:29: sources[3].listen: 'localhost' must be HOST:PORT (a port from 1 to 65535), e.g. 127.0.0.1:9465",
    ]
    ok = VALID.replace("listen: 127.0.0.1:8889", "listen: ':8889'").replace("127.0.0.1:4317", "0.0.0.0:4317")
    assert [s.listen for s in parse_config(ok).sources[2:]] == ["0.0.0.0:4317", ":8889"]  # type: ignore[union-attr]
