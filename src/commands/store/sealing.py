"""Personal data sealed in events with a key per data subject, and erased by deleting that key.

Crypto-shredding (Greg Young's "forgettable payloads"; Axon's data protection module): events never
change, so an event's personal fields are stored encrypted with their subject's own key, and erasing
the subject deletes the key. The model says which fields are personal (`PersonalData`, built by
`commands.model.personal`); the subject is the element whose attributes they are, so the stream.

* Sealing, on append: an event's personal fields leave its payload and come back as one AES-GCM
  envelope, `"$sealed": [<base64 nonce + ciphertext>, <field>, ...]`, bound to its account and
  stream. A new stream's key is made here and stored by the append that creates the stream, with
  its events (`Sealing.keys_for_append`); an older stream without one gets it from
  `SubjectKeys.sealing`.
* Opening, on every read path (loads, projectors, rebuilds, exports, parked events): the feed
  fetches the keys its rows need in one query and puts the fields back. A subject whose key is
  gone reads its personal fields as null: erased.
* Erasing: the erasure event's append and the key's deletion commit in one transaction
  (`commands.store.event_store`), so there is never an erasure on record with its key alive. The
  row stays, key NULL, as the record of the erasure: a late command cannot make a new key for the
  subject (`SubjectErased`).

Keys live in `subject_keys`, under row-level security like the events. Each process caches the
keys it used, bounded in bytes, for `ttl` seconds at most; an erasure tells every process to forget
the account's keys at once (`core.invalidations`).
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol
from uuid import UUID

import asyncpg
import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.invalidations import SUBJECT_KEYS, Invalidations
from tenancy.fences import FENCED, AccountElsewhere

SEALED = "$sealed"
"""The payload field holding an event's sealed personal fields (no attribute can be named so)."""
KEY_BYTES = 32
"""AES-256."""
NONCE_BYTES = 12

Pair = tuple[UUID, str]
"""(AccountId, subject): a subject is the stream whose personal data it is."""


class Executor(Protocol):
    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...


@dataclass(frozen=True)
class PersonalData:
    """Which fields of which events are personal, and which events erase their stream's subject."""

    fields: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    """(stream type, event name) -> its personal payload fields."""
    erasures: frozenset[tuple[str, str]] = frozenset()
    """(stream type, event name) of the erasure events."""

    def erases(self, stream_type: str, name: str) -> bool:
        return (stream_type, name) in self.erasures


class SubjectErased(Exception):
    """Personal data would be sealed for a subject already erased: the command was decided on state
    from before the erasure (the service decides again, and the erasure then refuses it)."""

    def __init__(self, account_id: UUID, subject: str) -> None:
        self.subject = subject
        super().__init__(f"{subject} was erased")


_SEALING = "SELECT subject, key FROM erp_subject_keys($1, $2::text[], $3::bytea[], $4)"
_OPENING_ONE = "SELECT $1::uuid AS account_id, subject, key FROM erp_open_subject_keys($1, $2::text[])"
_OPENING = """
SELECT k.account_id, k.subject, k.key
FROM unnest($1::uuid[], $2::text[]) AS p(account_id, subject)
JOIN subject_keys k ON k.account_id = p.account_id AND k.subject = p.subject
"""
ERASE = "SELECT erp_erase_subject($1, $2)"
"""Deletes a subject's key (keeping the row, key NULL, as the record of its erasure), in the
caller's transaction, which it scopes to the account."""

ENTRY_BYTES = 512
"""What one cached key costs: its (UUID, stream id) pair, an AESGCM object, the expiry and the
OrderedDict's slot (495 bytes measured with tracemalloc for a Person's stream id)."""
DEFAULT_CACHE_BYTES = 8 * 1024 * 1024
DEFAULT_TTL = 10.0


class SubjectKeys:
    """The subjects' keys, cached per process: at most `max_bytes`, each for `ttl` seconds.

    A cached erasure (None) is as final as the erasure itself; a key is remembered for `ttl` so
    that a process that missed an erasure's invalidation (Redis away) stops using it soon anyway.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES, ttl: float = DEFAULT_TTL) -> None:
        self._entries: OrderedDict[Pair, tuple[float, AESGCM | None]] = OrderedDict()
        self._capacity = max(0, max_bytes // ENTRY_BYTES)
        self._ttl = ttl

    def __len__(self) -> int:
        return len(self._entries)

    def cached(self, pair: Pair) -> tuple[bool, AESGCM | None]:
        """(whether it is known, its cipher or None if erased)."""
        entry = self._entries.get(pair)
        if entry is None:
            return False, None
        if entry[0] < time.monotonic():
            del self._entries[pair]
            return False, None
        self._entries.move_to_end(pair)
        return True, entry[1]

    def remember(self, pair: Pair, key: bytes | None) -> AESGCM | None:
        cipher = None if key is None else AESGCM(key)
        if self._capacity:
            self._entries[pair] = (time.monotonic() + self._ttl, cipher)
            self._entries.move_to_end(pair)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return cipher

    def forget_account(self, account_id: UUID) -> None:
        """Every key of the account (an erasure there): read again on next use."""
        for pair in [p for p in self._entries if p[0] == account_id]:
            del self._entries[pair]

    async def sealing(
        self, executor: Executor, account_id: UUID, subjects: Iterable[str]
    ) -> tuple[dict[str, AESGCM], dict[str, bytes]]:
        """Each subject's key, made where it has none; SubjectErased for one erased. Also the keys
        this call made: not remembered until the caller's append that uses them has committed
        (`remember`), since their own commit does not wait for the WAL flush that append's does."""
        found: dict[str, AESGCM] = {}
        made: dict[str, bytes] = {}
        missing: list[str] = []
        for subject in subjects:
            known, cipher = self.cached((account_id, subject))
            if cipher is not None:
                found[subject] = cipher
            elif known:
                raise SubjectErased(account_id, subject)
            elif subject not in missing:
                missing.append(subject)
        if missing:
            fresh = [os.urandom(KEY_BYTES) for _ in missing]
            alone = isinstance(executor, asyncpg.Pool)  # its own transaction: no flush to wait for
            try:
                rows = await executor.fetch(_SEALING, account_id, missing, fresh, alone)
            except asyncpg.PostgresError as error:
                if error.sqlstate == FENCED:  # a move holds the account's writes here
                    raise AccountElsewhere.from_detail(account_id, str(error.detail)) from None
                raise
            ours = set(fresh)
            for row in rows:
                subject, key = row["subject"], row["key"]
                if key is None:
                    self.remember((account_id, subject), None)
                    raise SubjectErased(account_id, subject)
                if key in ours:
                    made[subject] = key
                    found[subject] = AESGCM(key)
                else:
                    found[subject] = AESGCM(key)
                    self.remember((account_id, subject), key)
        return found, made

    async def opening(
        self, executor: Executor, pairs: Iterable[Pair], scope: UUID | None = None
    ) -> dict[Pair, AESGCM | None]:
        """Each pair's key, or None where the subject was erased (or never had one), in one query;
        with `scope`, pairs of that one account, read under its row-level security."""
        found: dict[Pair, AESGCM | None] = {}
        missing: list[Pair] = []
        for pair in pairs:
            if pair in found:
                continue
            known, cipher = self.cached(pair)
            if known:
                found[pair] = cipher
            else:
                found[pair] = None
                missing.append(pair)
        if missing:
            if scope is not None:
                rows = await executor.fetch(_OPENING_ONE, scope, [s for a, s in missing if a == scope])
            else:
                rows = await executor.fetch(_OPENING, [a for a, _ in missing], [s for _, s in missing])
            for row in rows:  # a pair with no row reads as erased, but is not remembered as erased
                pair = (row["account_id"], row["subject"])
                found[pair] = self.remember(pair, row["key"])
        return found


Keys = Mapping[Pair, AESGCM | None]
"""The keys a read needs, fetched before it decodes (`Sealing.keys_for`)."""
NO_KEYS: Keys = MappingProxyType({})

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


def _associated(account_id: UUID, stream_id: str) -> bytes:
    """What a sealed envelope is bound to: it opens only in its own account's stream."""
    return account_id.bytes + stream_id.encode()


class Sealing:
    """Seals events' personal fields on append and opens them on read (`seal` False: new events are
    stored in the clear, as before this existed; sealed ones still open)."""

    def __init__(
        self,
        personal: PersonalData,
        keys: SubjectKeys | None = None,
        *,
        seal: bool = True,
        invalidations: Invalidations | None = None,
    ) -> None:
        self.personal = personal
        self.keys = keys or SubjectKeys()
        self.seal_new = seal
        self._invalidations = invalidations

    async def erased(self, account_id: UUID) -> None:
        """A subject of the account was erased: this process forgets the account's keys, and every
        other one is told to (best effort; their entries expire within `ttl` anyway)."""
        self.keys.forget_account(account_id)
        if self._invalidations is not None:
            await self._invalidations.publish(SUBJECT_KEYS, account_id)

    def personal_fields(self, stream_type: str, name: str) -> tuple[str, ...]:
        return self.personal.fields.get((stream_type, name), ()) if self.seal_new else ()

    async def keys_for_append(
        self, executor: Executor, account_id: UUID, subjects: Mapping[str, bool]
    ) -> tuple[dict[str, AESGCM], dict[str, bytes], dict[str, bytes]]:
        """The keys to seal an append's subjects with ({subject: whether its stream is new}): the
        ciphers; the keys made for them (remembered once the append commits); and of those, the
        ones made here for new streams, which the append stores with the events (no round trip:
        a new stream has no key yet). SubjectErased for one erased."""
        ciphers: dict[str, AESGCM] = {}
        new: dict[str, bytes] = {}
        for subject, is_new in subjects.items():
            known, cipher = self.keys.cached((account_id, subject))
            if cipher is not None:
                ciphers[subject] = cipher
            elif is_new and not known:
                new[subject] = os.urandom(KEY_BYTES)
                ciphers[subject] = AESGCM(new[subject])
        rest = [s for s in subjects if s not in ciphers]
        made = dict(new)
        if rest:
            fetched, fetched_made = await self.keys.sealing(executor, account_id, rest)
            ciphers.update(fetched)
            made.update(fetched_made)
        return ciphers, made, new

    @staticmethod
    def seal(
        cipher: AESGCM, account_id: UUID, stream_id: str, payload: Mapping[str, Any], fields: Sequence[str]
    ) -> dict[str, Any]:
        """The payload with `fields` (those it has) sealed into one envelope."""
        present = [f for f in fields if f in payload]
        if not present:
            return dict(payload)
        plain = _encode({f: payload[f] for f in present})
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + cipher.encrypt(nonce, plain, _associated(account_id, stream_id))
        kept = {k: v for k, v in payload.items() if k not in present}
        kept[SEALED] = [base64.b64encode(sealed).decode(), *present]
        return kept

    async def keys_for(
        self, executor: Executor, rows: Sequence[asyncpg.Record], scope: UUID | None = None
    ) -> Keys:
        """The keys `rows` need to open (none fetched for rows with nothing sealed); `scope`: rows
        of that one account, whose keys are read under its row-level security."""
        pairs = [(r["account_id"], r["stream_id"]) for r in rows if SEALED in r["payload"]]
        if not pairs:
            return NO_KEYS
        return await self.keys.opening(executor, pairs, scope)

    @staticmethod
    def open(account_id: UUID, stream_id: str, payload: Mapping[str, Any], keys: Keys) -> dict[str, Any]:
        """The payload with its sealed fields back, or null where the subject was erased."""
        envelope = payload[SEALED]
        opened = {k: v for k, v in payload.items() if k != SEALED}
        sealed, fields = envelope[0], envelope[1:]
        cipher = keys.get((account_id, stream_id))
        values: dict[str, Any] = {}
        if cipher is not None:
            try:
                raw = base64.b64decode(sealed)
                plain = cipher.decrypt(
                    raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated(account_id, stream_id)
                )
                values = _decode(plain)
            except (InvalidTag, binascii.Error, ValueError):
                values = {}  # not this key's: as good as erased
        for name in fields:
            opened[name] = values.get(name)
        return opened
