"""The event store's tables: events, per-(account, stream type) sequence counters, the command log."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from erp.db import metadata

events = Table(
    "events",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("stream_id", Text, nullable=False),
    Column("stream_revision", Integer, nullable=False),
    Column("payload_item_name", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("stream_type", Text, nullable=False),
    Column("sequence_number", BigInteger, nullable=False),
    Column("commit_time", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("schema_version", SmallInteger, nullable=False, server_default="1"),
    Column("command_id", UUID(as_uuid=True), nullable=False),
    Column("correlation_id", UUID(as_uuid=True), nullable=False),
    Column("causation_id", UUID(as_uuid=True), nullable=False),
    Column("trace_context", JSONB, nullable=False, server_default="{}"),
    PrimaryKeyConstraint("account_id", "stream_id", "stream_revision", name="events_pkey"),
    UniqueConstraint("account_id", "stream_type", "sequence_number", name="events_account_type_sequence_key"),
    postgresql_partition_by="LIST (account_id)",
)

streams = Table(
    "streams",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("stream_id", Text, nullable=False),
    Column("stream_type", Text, nullable=False),
    Column("revision", Integer, nullable=False),
    PrimaryKeyConstraint("account_id", "stream_id", name="streams_pkey"),
)

stream_sequences = Table(
    "stream_sequences",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("stream_type", Text, nullable=False),
    Column("last_sequence", BigInteger, nullable=False),
    PrimaryKeyConstraint("account_id", "stream_type", name="stream_sequences_pkey"),
)

command_log = Table(
    "command_log",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("command_id", UUID(as_uuid=True), nullable=False),
    Column("command_name", Text, nullable=False),
    Column("request_hash", LargeBinary, nullable=False),
    Column("result", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("account_id", "command_id", name="command_log_pkey"),
)


customisations = Table(
    "customisations",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("element", Text, nullable=False),
    Column("attribute", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("required", Boolean, nullable=False, server_default="false"),
    Column("max_length", Integer),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("account_id", "element", "attribute", name="customisations_pkey"),
)
