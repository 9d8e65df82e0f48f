"""The one composition root: builds the pools, the store with the model's upcasters, Redis, Temporal
and each package's facade, once. The API (`erp.app`), the worker (`workflows.worker` via
`erp.cli`), the CLI and the bench all get their parts from a `Container`.

Nothing connects until `start()` (pools open; Redis and Temporal connect on first use), so the
app factory can hand the facades to Litestar before its event loop runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import cached_property

from litestar.channels import ChannelsPlugin
from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from litestar.di import Provide

from commands.deps import command_dependencies
from commands.erp_model import ERP, UPCASTERS
from commands.handlers import CommandSpec
from commands.pipelines import CommandPipelines
from commands.registry import COMMANDS
from commands.store.event_store import EventStore
from commands.store.sealing import Sealing, SubjectKeys
from commands.stream_cache import StreamCache
from core.invalidations import CUSTOMISATIONS, ROUTES, SUBJECT_KEYS, Invalidations, listening
from core.redis_client import RedisClient, redis_client
from core.redis_pubsub import ClusterChannelsBackend, Publisher
from core.settings import Settings
from core.subscribers import OverflowingSubscriber
from core.temporal import TemporalGateway
from erp.health import HealthChecks
from queries.deps import query_dependencies
from queries.notification_stream import NotificationStreams
from queries.notifications import Notifier
from queries.reader import ReadModels
from queries.waiter import ConsistencyWaiter
from tenancy.auth_failures import AuthFailures
from tenancy.bulkhead import AccountBulkhead
from tenancy.byte_budget import ByteBudget
from tenancy.catalog import AccountCatalog
from tenancy.deps import tenancy_dependencies
from tenancy.keys import KeyCache
from tenancy.moves import AccountMoves
from tenancy.moving import AccountMover
from tenancy.offboarding import AccountOffboarder
from tenancy.offboards import AccountOffboards
from tenancy.onboarding import Onboarding
from tenancy.rate_limit import AccountRateLimiter, command_limit
from tenancy.routing import Databases
from tenancy.tickets import StreamTickets
from workflows.activities import ErpActivities
from workflows.deps import workflow_dependencies
from workflows.operations import ProjectionOperations
from workflows.running import OperatorWorkflows
from workflows.starters import TemporalMoves, TemporalOffboarding, TemporalOnboarding


class Container:
    """Every collaborator of one process, built once from `settings`."""

    def __init__(
        self,
        settings: Settings,
        *,
        commands: dict[str, CommandSpec] | None = None,
        min_pool: int = 2,
        max_pool: int = 20,
    ) -> None:
        self.settings = settings
        self.databases = Databases(settings, min_size=min_pool, max_size=max_pool)
        self.redis = redis_client(
            settings.redis_url, cluster=settings.redis_cluster, socket_timeout=2, socket_connect_timeout=2
        )
        self.invalidations = Invalidations(Publisher(self.redis))
        """Telling every process to forget an account's cached route, definitions or subjects' keys."""
        self.sealing = Sealing(
            ERP.personal,
            SubjectKeys(settings.subject_key_cache_bytes, settings.subject_key_ttl),
            seal=settings.seal_personal_data,
            invalidations=self.invalidations,
        )
        """Personal data sealed with its subject's key on append, opened on every read."""
        self.store = EventStore(UPCASTERS, sealing=self.sealing)
        """The event store; its `feed` is how every reader (projectors, rebuilds) decodes events."""
        self.temporal = TemporalGateway(settings)
        self.catalog = AccountCatalog(self.databases)
        self.keys = KeyCache(self.catalog, ttl=settings.cache_ttl)
        self.onboarding = Onboarding(self.catalog, self.databases, TemporalOnboarding(self.temporal))
        self.moves = AccountMoves(
            self.catalog, self.databases, TemporalMoves(self.temporal, route_ttl=settings.cache_ttl)
        )
        self.offboards = AccountOffboards(
            self.catalog, self.moves, TemporalOffboarding(self.temporal, route_ttl=settings.cache_ttl)
        )
        self.commands = CommandPipelines(
            self.databases,
            self.store,
            COMMANDS if commands is None else commands,
            cache_ttl=settings.cache_ttl,
            invalidations=self.invalidations,
            stream_cache=StreamCache(settings.stream_cache_bytes),
        )
        self.projections = ProjectionOperations(
            self.databases, self.catalog, self.temporal, self.store.feed, retired_grace=settings.retired_grace
        )
        self.operations = OperatorWorkflows(self.temporal, self.projections, self.moves)
        """The builds, rebuilds and moves running or lately ended (the console's progress bars)."""
        self.health = HealthChecks(self.databases, self.redis, self.temporal)
        self.draining = asyncio.Event()
        """Set once the API server begins to stop: its notification streams end (`erp.cli.serve`)."""

    @cached_property
    def channels(self) -> ChannelsPlugin:
        """The API's Redis pub/sub (notifications and consistency waits), on a client of its own; on a
        Redis Cluster, sharded where the servers have it."""
        url = self.settings.redis_url
        backend: ChannelsBackend = (
            ClusterChannelsBackend(redis_client(url, cluster=True))
            if self.settings.redis_cluster
            else RedisChannelsPubSubBackend(redis=redis_client(url))
        )
        return ChannelsPlugin(
            backend=backend,
            arbitrary_channels_allowed=True,
            subscriber_max_backlog=self.settings.notification_backlog,
            subscriber_backlog_strategy="dropleft",
            subscriber_class=OverflowingSubscriber,  # a notification stream that falls behind is told
        )

    @cached_property
    def command_limiter(self) -> AccountRateLimiter | None:
        """The API's per-account command rate limit (None when ERP_COMMAND_RATE=0); a configuration
        that makes no sense raises here, so the API does not start with it."""
        limit = command_limit(self.settings)
        if limit is None:
            return None
        return AccountRateLimiter(self.settings.redis_url, limit, cluster=self.settings.redis_cluster)

    @cached_property
    def byte_budget(self) -> ByteBudget | None:
        """Each account's bytes of bodies and pages per second in this process (None when
        ERP_ACCOUNT_BYTES=0); one that makes no sense raises here, so the API does not start."""
        rate = self.settings.account_bytes
        return ByteBudget(rate) if rate else None

    @cached_property
    def auth_failures(self) -> AuthFailures | None:
        """Failed authentications per client address in this process (None when ERP_AUTH_FAILURES=0)."""
        limit = self.settings.auth_failures
        return AuthFailures(limit) if limit else None

    @cached_property
    def read_models(self) -> ReadModels:
        return ReadModels(self.databases, ConsistencyWaiter(self.channels))

    @cached_property
    def _notifier_redis(self) -> RedisClient:
        return redis_client(self.settings.redis_url, cluster=self.settings.redis_cluster)

    def activities(self) -> ErpActivities:
        """The worker's activities: projectors publishing to Redis, rebuilds, onboarding, moves and
        offboarding."""
        return ErpActivities(
            self.databases,
            self.store.feed,
            Notifier(self._notifier_redis),
            self.onboarding,
            AccountMover(self.databases, self.catalog, self.invalidations),
            self.temporal.deployment,
            offboarder=AccountOffboarder(self.databases, self.catalog, self.invalidations),
            export_dir=self.settings.export_dir,
        )

    def http_dependencies(self) -> dict[str, Provide]:
        """What the API's controllers may ask for, each a small dependency of its own."""
        return {
            **tenancy_dependencies(
                self.keys,
                self.onboarding,
                self.catalog,
                self.moves,
                self.offboards,
                self.command_limiter,
                AccountBulkhead(self.settings.account_concurrency),
                self.auth_failures,
                self.byte_budget,
                StreamTickets(self.redis, self.settings.sse_ticket_ttl),
            ),
            **command_dependencies(self.commands),
            **query_dependencies(
                self.read_models,
                self.byte_budget,
                NotificationStreams(self.channels, self.databases, self.settings.sse_ping, self.draining),
            ),
            **workflow_dependencies(self.projections, self.operations),
            "health_checks": Provide(lambda: self.health, use_cache=True, sync_to_thread=False),
        }

    def forgetting(self) -> AbstractAsyncContextManager[None]:
        """While the API serves: forget what other processes say changed (a route, definitions, a
        subject's key)."""
        return listening(
            self.channels,
            {
                ROUTES: self.keys.forget_account,
                CUSTOMISATIONS: self.commands.forget_customisations,
                SUBJECT_KEYS: self.sealing.keys.forget_account,
            },
        )

    @asynccontextmanager
    async def forgetting_keys(self) -> AsyncIterator[None]:
        """While a worker serves: forget the subjects' keys other processes say were erased."""
        async with self.channels, listening(self.channels, {SUBJECT_KEYS: self.sealing.keys.forget_account}):
            yield

    async def start(self) -> Container:
        await self.databases.open()
        try:
            self.temporal.identify(await self.catalog.deployment())
        except BaseException:
            await self.databases.close()
            raise
        return self

    async def close(self) -> None:
        await self.commands.close()
        await self.databases.close()
        await self.redis.aclose()
        if "_notifier_redis" in self.__dict__:
            await self._notifier_redis.aclose()
        if (limiter := self.__dict__.get("command_limiter")) is not None:
            await limiter.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Container]:
        """Started, then closed however the block ends."""
        await self.start()
        try:
            yield self
        finally:
            await self.close()
