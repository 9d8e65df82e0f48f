"""Read-model tables and the projectors' checkpoints."""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

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

orders = Table(
    "orders",
    metadata,
    Column("account_id", UUID(as_uuid=True), nullable=False),
    Column("order_id", UUID(as_uuid=True), nullable=False),
    Column("customer_name", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("total", Numeric(18, 2), nullable=False),
    Column("order_lines", JSONB, nullable=False),
    Column("cancel_reason", Text),
    Column("placed_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("account_id", "order_id", name="orders_pkey"),
    Index("orders_customer_idx", "account_id", "customer_name"),
)
