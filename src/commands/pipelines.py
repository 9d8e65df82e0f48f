"""One command pipeline per tenant database, each with its projector wake-up; one stream cache for all
(its bound in bytes is the process's, whatever the number of databases)."""

from __future__ import annotations

from uuid import UUID

from commands.customisation import CUSTOMISATIONS_TTL, Customisations
from commands.handlers import CommandSpec
from commands.service import CommandService
from commands.store.event_store import EventStore
from commands.store.snapshots import Snapshots
from commands.store.wakeup import ProjectorWakeup
from commands.stream_cache import StreamCache
from core.invalidations import Invalidations
from tenancy.routing import Databases, Route


class CommandPipelines:
    """The command side of every tenant database; an account's commands run in its database's."""

    def __init__(
        self,
        databases: Databases,
        store: EventStore,
        commands: dict[str, CommandSpec],
        *,
        cache_ttl: float = CUSTOMISATIONS_TTL,
        invalidations: Invalidations | None = None,
        stream_cache: StreamCache | None = None,
    ) -> None:
        self._databases = databases
        self._store = store
        self._commands = commands
        self._cache_ttl = cache_ttl
        self._invalidations = invalidations
        self._stream_cache = StreamCache() if stream_cache is None else stream_cache
        self._services: dict[str, CommandService] = {}
        self._wakeups: dict[str, ProjectorWakeup] = {}

    def of(self, route: Route) -> CommandService:
        """The pipeline of the account's database."""
        service = self._services.get(route.database)
        if service is None:
            pool = self._databases.pool(route.database)
            wakeup = self._wakeups[route.database] = ProjectorWakeup(pool)
            customisations = Customisations(pool, self._cache_ttl, self._invalidations)
            service = CommandService(
                pool,
                self._store,
                self._commands,
                wakeup=wakeup,
                cache=self._stream_cache,
                customisations=customisations,
                snapshots=Snapshots(),
            )
            self._services[route.database] = service
        return service

    def customisations(self, route: Route) -> Customisations:
        """The custom attributes of the account's database."""
        return self.of(route).customisations

    def forget_customisations(self, account_id: UUID) -> None:
        """Every database's cached definitions of the account go (one was defined, elsewhere)."""
        for service in self._services.values():
            service.customisations.forget(account_id)

    async def close(self) -> None:
        for wakeup in self._wakeups.values():
            await wakeup.close()
        self._services.clear()
        self._wakeups.clear()
