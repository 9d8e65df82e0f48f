"""Configuration from the environment, with working local defaults."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value else default


def _flag(name: str) -> bool:
    """True when the variable is 1, true or yes (any case); unset or anything else is false."""
    return os.environ.get(name, "").lower() in {"1", "true", "yes"}


MAIN_DATABASE = "main"
DEV_OPERATOR_TOKEN = "dev-operator-token"
"""The operator token when ERP_OPERATOR_TOKEN is unset: for a machine's own loopback only."""
MIN_EXPOSED_TOKEN = 16
"""Characters an operator token needs at least before the API listens beyond loopback."""


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1); False for 0.0.0.0, ::, and
    any other name or address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the API, the worker and the CLI read from the environment."""

    database_url: str = field(
        default_factory=lambda: _env("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/erp")
    )
    redis_url: str = field(default_factory=lambda: _env("REDIS_URL", "redis://127.0.0.1:6379/0"))
    redis_cluster: bool = field(default_factory=lambda: _flag("ERP_REDIS_CLUSTER"))
    """REDIS_URL names one startup node of a Redis Cluster; notifications then use sharded pub/sub
    (SPUBLISH, SSUBSCRIBE) where the servers have it."""
    temporal_address: str = field(default_factory=lambda: _env("TEMPORAL_ADDRESS", "127.0.0.1:7233"))
    temporal_namespace: str = field(default_factory=lambda: _env("TEMPORAL_NAMESPACE", "default"))
    task_queue: str = field(default_factory=lambda: _env("ERP_TASK_QUEUE", ""))
    """Empty: the deployment's own queue (`core.deployment`), so two deployments never share one."""
    operator_token: str = field(default_factory=lambda: _env("ERP_OPERATOR_TOKEN", DEV_OPERATOR_TOKEN))
    http_port: int = field(default_factory=lambda: int(_env("ERP_HTTP_PORT", "8000")))
    http_host: str = field(default_factory=lambda: _env("ERP_HTTP_HOST", "127.0.0.1"))
    api_docs: bool = field(default_factory=lambda: _flag("ERP_API_DOCS"))
    """Serve Swagger UI (/schema/swagger) and ReDoc (/schema/redoc). Off by default: their pages load
    scripts from public CDNs. The OpenAPI document itself is always served."""
    partitions: int = field(default_factory=lambda: int(_env("ERP_PARTITIONS", "16")))
    """Partitions of each table that grows with events, in a database migrated from scratch (read by
    migration 0009 only: a database keeps the number it was made with)."""
    extra_databases: str = field(default_factory=lambda: _env("ERP_DATABASES", ""))
    """More tenant databases, `name=url,name=url`; new accounts are placed across them (and main)."""
    dedicated_databases: str = field(default_factory=lambda: _env("ERP_DEDICATED_DATABASES", ""))
    """Tenant databases, `name,name`, that new accounts never go to: big accounts are moved there."""
    command_rate: int = field(default_factory=lambda: int(_env("ERP_COMMAND_RATE", "100")))
    """Commands per second each account may send, on average (0: no limit)."""
    command_burst: int = field(default_factory=lambda: int(_env("ERP_COMMAND_BURST", "200")))
    """The most commands an account may send at once: a whole multiple of `command_rate`."""
    cache_ttl: float = field(default_factory=lambda: float(_env("ERP_CACHE_TTL", "60")))
    """Seconds an API process serves a key's route and an account's definitions without asking; a
    move waits twice that before it removes an account's old copy."""
    account_bytes: int = field(default_factory=lambda: int(_env("ERP_ACCOUNT_BYTES", str(4 * 1024 * 1024))))
    """Bytes of request bodies and list pages an account may move per second in one API process,
    on average (bursts of four seconds' worth); 0: no budget."""
    auth_failures: int = field(default_factory=lambda: int(_env("ERP_AUTH_FAILURES", "30")))
    """Failed authentications a client address may make per minute in one API process before it is
    answered 429 (0: no limit)."""
    account_concurrency: int = field(default_factory=lambda: int(_env("ERP_ACCOUNT_CONCURRENCY", "4")))
    """Commands of one account in progress at once in one API process; the rest wait their turn."""
    stream_cache_bytes: int = field(
        default_factory=lambda: int(_env("ERP_STREAM_CACHE_BYTES", str(64 * 1024 * 1024)))
    )
    """Estimated bytes of recent streams' events one API process keeps (64 MiB), an account at most
    an eighth of them (`commands.stream_cache`); 0 keeps none."""

    seal_personal_data: bool = field(default_factory=lambda: _env("ERP_SEAL_PERSONAL_DATA", "1") != "0")
    """Store new events' personal fields sealed with their subject's key (0: in the clear, as
    before; sealed ones still read). Erasure needs them sealed to erase them from events."""
    subject_key_cache_bytes: int = field(
        default_factory=lambda: int(_env("ERP_SUBJECT_KEY_CACHE_BYTES", str(8 * 1024 * 1024)))
    )
    """Bytes of data subjects' keys one process keeps (8 MiB: about 16,000 keys)."""
    subject_key_ttl: float = field(default_factory=lambda: float(_env("ERP_SUBJECT_KEY_TTL", "10")))
    """Seconds a process uses a subject's key without asking again: how long an erasure can go
    unnoticed by a process that missed its invalidation (Redis away)."""

    export_dir: str = field(default_factory=lambda: _env("ERP_EXPORT_DIR", ".erp/exports"))
    """Where the worker writes an offboarded account's events (`<AccountId>.jsonl`, mode 0600)."""

    retired_grace: float = field(default_factory=lambda: float(_env("ERP_RETIRED_GRACE", "3600")))
    """Seconds a read model's retired version is kept after a new one is switched in, then dropped."""

    cors_origins: str = field(default_factory=lambda: _env("ERP_CORS_ORIGINS", ""))
    """Browser origins allowed to call the API, `https://a.example,https://b.example` (empty: no
    CORS headers at all, so browsers on other origins are refused)."""
    sse_ping: float = field(default_factory=lambda: float(_env("ERP_SSE_PING", "15")))
    """Seconds an idle GET /notifications stream waits before it sends a `: ping` comment."""
    sse_ticket_ttl: int = field(default_factory=lambda: int(_env("ERP_SSE_TICKET_TTL", "60")))
    """Seconds a ticket from POST /notifications/tickets may wait to be used (once)."""
    notification_backlog: int = field(default_factory=lambda: int(_env("ERP_NOTIFICATION_BACKLOG", "1000")))
    """Notifications a subscriber may have waiting; a stream whose backlog overflows is told so and
    closed (its client resumes with Last-Event-ID)."""
    shutdown_timeout: int = field(default_factory=lambda: int(_env("ERP_SHUTDOWN_TIMEOUT", "10")))
    """Seconds the API waits for requests in progress once told to stop, then cancels them."""

    @property
    def cors_origin_list(self) -> list[str]:
        """ERP_CORS_ORIGINS as a list (empty: no CORS)."""
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    def check_exposure(self) -> None:
        """Raises ValueError when the API would listen beyond loopback (ERP_HTTP_HOST) with the
        development operator token, or one short enough to guess: anyone who can reach the port
        could then onboard, move and rebuild accounts."""
        if is_loopback(self.http_host):
            return
        if self.operator_token == DEV_OPERATOR_TOKEN or len(self.operator_token) < MIN_EXPOSED_TOKEN:
            raise ValueError(
                f"ERP_HTTP_HOST={self.http_host} listens beyond this machine, so ERP_OPERATOR_TOKEN "
                f"must be a secret of your own of at least {MIN_EXPOSED_TOKEN} characters, not "
                + ("the development token" if self.operator_token == DEV_OPERATOR_TOKEN else "one this short")
                + " (for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )

    @property
    def databases(self) -> dict[str, str]:
        """Every tenant database by name: `main` (DATABASE_URL, also home of the catalog) first."""
        databases = {MAIN_DATABASE: self.database_url}
        for item in filter(None, (part.strip() for part in self.extra_databases.split(","))):
            name, sep, url = item.partition("=")
            if not sep or not name.strip() or not url.strip():
                raise ValueError(f"ERP_DATABASES entries look like name=url, got {item!r}")
            databases[name.strip()] = url.strip()
        return databases

    @property
    def placeable(self) -> list[str]:
        """The tenant databases new accounts may go to: all but the dedicated ones."""
        dedicated = {name.strip() for name in self.dedicated_databases.split(",") if name.strip()}
        unknown = dedicated - set(self.databases)
        if unknown:
            raise ValueError(
                f"ERP_DEDICATED_DATABASES names no configured database: {', '.join(sorted(unknown))}"
            )
        placeable = [name for name in self.databases if name not in dedicated]
        if not placeable:
            raise ValueError("ERP_DEDICATED_DATABASES leaves no database for new accounts")
        return placeable

    def for_database(self, name: str) -> Settings:
        """These settings pointed at one tenant database (for migrations and pools)."""
        return replace(self, database_url=self.databases[name], extra_databases="")

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL in SQLAlchemy's asyncpg dialect form."""
        url = self.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        return url
