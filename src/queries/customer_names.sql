-- Customers carry their party's name (see queries/customer_names.py): triggers keep
-- rm_customer.party_name equal to its party's (a Person's or an Organisation's) name, whichever
-- row is written first. Needs the ERP model's read-model tables; idempotent, so the migrations'
-- repeatable step runs it on every upgrade, right after those tables.

ALTER TABLE rm_customer ADD COLUMN IF NOT EXISTS party_name text;

CREATE OR REPLACE FUNCTION erp_customer_takes_party_name() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.party_name := coalesce(
    (SELECT p.name FROM rm_person p WHERE p.account_id = NEW.account_id AND p.id = NEW.party_id),
    (SELECT o.name FROM rm_organisation o WHERE o.account_id = NEW.account_id AND o.id = NEW.party_id));
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
