"""metering core: holds with an owner, one generic admission function, unit counters

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-01

Holds name what owns them (`owner_kind`, `owner_id`: a chat request, an agent step, a job, a
speech session), so that reconciliation can ask the owner's resolver what happened to an
expired one.

Admission on PostgreSQL becomes one generic function, `lipika_admit_rules`: the application
computes the rules (billing/rules.py: for each plan, refused, or the counters to bump under
which caps), and the function only does the atomic part: lock the wallet, pick the wallet's
plan's rule, bump each counter under its cap, count the member's monthly cap (read from
`member_caps` under the lock), insert the hold, reserve the amount. SQLite runs the same steps
from Python. The positional, per-limit `lipika_admit` of 0003 is no longer called, but it stays:
during a rolling deploy the previous release's pods still admit through it (after this
migration and before they are replaced); a later migration drops it.

Each counter a hold bumped is kept on it as [key, kind, amount]; a release gives back one
request, the hold's current amount of credits (an extension bumps them too), or the units it
counted. Refusals: LP001 no wallet, LP002:<plan> not in plan, LPC:<plan>:<limit> a limit of the
plan's rule, LP005:<cap> member monthly cap, LP006:<available> insufficient credits, LP007
duplicate idempotency key.
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# p: {"id", "workspace_id", "user_id", "operation", "model", "amount", "price_version", "rates",
#     "key", "expires_at", "owner_kind", "owner_id", "member_key",
#     "rules": {"<plan>": [refusal or null, [[key, amount, cap, kind, index], ...]]}}
# Returns '' when admitted, or a refusal; a refusal undoes what the call did (it never raises),
# so many admissions can share one transaction (lipika_admit_rules_many).
ADMIT = """
CREATE FUNCTION lipika_admit_rules(p jsonb, p_now timestamptz, p_day text, p_default_plan text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_workspace uuid := (p ->> 'workspace_id')::uuid;
    v_hold uuid := (p ->> 'id')::uuid;
    v_amount bigint := (p ->> 'amount')::bigint;
    v_plan text;
    v_cap bigint;
    v_rule jsonb;
    c jsonb;
    v_counters jsonb := '[]'::jsonb;
    v_refusal text;
    v_available bigint;
BEGIN
    -- The wallet row first, by every ledger function: no two transactions wait in a cycle.
    SELECT w.plan, m.monthly_credit_cap INTO v_plan, v_cap
      FROM wallets w
      LEFT JOIN member_caps m
        ON m.workspace_id = w.workspace_id AND m.user_id = (p ->> 'user_id')::uuid
     WHERE w.workspace_id = v_workspace
       FOR UPDATE OF w;
    IF NOT FOUND THEN
        RETURN 'LP001:';
    END IF;
    v_rule := COALESCE(p -> 'rules' -> v_plan, p -> 'rules' -> p_default_plan);
    IF v_rule ->> 0 IS NOT NULL THEN
        RETURN (v_rule ->> 0) || ':' || v_plan;
    END IF;
    FOR c IN SELECT value FROM jsonb_array_elements(v_rule -> 1) LOOP
        IF NOT lipika_bump(c ->> 0, p_day, (c ->> 1)::bigint, (c ->> 2)::bigint) THEN
            v_refusal := 'LPC:' || v_plan || ':' || (c ->> 4);
            EXIT;
        END IF;
        v_counters := v_counters || jsonb_build_array(
            jsonb_build_array(c ->> 0, c ->> 3, (c ->> 1)::bigint));
    END LOOP;
    IF v_refusal IS NULL AND v_cap IS NOT NULL AND p ->> 'member_key' IS NOT NULL THEN
        IF NOT lipika_bump(p ->> 'member_key', p_day, v_amount, v_cap) THEN
            v_refusal := 'LP005:' || v_cap;
        ELSE
            v_counters := v_counters || jsonb_build_array(
                jsonb_build_array(p ->> 'member_key', 'credits', v_amount));
        END IF;
    END IF;
    IF v_refusal IS NULL THEN
        INSERT INTO holds (id, workspace_id, user_id, operation, model, amount, status,
                           price_version, rates, counters, idempotency_key, expires_at, overage,
                           created_at, owner_kind, owner_id)
        VALUES (v_hold, v_workspace, (p ->> 'user_id')::uuid, p ->> 'operation', p ->> 'model',
                v_amount, 'open', p ->> 'price_version', (p -> 'rates')::json, v_counters::json,
                p ->> 'key', (p ->> 'expires_at')::timestamptz, 0, p_now, p ->> 'owner_kind',
                p ->> 'owner_id')
        ON CONFLICT (idempotency_key) DO NOTHING;
        IF NOT FOUND THEN
            v_refusal := 'LP007:';
        END IF;
    END IF;
    IF v_refusal IS NULL THEN
        -- Last, so the wallet row is locked for as short a time as possible.
        UPDATE wallets SET held = held + v_amount
         WHERE workspace_id = v_workspace AND balance - held >= v_amount;
        IF FOUND THEN
            RETURN '';
        END IF;
        DELETE FROM holds WHERE id = v_hold;
        SELECT balance - held INTO v_available FROM wallets WHERE workspace_id = v_workspace;
        v_refusal := 'LP006:' || v_available;
    END IF;
    -- Refused after counting: give back what was counted.
    UPDATE usage_counters u SET value = u.value - (e ->> 2)::bigint
      FROM jsonb_array_elements(v_counters) e
     WHERE u.key = e ->> 0;
    RETURN v_refusal;
END $$
"""

ADMIT_MANY = """
CREATE FUNCTION lipika_admit_rules_many(
    p_items jsonb, p_now timestamptz, p_day text, p_default_plan text
) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    i jsonb;
    v_results text[] := '{}';
BEGIN
    -- Commit without waiting for the WAL flush (the wallet locks are not held through it); the
    -- application waits for the flush before any caller learns of its hold (see 0003).
    PERFORM set_config('synchronous_commit', 'off', true);
    FOR i IN SELECT value FROM jsonb_array_elements(p_items) LOOP
        v_results := v_results || lipika_admit_rules(i, p_now, p_day, p_default_plan);
    END LOOP;
    RETURN v_results;
END $$
"""

# As in 0003, but a release gives each counter back by its kind (units: the amount it counted).
RELEASE = """
CREATE OR REPLACE FUNCTION lipika_release(
    p_hold_id uuid, p_status text, p_outcome text, p_now timestamptz,
    OUT status text, OUT charged bigint, OUT balance_after bigint, OUT already_settled boolean
) LANGUAGE plpgsql AS $$
DECLARE
    h record;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM 1 FROM wallets WHERE workspace_id = (SELECT workspace_id FROM holds WHERE id = p_hold_id)
        FOR UPDATE;
    UPDATE holds SET status = p_status, captured = 0, outcome = p_outcome, settled_at = p_now
     WHERE id = p_hold_id AND holds.status = 'open'
    RETURNING workspace_id, amount, counters INTO h;
    IF NOT FOUND THEN
        SELECT holds.status, COALESCE(holds.captured, 0), NULL, true
          INTO status, charged, balance_after, already_settled
          FROM holds WHERE id = p_hold_id;
        RETURN;
    END IF;
    UPDATE usage_counters u
       SET value = u.value - CASE e ->> 1
                                 WHEN 'requests' THEN 1
                                 WHEN 'credits' THEN h.amount
                                 ELSE (e ->> 2)::bigint
                             END
      FROM json_array_elements(h.counters) e
     WHERE u.key = e ->> 0;
    UPDATE wallets SET held = held - h.amount
     WHERE workspace_id = h.workspace_id
    RETURNING balance INTO balance_after;
    status := p_status;
    charged := 0;
    already_settled := false;
END $$
"""

# A hold grows (more amount, a later expiry) under its wallet's lock in one round trip, refused
# like an admission: each credits counter the hold bumped takes the extension under its cap
# (p_caps: {"<plan>": daily credit cap or null}; the member's cap from member_caps), and the
# wallet must have it available. A refusal rolls the subtransaction back and is returned:
# LP404 no such hold, LP409 already settled, LP004:<cap> daily cap, LP005:<cap> member cap,
# LP006:<available> insufficient credits.
EXTEND = """
CREATE FUNCTION lipika_extend(
    p_hold_id uuid, p_more bigint, p_expires_at timestamptz, p_day text, p_caps jsonb,
    p_default_plan text, OUT refusal text, OUT amount bigint, OUT expires_at timestamptz
) LANGUAGE plpgsql AS $$
DECLARE
    v_plan text;
    v_member_cap bigint;
    v_cap bigint;
    v_available bigint;
    h record;
    e json;
BEGIN
    SELECT w.plan, m.monthly_credit_cap INTO v_plan, v_member_cap
      FROM holds x
      JOIN wallets w ON w.workspace_id = x.workspace_id
      LEFT JOIN member_caps m ON m.workspace_id = x.workspace_id AND m.user_id = x.user_id
     WHERE x.id = p_hold_id
       FOR UPDATE OF w;
    IF NOT FOUND THEN
        refusal := 'LP404:';
        RETURN;
    END IF;
    SELECT x.status, x.amount, x.expires_at, x.workspace_id, x.counters INTO h
      FROM holds x WHERE x.id = p_hold_id;
    IF h.status <> 'open' THEN
        refusal := 'LP409:';
        RETURN;
    END IF;
    BEGIN
        FOR e IN SELECT value FROM json_array_elements(h.counters) LOOP
            CONTINUE WHEN e ->> 1 <> 'credits';
            IF starts_with(e ->> 0, 'member:') THEN
                v_cap := v_member_cap;
            ELSE
                v_cap := (COALESCE(p_caps -> v_plan, p_caps -> p_default_plan) #>> '{}')::bigint;
            END IF;
            IF v_cap IS NULL THEN
                UPDATE usage_counters SET value = value + p_more WHERE key = e ->> 0;
            ELSIF NOT lipika_bump(e ->> 0, p_day, p_more, v_cap) THEN
                RAISE EXCEPTION '%', CASE WHEN starts_with(e ->> 0, 'member:') THEN 'LP005:'
                                          ELSE 'LP004:' END || v_cap;
            END IF;
        END LOOP;
        UPDATE wallets SET held = held + p_more
         WHERE workspace_id = h.workspace_id AND balance - held >= p_more;
        IF NOT FOUND THEN
            SELECT balance - held INTO v_available FROM wallets WHERE workspace_id = h.workspace_id;
            RAISE EXCEPTION '%', 'LP006:' || v_available;
        END IF;
        UPDATE holds x SET amount = x.amount + p_more,
                           expires_at = GREATEST(x.expires_at, p_expires_at)
         WHERE x.id = p_hold_id
        RETURNING x.amount, x.expires_at INTO amount, expires_at;
        refusal := '';
    EXCEPTION WHEN raise_exception THEN
        refusal := SQLERRM;
    END;
END $$
"""

NEW_FUNCTIONS = {
    "lipika_admit_rules": (ADMIT, "jsonb, timestamptz, text, text"),
    "lipika_admit_rules_many": (ADMIT_MANY, "jsonb, timestamptz, text, text"),
    "lipika_extend": (EXTEND, "uuid, bigint, timestamptz, text, jsonb, text"),
}
REPLACED = ("lipika_admit_many", "lipika_admit")  # 0003's, kept for the previous release


def _revision_0003():
    path = Path(__file__).with_name("0003_ledger_functions.py")
    spec = importlib.util.spec_from_file_location("lipika_migration_0003", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    op.add_column("holds", sa.Column("owner_kind", sa.String(length=50), nullable=True))
    op.add_column("holds", sa.Column("owner_id", sa.String(length=200), nullable=True))
    op.create_index("ix_holds_owner", "holds", ["owner_kind", "owner_id"])
    if op.get_bind().dialect.name != "postgresql":
        return
    for sql, _ in NEW_FUNCTIONS.values():
        op.execute(sql)
    op.execute(RELEASE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, (_, signature) in reversed(NEW_FUNCTIONS.items()):
            op.execute(f"DROP FUNCTION IF EXISTS {name}({signature})")
        old = _revision_0003().FUNCTIONS
        op.execute(
            old["lipika_release"][0].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
        )
        for name in reversed(REPLACED):  # still there unless a later revision dropped them
            op.execute(old[name][0].replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
    op.drop_index("ix_holds_owner", table_name="holds")
    op.drop_column("holds", "owner_id")
    op.drop_column("holds", "owner_kind")
