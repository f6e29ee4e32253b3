"""The collector's YAML config: sources, their mappings, the sink, batching, the buffer.

Validated up front (pydantic, unknown keys refused) and every error names the file, the line and
the field path, so `tally collect --check FILE` tells a user exactly what to fix. `${VAR}` and
`${VAR:-default}` in string values are read from the environment (API keys come from Secrets).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from adapters.collectors.kubernetes import Selection

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SOURCE_NAME = re.compile(r"^[a-z0-9]+(?:[_-][a-z0-9]+)*$")


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `90s`, `500ms`, `5m`, `1h`, `1d`."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s, 5m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError("must be a duration such as 30s, 5m or 1h")
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


# Seconds; YAML may say 90, 90s, 500ms, 5m, 1h or 1d.
Duration = Annotated[float, BeforeValidator(parse_duration)]


def _listen(value: str) -> str:
    """HOST:PORT for a listening socket (no host: 127.0.0.1), checked here rather than at start."""
    _, colon, port = value.rpartition(":")
    if not (colon and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"{value!r} must be HOST:PORT (a port from 1 to 65535), e.g. 127.0.0.1:9465")
    return value


Listen = Annotated[str, AfterValidator(_listen)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Schedule(_Model):
    """When a pull source runs: every `interval` (aligned to the clock) or on a `cron` expression."""

    interval: Duration | None = Field(default=None, gt=0)
    cron: str | None = None
    # Runs missed while the collector was down (or not the leader) that are still caught up on start.
    max_catch_up: int = Field(default=60, ge=1)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from croniter import croniter

        problem = f"{value!r} is not a cron expression (minute hour day month weekday, or 6 fields seconds first)"
        fields = value.split()
        if len(fields) == 6:
            # Seconds first, as OpenMeter's collector reads six fields ("0 * * * * *", its default:
            # every minute); croniter puts them last, where that would be every second of minute 0.
            fields = [*fields[1:], fields[0]]
        elif len(fields) != 5 and not value.strip().startswith("@"):
            raise ValueError(problem)
        expression = " ".join(fields)
        if not croniter.is_valid(expression):
            raise ValueError(problem)
        return expression

    @model_validator(mode="after")
    def _one(self) -> Schedule:
        if (self.interval is None) == (self.cron is None):
            raise ValueError("set exactly one of interval or cron")
        return self


class Mapping(_Model):
    """How a source's record becomes a CloudEvent; every value but `type` is a JMESPath expression."""

    type: str = Field(pattern=r"^\S+$")
    subject: str
    time: str | None = None
    # What identifies the record's object within one window (default: the source's own key); the
    # event id is derived from (source, this key, window), so a re-run yields the same id.
    key: str | None = None
    data: dict[str, str] = Field(default_factory=dict)
    # Records for which this is false, null or empty are dropped.
    filter: str | None = None
    # The CloudEvents source (with the id, Tally's deduplication key); default collector/<source name>.
    source: str | None = None

    @field_validator("subject", "time", "key", "filter")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        return None if value is None else _jmespath(value)

    @field_validator("data")
    @classmethod
    def _data(cls, value: dict[str, str]) -> dict[str, str]:
        for name, expression in value.items():
            try:
                _jmespath(expression)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return value


def _jmespath(expression: str) -> str:
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        jmespath.compile(expression)
    except JMESPathError as exc:
        detail = str(exc).splitlines()[0]
        raise ValueError(f"{expression!r} is not a JMESPath expression ({detail})") from None
    return expression


class _Source(_Model):
    # Unique; part of every event id, so a live source is never renamed.
    name: str
    mapping: Mapping

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SOURCE_NAME.match(value):
            raise ValueError("must be lowercase letters and digits separated by _ or -")
        return value


class PrometheusSource(_Source):
    type: Literal["prometheus"]
    url: str = Field(pattern=r"^https?://")
    query: str = Field(min_length=1)
    schedule: Schedule
    # Evaluated at (scheduled time - offset): Prometheus must have scraped the window's end.
    offset: Duration = Field(default=0.0, ge=0)
    timeout: Duration = Field(default=30.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)


PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]
_METERED_PHASES: tuple[PodPhase, ...] = ("Running", "Succeeded", "Failed")


class KubernetesSource(_Source):
    """Pods, nodes or PVCs (adapters/collectors/kubernetes.py), one event per object per window."""

    type: Literal["kubernetes"]
    resource: Literal["pods", "nodes", "persistentvolumeclaims"] = "pods"
    namespaces: list[str] = Field(default_factory=list)  # empty: all namespaces
    label_selector: str | None = None
    schedule: Schedule
    subject_annotation: str = "tally.io/subject"
    data_annotation_prefix: str = "data.tally.io/"
    # Pods in these phases are metered (a pod's runtime counts while it runs). Kubernetes' own
    # spellings only: a typo would match no pod and silently meter nothing.
    phases: list[PodPhase] = Field(default_factory=lambda: list(_METERED_PHASES), min_length=1)
    # Outside a cluster: a kubeconfig file (default: in-cluster config, then ~/.kube/config).
    kubeconfig: str | None = None
    context: str | None = None

    def selection(self) -> Selection:
        return Selection(
            resource=self.resource,
            subject_annotation=self.subject_annotation,
            data_annotation_prefix=self.data_annotation_prefix,
            phases=tuple(self.phases),
            namespaces=tuple(self.namespaces),
            label_selector=self.label_selector,
        )


class OtelLogsSource(_Source):
    type: Literal["otel_logs"]
    listen: Listen = "127.0.0.1:4317"


class HttpSource(_Source):
    type: Literal["http"]
    listen: Listen = "127.0.0.1:8889"
    mapping: Mapping | None = None  # type: ignore[assignment]  # a relay forwards CloudEvents as they are
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)

    @field_validator("mapping")
    @classmethod
    def _no_mapping(cls, value: Mapping | None) -> None:
        if value is not None:
            raise ValueError("the http relay forwards CloudEvents as they are sent: it takes no mapping")
        return None


Source = Annotated[PrometheusSource | KubernetesSource | OtelLogsSource | HttpSource, Field(discriminator="type")]


class Sink(_Model):
    # grpc://host:50051 (Tally's gRPC port; grpcs:// with TLS) or http(s)://host:8888 (REST, Envoy).
    url: str
    api_key: str | None = None
    timeout: Duration = Field(default=10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^(grpcs?|https?)://[^/\s]+", value):
            raise ValueError("must be grpc://host:port (Tally's gRPC port), grpcs://, or http(s)://host:port (REST)")
        return value

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        return value or None


class Batch(_Model):
    size: int = Field(default=500, ge=1, le=10_000)
    # How long the oldest buffered event may wait for a fuller batch.
    period: Duration = Field(default=1.0, gt=0)
    max_backoff: Duration = Field(default=30.0, gt=0)


class Buffer(_Model):
    path: str = ".tally/collector.db"
    # When this many events wait, sources get backpressure (the relay answers 503, OTLP UNAVAILABLE,
    # scrapes wait) rather than the disk filling up.
    max_events: int = Field(default=1_000_000, ge=1)


class Leader(_Model):
    # auto: a Kubernetes Lease when running in a cluster, else a file lock beside the buffer.
    mode: Literal["auto", "kubernetes", "file", "none"] = "auto"
    file: str | None = None
    lease_name: str = "tally-collector"
    lease_namespace: str | None = None
    lease_duration: Duration = Field(default=15.0, ge=2)
    retry_period: Duration = Field(default=2.0, ge=1)
    identity: str | None = None

    @model_validator(mode="after")
    def _renewal(self) -> Leader:
        # The leader renews every retry_period and gives up after 2/3 of the lease: leave room for
        # a retry or two (the Kubernetes client's own rule is renew_deadline > 1.2 * retry_period).
        if self.lease_duration * 2 / 3 <= self.retry_period * 1.2:
            raise ValueError("lease_duration must be more than 1.8 times retry_period")
        return self


class Metrics(_Model):
    listen: Listen | None = "127.0.0.1:9465"


class CollectorConfig(_Model):
    sink: Sink
    sources: list[Source] = Field(min_length=1)
    batch: Batch = Field(default_factory=Batch)
    buffer: Buffer = Field(default_factory=Buffer)
    leader: Leader = Field(default_factory=Leader)
    metrics: Metrics = Field(default_factory=Metrics)
    # How long SIGTERM waits for delivery before leaving the rest on disk.
    shutdown_timeout: Duration = Field(default=20.0, ge=0)

    @model_validator(mode="after")
    def _unique(self) -> CollectorConfig:
        names = [source.name for source in self.sources]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique: {', '.join(duplicates)}")
        return self


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    line: int | None
    field: str
    message: str

    def render(self, path: str) -> str:
        where = f"{path}:{self.line}" if self.line else path
        return f"{where}: {self.field or '(top level)'}: {self.message}"


class ConfigError(Exception):
    def __init__(self, path: str, problems: Sequence[ConfigProblem]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__("\n".join(problem.render(path) for problem in self.problems))


def _expand_env(value: Any, problems: list[ConfigProblem], where: str) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, problems, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, problems, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            problems.append(ConfigProblem(None, where, f"environment variable {name} is not set"))
            return ""

        return _ENV.sub(replace, value)
    return value


def _lines(node: yaml.Node, path: tuple[Any, ...], into: dict[tuple[Any, ...], int]) -> None:
    """The 1-based line of every key and item in the YAML tree, by its path."""
    into[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, key.value)
            into[child] = key.start_mark.line + 1
            _lines(value, child, into)
            into[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _lines(item, (*path, index), into)


def _field_path(loc: Sequence[Any]) -> tuple[tuple[Any, ...], str]:
    """pydantic's location without the union tags it adds (the `prometheus` in sources.0.prometheus)."""
    path: list[Any] = []
    for part in loc:
        tag = isinstance(part, str) and part in ("prometheus", "kubernetes", "otel_logs", "http")
        if tag and path and isinstance(path[-1], int):
            continue
        path.append(part)
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return tuple(path), text


def parse_config(text: str, path: str = "<config>") -> CollectorConfig:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(path, [ConfigProblem(line, "", f"not valid YAML: {exc}")]) from None
    if not isinstance(raw, dict) or node is None:
        raise ConfigError(path, [ConfigProblem(1, "", "must be a mapping with sink: and sources:")])
    lines: dict[tuple[Any, ...], int] = {}
    _lines(node, (), lines)
    problems: list[ConfigProblem] = []
    raw = _expand_env(raw, problems, "")
    if problems:
        raise ConfigError(path, problems)
    try:
        return CollectorConfig.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            key, text_path = _field_path(error["loc"])
            line = None
            for end in range(len(key), -1, -1):
                if key[:end] in lines:
                    line = lines[key[:end]]
                    break
            message = error["msg"].removeprefix("Value error, ")
            problems.append(ConfigProblem(line, text_path, message))
        problems.sort(key=lambda problem: problem.line or 0)
        raise ConfigError(path, problems) from None


def load_config(path: Path) -> CollectorConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [ConfigProblem(None, "", f"cannot read: {exc.strerror}")]) from None
    return parse_config(text, str(path))
