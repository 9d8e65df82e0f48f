"""Workflow and activity inputs and outputs: one dataclass each.

Every input names its `deployment` (`core.deployment`): a worker runs only its own deployment's
activities, so two deployments that share a task queue by mistake never cross-wire.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProjectorInput:
    projection: str
    database: str = "main"
    deployment: str = ""
    run_for_seconds: float = 3000.0
    """The activity returns after this long and the workflow continues as new, keeping history short."""


@dataclass(frozen=True)
class RebuildInput:
    projection: str
    databases: list[str]
    """Tenant databases to rebuild in, one after the other (the account's only, for one account)."""
    account_id: str | None = None
    deployment: str = ""


@dataclass(frozen=True)
class RebuildStep:
    projection: str
    database: str
    account_id: str | None = None
    events_before: int = 0
    """Events replayed in the databases before this one, so heartbeats count for the whole rebuild."""
    deployment: str = ""


@dataclass(frozen=True)
class RebuildProgress:
    """A rebuild activity's heartbeat: where it is, and where a retried attempt resumes."""

    accounts: int
    accounts_done: int
    events: int
    """Replayed in this database's accounts done (a retry replays the account in progress again)."""
    batches: int
    last_account: str | None = None
    """The last account done; a retried attempt goes on with the next."""
    account_events: int = 0
    """Replayed so far in the account in progress."""
    events_before: int = 0
    """Replayed in the databases before this one."""

    @property
    def replayed(self) -> int:
        """Events replayed by the whole rebuild so far."""
        return self.events_before + self.events + self.account_events


@dataclass(frozen=True)
class RebuildResult:
    projection: str
    account_id: str | None
    batches: int
    events_applied: int


@dataclass(frozen=True)
class BuildInput:
    """Build a new version of a projection beside the live one, in each database, and switch to it."""

    projection: str
    databases: list[str]
    grace_seconds: float = 3600.0
    """How long the retired version's tables are kept after the switch, then dropped."""
    deployment: str = ""


@dataclass(frozen=True)
class BuildStep:
    projection: str
    database: str
    version: int = 0
    """The version built (0 until `prepare_build` answers it)."""
    deployment: str = ""


@dataclass(frozen=True)
class BuildProgress:
    """A build activity's heartbeat: how far it is, and where a retried attempt goes on."""

    database: str
    version: int
    events: int
    """Events replayed into the version so far (by this attempt and those before it)."""
    total: int
    """Events the version had to replay when the build started in this database."""
    chunks: int = 0
    cursor_account: str | None = None
    """The bulk pass has replayed every account up to this one (None: none yet)."""
    cursor_stream_type: str = ""
    phase: str = "replaying"
    attempt: int = 1
    """The activity's attempt (a later one went on from an earlier one's)."""


@dataclass(frozen=True)
class BuildState:
    """What a build workflow says of itself (its `state` query)."""

    phase: str
    """preparing, building, switching, done (the retired version dropped later, by a workflow of its
    own), aborting, aborted."""
    versions: dict[str, int]
    """The version built, per database."""
    retired: dict[str, int]
    """The version it replaced, per database, once switched."""


@dataclass(frozen=True)
class DropInput:
    """Drop a build's retired versions (database: version) after `grace_seconds`."""

    projection: str
    retired: dict[str, int]
    grace_seconds: float
    deployment: str = ""


@dataclass(frozen=True)
class BuildResult:
    projection: str
    versions: dict[str, int]
    retired: dict[str, int]
    events: int
    aborted: bool = False


@dataclass(frozen=True)
class AccountInput:
    account_id: str
    database: str = "main"
    deployment: str = ""


@dataclass(frozen=True)
class OnboardResult:
    account_id: str
    partition: str
    status: str


@dataclass(frozen=True)
class ImportInput:
    """A bulk import's onboarding: its accounts are registered (keys and all) before it starts."""

    import_id: str
    accounts: int
    deployment: str = ""


@dataclass(frozen=True)
class ImportStep:
    import_id: str
    limit: int
    deployment: str = ""


@dataclass(frozen=True)
class ImportResult:
    import_id: str
    activated: int


@dataclass(frozen=True)
class MoveInput:
    """Move an account from the tenant database `source` to `target` (`tenancy.moving`'s steps)."""

    account_id: str
    source: str
    target: str
    move_id: str
    deployment: str = ""
    route_ttl: float = 60.0
    """How long an API may serve a route it cached (ERP_CACHE_TTL): the old copy goes after twice that."""


@dataclass(frozen=True)
class MoveState:
    """Where a move is: the workflow's `state` query."""

    source: str
    target: str
    phase: str
    fenced_seconds: float | None = None


@dataclass(frozen=True)
class CopyProgress:
    """A copying activity's heartbeat."""

    events_copied: int
    events_to_copy: int


@dataclass(frozen=True)
class MoveResult:
    account_id: str
    source: str
    target: str
    events_copied: int
    read_model_rows: int
    rows_removed: int
    fenced_seconds: float


@dataclass(frozen=True)
class OffboardInput:
    """Offboard an account from the tenant database it lives in (`tenancy.offboarding`'s steps)."""

    account_id: str
    database: str
    offboard_id: str
    deployment: str = ""
    route_ttl: float = 60.0
    """How long an API may serve a route it cached (ERP_CACHE_TTL): its rows go after twice that."""


@dataclass(frozen=True)
class OffboardState:
    """Where an offboarding is: the workflow's `state` query."""

    database: str
    phase: str
    export: str | None = None
    """The export's file, once written."""
    events_exported: int = 0


@dataclass(frozen=True)
class ExportProgress:
    """The export activity's heartbeat."""

    events_exported: int
    events_to_export: int


@dataclass(frozen=True)
class ExportResult:
    path: str
    """The file on the worker's machine, absolute."""
    events: int


@dataclass(frozen=True)
class OffboardResult:
    account_id: str
    database: str
    export: str
    events_exported: int
    rows_removed: int
