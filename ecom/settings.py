"""One typed settings object, read from environment variables (prefix ECOM_)."""

from __future__ import annotations

import re
import socket
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ecom.errors import BadInput

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _default_home() -> Path:
    """The checkout when run from one (editable install), else the working directory."""
    if (PROJECT_ROOT / "topics.yaml").is_file():
        return PROJECT_ROOT
    return Path.cwd()


KAFKA_HEAP = "-Xms256m -Xmx1g"
# C1 only: on a laptop-sized machine C2 was still compiling (TLS, fetch paths) minutes
# after start and took up to half the brokers' CPU (README, the local cluster).
KAFKA_JVM_OPTS = "-XX:TieredStopAtLevel=1"


class Settings(BaseSettings):
    """Everything configurable, with the defaults a laptop needs."""

    model_config = SettingsConfigDict(env_prefix="ECOM_", extra="ignore")

    home: Path = Field(default_factory=_default_home)
    bootstrap_servers: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "ECOM_BOOTSTRAP_SERVERS"),
    )
    cluster_dir: Path | None = None
    cluster_port_base: int = Field(default=9092, ge=1024, le=65000)
    kafka_heap: str = KAFKA_HEAP
    kafka_jvm_opts: str = KAFKA_JVM_OPTS
    topics_file: Path | None = None
    topic_prefix: str = ""
    query_url: str = "http://127.0.0.1:8001"
    commands_port: int = Field(default=8000, ge=1, le=65535)
    store: str | None = None
    # The order flow (streams/): how long an order waits for payment, and the simulated
    # payment gateway's share of declines and latency.
    payment_timeout_s: float = Field(default=30.0, gt=0)
    gateway_decline_share: float = Field(default=0.1, ge=0, le=1)
    gateway_latency_ms: float = Field(default=5.0, ge=0)
    gateway_ledger: Path | None = None
    # How long the workers keep a finished order's state (duplicates are recognised
    # that long) before a tombstone removes it from their changelogs.
    flow_retention_s: float = Field(default=3600.0, gt=0)
    # This machine's name in consumer instance ids (static membership); two hosts with
    # the same name would take each other's partitions.
    host_id: str = Field(default_factory=socket.gethostname, min_length=1)
    # How many retired generations of a view a replay keeps after its switch.
    keep_generations: int = Field(default=1, ge=0)
    # A replay with at least replay_parallel_from records to read folds them in up to
    # replay_processes processes side by side (partitions split by number); a smaller
    # one is not worth the processes' start. One by default: the split is only right for
    # topics that never gained partitions (adding some moves keys to other numbers).
    replay_processes: int = Field(default=1, ge=1)
    replay_parallel_from: int = Field(default=50_000, ge=0)
    # The HTTP APIs: where their keys are kept, and the largest request body they read.
    api_keys_file: Path | None = None
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    # Readiness of the view: stale when a projection lags more than ready_max_lag records
    # for longer than ready_grace_s, when Kafka has not answered its runner for that long,
    # or when no runner of it has been heard from in runner_gone_s.
    ready_max_lag: int = Field(default=1000, ge=0)
    ready_grace_s: float = Field(default=30.0, ge=0)
    runner_gone_s: float = Field(default=15.0, gt=0)
    # A runner whose consumers hit 3 fatal errors (fenced) within this many seconds stops:
    # another process runs its projection under the same instance id.
    runner_fatal_window_s: float = Field(default=60.0, gt=0)
    heartbeat_s: float = Field(default=2.0, gt=0)
    # `ecom worker all`: the first wait before restarting a worker that died (doubling).
    restart_backoff_s: float = Field(default=1.0, ge=0)
    # The notifications workers' simulated mail service: its latency, the share of
    # sends that fail (each attempt draws anew), and where sent mail is recorded.
    mail_latency_ms: float = Field(default=20.0, ge=0)
    mail_failure_share: float = Field(default=0.05, ge=0, le=1)
    mail_outbox: Path | None = None

    @property
    def store_url(self) -> str:
        return self.store or f"sqlite:///{self.home / '.ecom' / 'view.db'}"

    @property
    def cluster_path(self) -> Path:
        return self.cluster_dir or self.home / ".kafka"

    @property
    def gateway_ledger_path(self) -> Path:
        return self.gateway_ledger or self.home / ".ecom" / "gateway.db"

    @property
    def mail_outbox_path(self) -> Path:
        return self.mail_outbox or self.home / ".ecom" / "outbox.db"

    @property
    def topics_path(self) -> Path:
        """ECOM_TOPICS_FILE, else ECOM_HOME's topics.yaml, else the checkout's (an
        ECOM_HOME of its own per cluster need not copy the file)."""
        if self.topics_file:
            return self.topics_file
        own, checkout = self.home / "topics.yaml", PROJECT_ROOT / "topics.yaml"
        return checkout if not own.is_file() and checkout.is_file() else own

    @property
    def api_keys_path(self) -> Path:
        return self.api_keys_file or self.home / ".ecom" / "api-keys.db"

    @property
    def instances_path(self) -> Path:
        return self.home / ".ecom" / "instances"


def redact(url: str) -> str:
    """Return a URL fit for logs: its password replaced by ***."""
    url = re.sub(r"(://[^:/@]*:)[^/]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment (a value that
    does not parse is bad input, naming its variable)."""
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        name = "ECOM_" + "_".join(str(part) for part in first["loc"]).upper()
        raise BadInput(f"{name}={first.get('input')!r}: {first['msg']}") from None
