"""Configuration, read from the environment with Dify's variable names where they exist."""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """Raised at start when a variable is missing or invalid; the message names it."""


class EventBusKind(StrEnum):
    REDIS = "redis"
    KAFKA = "kafka"


class Mode(StrEnum):
    API = "api"
    WORKER = "worker"
    SCHEDULER = "scheduler"
    BEAT = "beat"  # Dify's entrypoint name for the scheduler (Celery beat)
    MIGRATION = "migration"
    JOB = "job"
    ALL = "all"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=True)

    # Runtime
    MODE: Mode = Mode.ALL
    LOG_LEVEL: str = "INFO"
    SECRET_KEY: str = Field(default="", description="signs access tokens; generated for embedded")
    MIGRATION_ENABLED: bool = True
    DIFY_BIND_ADDRESS: str = "0.0.0.0"
    DIFY_PORT: int = Field(default=5001, ge=1, le=65535)
    EDDY_DATA_DIR: Path = Path(".eddy")

    # Postgres (Dify names); unset DB_HOST means "embedded Postgres under EDDY_DATA_DIR"
    DB_HOST: str | None = None
    DB_PORT: int = Field(default=5432, ge=1, le=65535)
    DB_USERNAME: str = "postgres"
    DB_PASSWORD: str = ""
    DB_DATABASE: str = "dify"
    SQLALCHEMY_POOL_SIZE: int = Field(default=10, ge=1)

    # Redis (Dify names); unset REDIS_HOST means "embedded Valkey under EDDY_DATA_DIR"
    REDIS_HOST: str | None = None
    REDIS_PORT: int = Field(default=6379, ge=1, le=65535)
    REDIS_PASSWORD: str = ""
    REDIS_DB: int = Field(default=0, ge=0)

    # Event bus (Eddy's own)
    EVENT_BUS: EventBusKind = EventBusKind.REDIS
    KAFKA_BOOTSTRAP_SERVERS: str | None = None
    EVENT_TOPIC_PREFIX: str = "eddy."
    COMMAND_PARTITIONS: int = Field(default=4, ge=1, le=256)
    EVENT_PARTITIONS: int = Field(default=4, ge=1, le=256)
    # Per-topic partition counts over those two: "indexing.bulk=8,events.knowledge=6"
    TOPIC_PARTITIONS: str = ""
    CONSUMER_MAX_ATTEMPTS: int = Field(default=5, ge=1)
    CONSUMER_CONCURRENCY: int = Field(default=8, ge=1, le=256)
    # Messages one chat processor member answers at once (each a model call held open)
    CHAT_CONCURRENCY: int = Field(default=100, ge=1, le=1024)
    # A task's stream of SSE events lives this long after its last event (reconnects)
    TASK_STREAM_TTL_SECONDS: int = Field(default=600, ge=10)
    # A client's SSE stream rides out Redis being unreachable this long, then ends with an
    # `error` event naming how to resume (a blocking request answers 202 with the task)
    TASK_STREAM_OUTAGE_SECONDS: float = Field(default=20.0, gt=0)
    # Answers one gateway process relays at once (each holds a Redis connection while it
    # waits for tokens); past it a new message is refused with 503 + Retry-After, unrecorded
    CHAT_MAX_OPEN_STREAMS: int = Field(default=400, ge=1, le=10000)
    # Connections per Redis client (each process has one for the bus, one for keys and task
    # streams); 0 = enough for CHAT_CONCURRENCY and CHAT_MAX_OPEN_STREAMS
    REDIS_MAX_CONNECTIONS: int = Field(default=0, ge=0)
    HEALTH_LAG_STALL_SECONDS: float = Field(default=30.0, gt=0)
    KAFKA_SESSION_TIMEOUT_MS: int = Field(default=6000, ge=1000)
    # Redis bus: a member's partition leases last this long unless renewed (a stalled
    # member's partitions move after it)
    REDIS_BUS_LEASE_SECONDS: float = Field(default=5.0, ge=0.5)
    # A member that stops fetching for this long with no message in flight is taken for hung
    # and gives its partitions up (both buses; work in flight keeps them however long it runs)
    CONSUMER_MAX_POLL_INTERVAL_SECONDS: float = Field(default=300.0, ge=1.0)
    # Worker processes serve Prometheus /metrics on this port; 0 = off
    WORKER_METRICS_PORT: int = Field(default=0, ge=0, le=65535)

    # Files (Dify names): opendal+fs keeps them in a local folder, s3 in a bucket
    STORAGE_TYPE: str = Field(default="opendal", pattern="^(opendal|s3)$")
    OPENDAL_SCHEME: str = Field(default="fs", pattern="^fs$")
    OPENDAL_FS_ROOT: Path | None = None  # default: EDDY_DATA_DIR/storage
    S3_ENDPOINT: str | None = None
    S3_BUCKET_NAME: str = "difyai"
    S3_ACCESS_KEY: str | None = None
    S3_SECRET_KEY: str | None = None
    S3_REGION: str | None = None
    S3_ADDRESS_STYLE: str = "auto"
    UPLOAD_FILE_SIZE_LIMIT: int = Field(default=15, ge=1, description="MB")
    # Service API /files/upload, per kind of file (Dify's names and defaults)
    UPLOAD_IMAGE_FILE_SIZE_LIMIT: int = Field(default=10, ge=1, description="MB")
    UPLOAD_AUDIO_FILE_SIZE_LIMIT: int = Field(default=50, ge=1, description="MB")
    UPLOAD_VIDEO_FILE_SIZE_LIMIT: int = Field(default=100, ge=1, description="MB")
    # Remote files (a message's remote_url images) are fetched only from public addresses;
    # these host names, IPs and CIDR networks are allowed even if private (comma-separated)
    SSRF_ALLOWED_HOSTS: str = ""
    # Signed file links (document downloads): their base URL (empty: the URL the request
    # came to) and how long they work, in seconds
    FILES_URL: str = ""
    FILES_ACCESS_TIMEOUT: int = Field(default=300, ge=1)
    # Webhook triggers: the largest request body a webhook accepts (bytes, Dify's default)
    WEBHOOK_REQUEST_BODY_MAX_SIZE: int = Field(default=10 * 1024 * 1024, ge=1)
    # Longest text accepted by create-by-text / update-by-text, and per segment content /
    # answer (characters); longer input is refused before anything is stored
    DOCUMENT_TEXT_MAX_LENGTH: int = Field(default=1_000_000, ge=1)
    SEGMENT_MAX_LENGTH: int = Field(default=100_000, ge=1)
    # Documents up to this size go to the priority indexing lane
    PRIORITY_LANE_MAX_BYTES: int = Field(default=512 * 1024, ge=0)

    # Vector store (Dify names)
    VECTOR_STORE: str = Field(default="pgvector", pattern="^(pgvector|weaviate)$")
    WEAVIATE_ENDPOINT: str | None = None
    WEAVIATE_API_KEY: str | None = None

    # Calls to services Eddy does not run (model providers, embedding and rerank endpoints):
    # connect and per-read timeouts (a stream's wait for its next chunk), the deadline of a
    # whole call with its retries (a stream: until its first byte), and the retries of
    # unreachable or 408/409/429/5xx answers. Past them the message or indexing attempt
    # fails visibly (it is not retried as an outage of Eddy's own servers would be).
    PROVIDER_CONNECT_TIMEOUT: float = Field(default=10.0, gt=0)
    PROVIDER_READ_TIMEOUT: float = Field(default=60.0, gt=0)
    PROVIDER_REQUEST_DEADLINE: float = Field(default=120.0, gt=0)
    PROVIDER_MAX_RETRIES: int = Field(default=2, ge=0, le=10)
    # A blocking chat request waits this long for its answer, then answers 202 with the
    # task to follow (the answer goes on)
    CHAT_BLOCKING_TIMEOUT_SECONDS: float = Field(default=300.0, gt=0)

    # Workflows: Dify's limits, same names and defaults
    WORKFLOW_MAX_EXECUTION_STEPS: int = Field(default=500, ge=1)
    WORKFLOW_MAX_EXECUTION_TIME: float = Field(default=1200.0, gt=0)  # seconds
    WORKFLOW_CALL_MAX_DEPTH: int = Field(default=5, ge=1)
    WORKFLOW_PARALLEL_DEPTH_LIMIT: int = Field(default=3, ge=1)
    # runs one engine member executes at once
    WORKFLOW_CONCURRENCY: int = Field(default=100, ge=1, le=1024)
    # node outputs larger than this (JSON bytes) go to storage, referenced from the event
    WORKFLOW_EVENT_INLINE_BYTES: int = Field(default=64 * 1024, ge=1024)
    CODE_EXECUTION_TIMEOUT: float = Field(default=15.0, gt=0)  # seconds of a code node
    CODE_MAX_STRING_LENGTH: int = Field(default=80000, ge=1)
    CODE_MAX_NUMBER: int = 9223372036854775807
    CODE_MIN_NUMBER: int = -9223372036854775808
    CODE_MAX_DEPTH: int = Field(default=5, ge=1)
    CODE_MAX_STRING_ARRAY_LENGTH: int = Field(default=30, ge=1)
    CODE_MAX_OBJECT_ARRAY_LENGTH: int = Field(default=30, ge=1)
    CODE_MAX_NUMBER_ARRAY_LENGTH: int = Field(default=1000, ge=1)
    CODE_MAX_MEMORY_MB: int = Field(default=256, ge=16)  # address space of a code node
    CODE_MAX_PRECISION: int = Field(default=20, ge=1)  # decimal places of a float output
    CODE_MAX_PROCESSES: int = Field(default=16, ge=2)  # tasks (processes, threads) of a code node
    TEMPLATE_TRANSFORM_MAX_LENGTH: int = Field(default=80000, ge=1)  # characters
    HTTP_REQUEST_NODE_MAX_TEXT_SIZE: int = Field(default=1024 * 1024, ge=1)
    HTTP_REQUEST_NODE_MAX_BINARY_SIZE: int = Field(default=10 * 1024 * 1024, ge=1)
    HTTP_REQUEST_MAX_CONNECT_TIMEOUT: float = Field(default=10.0, gt=0)
    HTTP_REQUEST_MAX_READ_TIMEOUT: float = Field(default=60.0, gt=0)
    HTTP_REQUEST_MAX_WRITE_TIMEOUT: float = Field(default=20.0, gt=0)

    # Embeddings: the offline local models by default; any OpenAI-compatible API otherwise.
    # EMBEDDING_PROVIDER's model is the default of new datasets; a dataset may name another
    # (`embedding_model_provider` / `embedding_model`): the local ones are always offered.
    EMBEDDING_PROVIDER: str = Field(default="local", pattern="^(local|openai_compatible)$")
    # The local default: English MiniLM or the multilingual Universal Sentence Encoder
    EMBEDDING_LOCAL_MODEL: Literal["all-MiniLM-L6-v2",
                                   "universal-sentence-encoder-multilingual-3"] = (
        "all-MiniLM-L6-v2")
    EMBEDDING_API_BASE: str | None = None
    EMBEDDING_API_KEY: str = ""
    EMBEDDING_MODEL: str = "text-embedding-3-small"
    EMBEDDING_DIMENSIONS: int = Field(default=1536, ge=1)

    # Retrieval hit counts go out as one event per dataset per window of this many seconds
    HIT_COUNT_FLUSH_SECONDS: float = Field(default=1.0, gt=0)

    # Commands
    COMMAND_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0)
    PROJECTION_WAIT_SECONDS: float = Field(default=10.0, gt=0)

    # The scheduler (`eddy scheduler`): its leader's lease; a standby takes over this long
    # after the leader stops renewing it (seconds)
    SCHEDULER_LEASE_SECONDS: int = Field(default=10, ge=2)
    # Dify's scheduled tasks (Celery beat's entries), same switches, names and defaults.
    # The daily ones run every CELERY_BEAT_SCHEDULER_TIME days (UTC).
    CELERY_BEAT_SCHEDULER_TIME: int = Field(default=1, ge=1, le=31)
    # clean_messages: messages and workflow runs older than the retention leave the read
    # models and every answer (a MessagesExpired / WorkflowRunExpired event each)
    ENABLE_CLEAN_MESSAGES: bool = False
    SANDBOX_EXPIRED_RECORDS_RETENTION_DAYS: int = Field(default=30, ge=1)
    SANDBOX_EXPIRED_RECORDS_CLEAN_BATCH_SIZE: int = Field(default=1000, ge=1)
    # clean_unused_datasets_task: datasets no document change, retrieval or app in use touched
    # for this many days have their documents disabled (they leave retrieval)
    ENABLE_CLEAN_UNUSED_DATASETS_TASK: bool = False
    PLAN_SANDBOX_CLEAN_DAY_SETTING: int = Field(default=30, ge=1)
    # Accepted for Dify's .env: Eddy keeps no embedding cache (see the README)
    ENABLE_CLEAN_EMBEDDING_CACHE_TASK: bool = False
    # datasets-queue-monitor: an alert mail to each address when the indexing backlog
    # reaches the threshold (one per interval while it lasts); interval in minutes
    ENABLE_DATASETS_QUEUE_MONITOR: bool = False
    QUEUE_MONITOR_THRESHOLD: int = Field(default=200, ge=1)
    QUEUE_MONITOR_ALERT_EMAILS: str = ""  # comma-separated
    QUEUE_MONITOR_INTERVAL: float = Field(default=30, gt=0)
    # poll_workflow_schedules: fires the schedule triggers that are due; interval in minutes
    # (a tick's run starts at most that late: Eddy polls every 15 s, Dify every minute)
    ENABLE_WORKFLOW_SCHEDULE_POLLER_TASK: bool = True
    WORKFLOW_SCHEDULE_POLLER_INTERVAL: float = Field(default=0.25, gt=0)

    # Accounts
    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=60, ge=1)
    REFRESH_TOKEN_EXPIRE_DAYS: int = Field(default=30, ge=1)
    LOGIN_LOCKOUT_ATTEMPTS: int = Field(default=5, ge=1)
    LOGIN_LOCKOUT_DURATION: int = Field(default=86400, ge=1, description="seconds")
    RESET_PASSWORD_TOKEN_EXPIRY_MINUTES: int = Field(default=5, ge=1)
    EMAIL_CODE_LOGIN_TOKEN_EXPIRY_MINUTES: int = Field(default=5, ge=1)
    FORGOT_PASSWORD_LOCKOUT_DURATION: int = Field(default=86400, ge=1, description="seconds")
    EMAIL_SEND_IP_LIMIT_PER_MINUTE: int = Field(default=50, ge=1)
    # How long an invitation's activation link works
    INVITE_EXPIRY_HOURS: int = Field(default=72, ge=1)
    # Links in mails (an invitation's activation page) point at the console here
    CONSOLE_WEB_URL: str = "http://localhost:3000"
    # An owner transfer's mailed code: how long it works; how long wrong codes lock it out
    OWNER_TRANSFER_TOKEN_EXPIRY_MINUTES: int = Field(default=5, ge=1)
    OWNER_TRANSFER_LOCKOUT_DURATION: int = Field(default=86400, ge=1, description="seconds")

    # Mail (Dify names): MAIL_TYPE=outbox writes each mail as an .eml file into
    # MAIL_OUTBOX_DIR (default EDDY_DATA_DIR/outbox); smtp hands it to SMTP_SERVER
    MAIL_TYPE: Literal["outbox", "smtp"] = "outbox"
    MAIL_DEFAULT_SEND_FROM: str = "Dify <no-reply@dify.local>"
    MAIL_OUTBOX_DIR: Path | None = None
    SMTP_SERVER: str = ""
    SMTP_PORT: int = Field(default=465, ge=1, le=65535)
    SMTP_USERNAME: str = ""
    SMTP_PASSWORD: str = ""
    SMTP_USE_TLS: bool = False
    SMTP_OPPORTUNISTIC_TLS: bool = False
    # A mail server that is down or answers 4xx: each mail is tried this many times, waiting
    # MAIL_RETRY_BACKOFF_SECONDS, doubled each time (at most a minute), then dead-lettered
    MAIL_SEND_MAX_ATTEMPTS: int = Field(default=6, ge=1)
    MAIL_RETRY_BACKOFF_SECONDS: float = Field(default=2.0, gt=0)

    @field_validator("KAFKA_BOOTSTRAP_SERVERS")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("TOPIC_PARTITIONS")
    @classmethod
    def _topic_partitions_format(cls, value: str) -> str:
        _parse_topic_partitions(value)
        return value

    @property
    def topic_partitions(self) -> dict[str, int]:
        return _parse_topic_partitions(self.TOPIC_PARTITIONS)

    @property
    def embedded_postgres(self) -> bool:
        return not self.DB_HOST

    @property
    def embedded_redis(self) -> bool:
        return not self.REDIS_HOST

    @cached_property
    def bus(self) -> EventBusKind:
        # Setting KAFKA_BOOTSTRAP_SERVERS alone selects Kafka, as the docs promise.
        if self.KAFKA_BOOTSTRAP_SERVERS and "EVENT_BUS" not in self.model_fields_set:
            return EventBusKind.KAFKA
        return self.EVENT_BUS

    def validate_runtime(self) -> None:
        if self.bus is EventBusKind.KAFKA and not self.KAFKA_BOOTSTRAP_SERVERS:
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS must be set when EVENT_BUS=kafka")
        if self.VECTOR_STORE == "weaviate" and not self.WEAVIATE_ENDPOINT:
            raise ConfigError("WEAVIATE_ENDPOINT must be set when VECTOR_STORE=weaviate")
        if self.EMBEDDING_PROVIDER == "openai_compatible" and not self.EMBEDDING_API_BASE:
            raise ConfigError(
                "EMBEDDING_API_BASE must be set when EMBEDDING_PROVIDER=openai_compatible")
        if self.MAIL_TYPE == "smtp" and not self.SMTP_SERVER:
            raise ConfigError("SMTP_SERVER must be set when MAIL_TYPE=smtp")

    def as_env(self, **extra: str) -> dict[str, str]:
        """These settings as environment variables, for child processes of the same node
        (worker processes, benchmarks, fault tests): they see exactly this configuration."""
        env = {name: str(value.value if isinstance(value, StrEnum) else value)
               for name, value in self.model_dump().items() if value is not None}
        env["EVENT_BUS"] = self.bus.value
        return {**env, **extra}

    def outbox_dir(self) -> Path:
        return self.MAIL_OUTBOX_DIR or self.EDDY_DATA_DIR / "outbox"

    def database_dsn(self) -> str:
        """asyncpg-style DSN (postgresql://...)."""
        auth = self.DB_USERNAME + (f":{self.DB_PASSWORD}" if self.DB_PASSWORD else "")
        return f"postgresql://{auth}@{self.DB_HOST}:{self.DB_PORT}/{self.DB_DATABASE}"

    @property
    def redis_max_connections(self) -> int:
        # every streamed answer and every answer in flight may hold one, plus the rest
        return self.REDIS_MAX_CONNECTIONS or (
            self.CHAT_MAX_OPEN_STREAMS + self.CHAT_CONCURRENCY + 64)

    def redis_url(self) -> str:
        auth = f":{self.REDIS_PASSWORD}@" if self.REDIS_PASSWORD else ""
        return f"redis://{auth}{self.REDIS_HOST}:{self.REDIS_PORT}/{self.REDIS_DB}"


def _parse_topic_partitions(value: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        topic, _, count = item.partition("=")
        if not topic.strip() or not count.strip().isdigit() or not 1 <= int(count) <= 256:
            raise ValueError(f"expected topic=partitions (1-256), comma-separated; got {item!r}")
        out[topic.strip()] = int(count)
    return out


def load_settings(**overrides: object) -> Settings:
    """Read settings; a bad variable becomes a ConfigError naming it."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
    settings.validate_runtime()
    return settings
