"""Tally's settings: TALLY_* environment variables over an optional YAML file over defaults.

Every setting is documented in config.example.yaml and the README's configuration table.
Nested settings use a double underscore in the environment: TALLY_SINK__FLUSH_INTERVAL_MS=50.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

ALL_ROLES = ("api", "sink", "balance", "notify", "billing")
DEFAULT_CONFIG_FILE = Path("config.yaml")


class SinkSettings(BaseModel):
    """How the sink worker batches events from the bus into the event store."""

    # The most events one insert into the event store carries. On Kafka the sink gathers what
    # arrives within flush_interval_ms of the first message (at most 1,000 messages) and stores it
    # in inserts of at most max_batch_events; the in-process bus flushes what requests are waiting.
    max_batch_events: int = Field(default=20_000, ge=1)
    flush_interval_ms: int = Field(default=100, ge=1)
    # Duplicates of (namespace, source, id) are detected within this window of ingestion time.
    dedup_window_days: int = Field(default=35, ge=1)
    consumer_group: str = "tally-sink"
    # How often a sink re-reads the meters whose values it extracts at ingest.
    catalog_refresh_s: float = Field(default=15.0, gt=0)
    # A changed meter is backfilled this long after its change: longer than any sink's refresh.
    backfill_delay_s: float = Field(default=60.0, ge=0)
    backfill_interval_s: float = Field(default=10.0, gt=0)
    # Per-hour rollups of every live meter, read by meter queries with a whole hour between their
    # bounds once ready (adapters/clickhouse/rollups.py). The rollup worker fills them from `events`
    # by stored_at ranges a grace old (the grace bounds how long after its stored_at an insert's
    # rows may land), every rollup_fill_interval_s; queries read the events stored since the last
    # fill from `events`. Nothing runs on insert. Ready rollups are audited against the events
    # (rollup_audit_interval_s). Raw-event queries are exact. On by default since a flush no longer
    # pays per meter (docs/performance.md, "Fills instead of views"); off reads only the events.
    rollups: bool = True
    rollup_grace_s: float = Field(default=30.0, gt=0)
    rollup_interval_s: float = Field(default=10.0, gt=0)
    # How often each ready rollup takes in the events stored since its last fill. Each fill adds a
    # row per (subject, hour, group) it saw events for, so rarer fills mean fewer rows; the events
    # stored since (about this many seconds plus the grace) are aggregated at query time.
    rollup_fill_interval_s: float = Field(default=300.0, gt=0)
    # How often each ready rollup is compared with the events (count per subject and hour over the
    # last day's settled hours and one older day); a difference takes it out of routing and starts
    # it over (adapters/clickhouse/rollups.py, RollupLifecycle.audit).
    rollup_audit_interval_s: float = Field(default=60.0, gt=0)
    # A retired rollup (its meter changed or deleted) is dropped this long after: longer than any
    # process takes to stop reading it (they re-read the ready rollups every 2 s). For the same
    # reason a ready rollup's fills are compacted only up to a watermark committed this long ago.
    rollup_drop_after_s: float = Field(default=600.0, ge=0)


class ChdbSettings(BaseModel):
    """Bounds on the embedded ClickHouse engine (chDB, used when clickhouse_url is unset or chdb://).

    The engine's defaults size its caches for a dedicated server (mark and primary-index caches of
    5 GiB each, memory up to 90 % of RAM); inside Tally's process they would grow with the data
    until the whole machine is theirs. A smaller cache costs re-reading index files from disk (the
    page cache usually still holds them), not correctness. 0 keeps the engine's own default.
    """

    # Caches of the MergeTree tables' marks and primary indexes (grow with the data read).
    mark_cache_mb: int = Field(default=128, ge=0)
    primary_index_cache_mb: int = Field(default=64, ge=0)
    index_mark_cache_mb: int = Field(default=32, ge=0)
    # Which granules a repeated filter skipped (meter queries repeat theirs).
    query_condition_cache_mb: int = Field(default=32, ge=0)
    # A ceiling on all of the engine's memory: a query past it fails (MEMORY_LIMIT_EXCEEDED)
    # instead of the process being killed. 0: the engine's default, 90 % of RAM.
    memory_limit_mb: int = Field(default=0, ge=0)

    def engine_options(self) -> dict[str, str]:
        """The engine's server settings for these bounds (chDB takes them when it starts)."""
        sizes = {
            "mark_cache_size": self.mark_cache_mb,
            "primary_index_cache_size": self.primary_index_cache_mb,
            "index_mark_cache_size": self.index_mark_cache_mb,
            "query_condition_cache_size": self.query_condition_cache_mb,
            "max_server_memory_usage": self.memory_limit_mb,
        }
        return {name: str(mb * 2**20) for name, mb in sizes.items() if mb > 0}


class IngestSettings(BaseModel):
    max_event_bytes: int = 64 * 1024
    max_batch_events: int = 10_000
    max_batch_bytes: int = 10 * 1024 * 1024


class KafkaSettings(BaseModel):
    topic: str = "tally.events"
    # Partitions created for the events topic when Tally creates it.
    partitions: int = Field(default=4, ge=1)
    # Request timeout for produce acknowledgements; past it the ingest call answers UNAVAILABLE.
    request_timeout_ms: int = 10_000
    # tansu (the broker installed for tests) does not support the idempotent producer.
    enable_idempotence: bool = False
    # How long the ingest producer holds a batch open for more events before sending it. Every
    # acknowledgement waits for it; docs/performance.md, "Single-event latency", measured 0 and 2.
    linger_ms: int = Field(default=0, ge=0)
    session_timeout_ms: int = 10_000
    # How long the broker may hold a consumer's fetch while it has nothing new. Apache Kafka answers
    # as soon as data arrives; tansu answers only when the wait ends, so there this bounds the delay of
    # each hop (events -> sink, announcement -> api). Lower: fresher on such brokers, more idle fetches.
    fetch_max_wait_ms: int = Field(default=100, ge=1)
    # Announcements (domain/announcements.py) between processes: stored usage, grants, entity writes.
    announcements_topic: str = "tally.announcements"
    # Kept this long; a listener only needs what was announced since it last caught up.
    announcements_retention_ms: int = Field(default=3_600_000, ge=60_000)
    # How often a listener confirms it has read up to the topic's end, and how long a confirmation
    # counts: the value cache serves only while every announcement older than this has been handled.
    announcements_sync_interval_ms: int = Field(default=200, ge=10)
    announcements_max_staleness_ms: int = Field(default=1_000, ge=50)
    # The balance workers' consumer group on the announcements topic (committed offsets).
    balance_consumer_group: str = "tally-balance"


class NotifySettings(BaseModel):
    """How the notify worker delivers webhooks: retry timing, deadlines, timeouts, concurrency."""

    # First retry after this; each further one waits twice as long, up to retry_max_ms, +-jitter.
    retry_initial_ms: int = Field(default=5_000, ge=1)
    retry_max_ms: int = Field(default=2 * 3600 * 1000, ge=1)
    retry_jitter: float = Field(default=0.2, ge=0, le=1)
    # OpenMeter's deadlines: a never-attempted delivery fails after 3h, a failing one after 48h.
    pending_timeout_s: int = Field(default=3 * 3600, ge=1)
    sending_timeout_s: int = Field(default=48 * 3600, ge=1)
    # One webhook request's deadline; a timeout counts as a failed attempt.
    timeout_ms: int = Field(default=15_000, ge=1)
    # How often the worker looks for due deliveries (new events wake it at once in-process).
    poll_interval_ms: int = Field(default=1_000, ge=10)
    max_concurrency: int = Field(default=16, ge=1)
    # Server-side request forgery guard: webhook URLs resolving to loopback/private/link-local
    # addresses are refused unless allowed here; allowed_hosts, when set, is the complete list.
    allow_private_destinations: bool = False
    allowed_hosts: list[str] = Field(default_factory=list)


class BillingSettings(BaseModel):
    """How the billing worker (the `billing` role) collects and advances invoices."""

    # How often it looks for due work (subscription changes in this process wake it at once).
    poll_interval_s: float = Field(default=10.0, gt=0)
    # Subscription lines and late-usage corrections are synced at most this often.
    sync_interval_s: float = Field(default=300.0, gt=0)
    # Invoices claimed per query, and advanced at once per worker.
    batch_size: int = Field(default=100, ge=1)
    concurrency: int = Field(default=8, ge=1)
    # A claimed invoice is this worker's until then; a killed worker's invoices wait this long.
    lease_s: float = Field(default=300.0, gt=0)
    # A failed step is retried after retry_initial_s, doubling per failure, at most retry_max_s.
    retry_initial_s: float = Field(default=10.0, gt=0)
    retry_max_s: float = Field(default=3600.0, gt=0)
    # Usage periods that ended (or were invoiced) this recently before the last late-usage read
    # are checked for usage stored after their invoice.
    late_usage_window_s: float = Field(default=7 * 86_400.0, ge=0)


class EntitlementSettings(BaseModel):
    """Balances: how long late events are awaited before a balance snapshot may cover them."""

    # Snapshots are taken only at instants older than this, so a late event inside it still counts.
    grace_period_s: int = Field(default=86_400, ge=0)
    # Keep current values in memory and answer /value for "now" from them while nothing they
    # depend on changed. Every api process keeps one, invalidated by announcements: in process in the
    # embedded default; on Kafka while the process is in step with the announcements topic.
    value_cache: bool = True
    value_cache_entries: int = Field(default=200_000, ge=1)


class AuthSettings(BaseModel):
    """API keys: whether requests must carry one, and how keys are hashed and cached."""

    # None (default): required unless both rest_host and grpc_host are loopback, where the embedded
    # stack runs keyless with a loud warning; on any other bind Tally then refuses to start while
    # no API key exists. true: always required. false: never (a warning at start).
    required: bool | None = None
    # Mixed into the keyed SHA-256 of API keys and portal tokens. Changing it invalidates every key.
    pepper: str = Field(default="tally-credentials-v1", min_length=1)
    # How long an authentication result is reused; bounds how late another process sees a revocation.
    cache_ttl_s: float = Field(default=1.0, ge=0, le=1.0)


class PortalSettings(BaseModel):
    # Lifetime of a portal token created without expiresAt (OpenMeter's default: 1h).
    token_expiration_s: int = Field(default=3600, ge=1)


class MeterConfig(BaseModel):
    """A meter declared in the config file; synced into the store at start."""

    slug: str
    aggregation: str
    event_type: str = Field(alias="eventType")
    # The tenant the meter is created in; default: the `namespace` setting.
    namespace: str | None = None
    name: str | None = None
    description: str | None = None
    value_property: str | None = Field(default=None, alias="valueProperty")
    group_by: dict[str, str] = Field(default_factory=dict, alias="groupBy")

    model_config = {"populate_by_name": True}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TALLY_", env_nested_delimiter="__", extra="ignore")

    # Where the embedded Postgres, chDB and Envoy's rendered config live.
    data_dir: Path = Path(".tally")
    # The namespace (tenant) used when a request carries none.
    namespace: str = "default"
    # NoDecode: TALLY_ROLES=api,sink is a comma-separated list (split below), not JSON.
    roles: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(ALL_ROLES))

    rest_host: str = "127.0.0.1"
    rest_port: int = 8888
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    # Envoy is started and stopped with the api role unless disabled (k8s runs it as a sidecar).
    envoy_enabled: bool = True
    envoy_admin_port: int = 9901

    # Unset: an embedded PostgreSQL server in <data_dir>/postgres.
    postgres_url: str | None = None
    # Unset: embedded chDB in <data_dir>/events. Otherwise chdb:///path or http(s)://host:port[/db],
    # optionally ?send_receive_timeout=S&connect_timeout=S (seconds; defaults 300 and 10).
    clickhouse_url: str | None = None
    # A ClickHouse cluster name (as in the servers' remote_servers): DDL ON CLUSTER with
    # Replicated*MergeTree tables and Distributed ones sharded by namespace and subject. None: one node.
    clickhouse_cluster: str | None = None
    # The embedded engine's cache and memory bounds (ignored for a ClickHouse server).
    chdb: ChdbSettings = Field(default_factory=ChdbSettings)
    # Unset: the in-process bus. Otherwise host:port[,host:port...].
    kafka_brokers: str | None = None
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    migrate_on_start: bool = True
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"

    sink: SinkSettings = Field(default_factory=SinkSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    billing: BillingSettings = Field(default_factory=BillingSettings)
    entitlements: EntitlementSettings = Field(default_factory=EntitlementSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    portal: PortalSettings = Field(default_factory=PortalSettings)
    meters: list[MeterConfig] = Field(default_factory=list)

    @field_validator("roles", mode="before")
    @classmethod
    def _split_roles(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(ALL_ROLES))
        if unknown:
            raise ValueError(f"unknown roles {unknown}; allowed: {', '.join(ALL_ROLES)}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments (the CLI, which passes the YAML file's values) lose to the environment,
        # so `TALLY_REST_PORT=9000 tally serve --config x.yaml` does what it says.
        return env_settings, init_settings

    @property
    def embedded_postgres(self) -> bool:
        return self.postgres_url is None

    @property
    def event_store_url(self) -> str:
        return self.clickhouse_url or f"chdb://{(self.data_dir / 'events').resolve()}"


DATA_DIR_NAME = ".tally"


@dataclass(frozen=True)
class Project:
    """Where Tally's files are: the directory `tally serve` and every other command work from.

    The nearest of the current directory and its parents that holds a `config.yaml` or a `.tally`
    data dir, as git finds its repository, so that `tally apikeys` run from a subdirectory (or any
    command run after `make run`) opens the same database `make run` created. `found` is false when
    there is none: then the current directory, where `tally serve` creates `.tally`.
    """

    root: Path
    config_file: Path | None
    found: bool

    @property
    def data_dir(self) -> Path:
        return self.root / DATA_DIR_NAME


def find_project(start: Path | None = None) -> Project:
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        config = directory / DEFAULT_CONFIG_FILE
        if config.is_file() or (directory / DATA_DIR_NAME).is_dir():
            return Project(directory, config if config.is_file() else None, found=True)
    return Project(here, None, found=False)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the YAML file (explicit, else the project's config.yaml), the environment wins.

    The data dir defaults to the project's `.tally` (see `Project`); a relative `data_dir` in a YAML
    file is relative to that file, one in TALLY_DATA_DIR to the current directory.
    """
    values: dict[str, Any] = {}
    project = find_project()
    path = config_file or project.config_file
    base = project.root
    if path is not None:
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        values.update(loaded)
        base = path.resolve().parent
    values["data_dir"] = base / Path(values.get("data_dir") or DATA_DIR_NAME)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
