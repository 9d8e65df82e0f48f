"""The projectors' checkpoints (read-model tables are generated from the model: queries.model_tables)."""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import UUID

from erp.db import metadata

projection_checkpoints = Table(
    "projection_checkpoints",
    metadata,
    Column("projection", Text, nullable=False),
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("stream_type", Text, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("projection", "account_id", "stream_type", name="projection_checkpoints_pkey"),
)


parked_events = Table(
    "parked_events",
    metadata,
    Column("projection", Text, nullable=False),
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("stream_type", Text, nullable=False),
    Column("sequence_number", BigInteger, nullable=False),
    Column("stream_id", Text, nullable=False),
    Column("payload_item_name", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("parked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint(
        "projection", "account_id", "stream_type", "sequence_number", name="parked_events_pkey"
    ),
)
