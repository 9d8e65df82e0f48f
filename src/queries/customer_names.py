"""Customers carry their party's name, so GetCustomers pages through them by name from an index.

A Customer's name is its party's (a Person's or an Organisation's), and it changes when the party is
renamed. The party's events live in other streams than the Customer's, and the projector applies
stream types in whatever order it claims them, so triggers keep `rm_customer.party_name` equal to the
party's name whichever row is written first: a Customer written takes its party's current name, and a
party written or renamed gives its name to its Customers. The ERP model's read-model tables must exist
first (`ensure_model_tables`); this runs right after them, on every migration, and is idempotent.
"""

from __future__ import annotations

from typing import Any

import asyncpg

PARTY_NAME_OF = """coalesce(
    (SELECT p.name FROM rm_person p WHERE p.account_id = {row}.account_id AND p.id = {row}.party_id),
    (SELECT o.name FROM rm_organisation o WHERE o.account_id = {row}.account_id AND o.id = {row}.party_id))"""

DDL = f"""
ALTER TABLE rm_customer ADD COLUMN IF NOT EXISTS party_name text;

CREATE OR REPLACE FUNCTION erp_customer_takes_party_name() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.party_name := {PARTY_NAME_OF.format(row="NEW")};
    RETURN NEW;
END $$;

CREATE OR REPLACE TRIGGER rm_customer_takes_party_name
    BEFORE INSERT OR UPDATE OF party_id ON rm_customer
    FOR EACH ROW EXECUTE FUNCTION erp_customer_takes_party_name();

CREATE OR REPLACE FUNCTION erp_party_gives_name() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE rm_customer SET party_name = NEW.name
    WHERE account_id = NEW.account_id AND party_id = NEW.id AND party_name IS DISTINCT FROM NEW.name;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER rm_person_gives_name
    AFTER INSERT OR UPDATE OF name ON rm_person
    FOR EACH ROW EXECUTE FUNCTION erp_party_gives_name();

CREATE OR REPLACE TRIGGER rm_organisation_gives_name
    AFTER INSERT OR UPDATE OF name ON rm_organisation
    FOR EACH ROW EXECUTE FUNCTION erp_party_gives_name();

CREATE INDEX IF NOT EXISTS rm_customer_party_name_seek_idx
    ON rm_customer (account_id, (coalesce(party_name, '')), id);

-- Customers projected before these triggers existed.
UPDATE rm_customer c SET party_name = {PARTY_NAME_OF.format(row="c")}
WHERE c.party_name IS NULL AND {PARTY_NAME_OF.format(row="c")} IS NOT NULL;
"""


async def ensure_customer_names(connection: asyncpg.Connection[Any]) -> None:
    async with connection.transaction():
        await connection.execute(DDL)
