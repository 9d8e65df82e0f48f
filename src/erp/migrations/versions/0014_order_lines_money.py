"""Order lines in the orders read model hold their money in the wire's form (`"10.00"`).

GetOrders now answers the stored lines as they are, without a look at each line, and the projector
stores new lines in that form (`queries.model_projection`); lines projected before from events of
the old, looser grammar may hold `"1E+3"` or `"12.5"`. This rewrites those lines once. The read
model is made by the repeatable step at head, so a database migrated from scratch has none yet.

Revision ID: 0014
Revises: 0013
"""

from erp.migrations.helpers import run_script

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

NORMALISE = r"""
DO $$
BEGIN
    IF to_regclass('rm_order') IS NULL THEN
        RETURN;
    END IF;
    UPDATE rm_order o SET order_lines = (
        SELECT jsonb_agg(
                   CASE WHEN jsonb_typeof(l -> 'UnitPrice') = 'string'
                        THEN jsonb_set(l, '{UnitPrice}',
                                       to_jsonb(round((l ->> 'UnitPrice')::numeric, 2)::text))
                        ELSE l END
                   ORDER BY n)
        FROM jsonb_array_elements(o.order_lines) WITH ORDINALITY AS x(l, n))
    WHERE jsonb_typeof(o.order_lines) = 'array' AND jsonb_array_length(o.order_lines) > 0
      AND EXISTS (SELECT FROM jsonb_array_elements(o.order_lines) AS l
                  WHERE jsonb_typeof(l -> 'UnitPrice') = 'string'
                    AND l ->> 'UnitPrice' !~ '^[0-9]+\.[0-9]{2}$');
END $$;
"""


def upgrade() -> None:
    run_script(NORMALISE)


def downgrade() -> None:
    """Nothing to undo: the amounts are the same, only written in one form."""
