"""ledger hot path as PostgreSQL functions: one round trip per admit and per settle

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

On PostgreSQL, admission and settlement each run as one function call in its own implicit
transaction: the hot wallet row is locked only inside the server, never across a round trip to
the application. Every function locks the workspace's wallet row first, and the application sends each batch
ordered by workspace, so concurrent admits and settles cannot wait on each other in a cycle. SQLite runs the same steps from Python
(`lipika.billing.repository`), serialised by its single writer lock.

Refusal codes returned by lipika_admit (read by `lipika.billing.meter`):
  LP001 no wallet   LP002 model not in plan   LP003 daily request limit   LP004 daily credit cap
  LP005 member monthly cap   LP006 insufficient credits (detail: available)   LP007 duplicate key

The application batches concurrent calls (lipika_admit_many, lipika_settle_many): one round trip
and one commit for every operation waiting at that moment, which is what lets one hot wallet
take over a thousand admit+capture pairs a second on two cores.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BUMP = """
CREATE FUNCTION lipika_bump(p_key text, p_day text, p_amount bigint, p_limit bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF p_amount > p_limit THEN
        RETURN false;
    END IF;
    INSERT INTO usage_counters AS c (key, value, day) VALUES (p_key, p_amount, p_day)
    ON CONFLICT (key) DO UPDATE SET value = c.value + EXCLUDED.value
        WHERE c.value + EXCLUDED.value <= p_limit;
    RETURN FOUND;
END $$
"""

# p_rules: {"<plan>": [allowed, daily request limit or null, daily credit cap or null]} for the
# model being admitted, computed by the application from the plan catalogue.
#
# Returns '' when admitted, or a refusal "LPnnn:detail". A refusal undoes what the call did
# (it never raises), so many admissions can share one transaction (lipika_admit_many).
ADMIT = """
CREATE FUNCTION lipika_admit(
    p_hold_id uuid, p_workspace_id uuid, p_user_id uuid, p_operation text, p_model text,
    p_amount bigint, p_price_version text, p_rates json, p_idempotency_key text,
    p_expires_at timestamptz, p_now timestamptz, p_day text, p_rules jsonb, p_default_plan text,
    p_request_key text, p_day_key text, p_member_key text
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_plan text;
    v_cap bigint;
    v_rule jsonb;
    v_counters jsonb := '[]'::jsonb;
    v_refusal text;
    v_available bigint;
BEGIN
    -- The wallet row is locked first, by every function here: a workspace's counters and
    -- holds are only touched under its wallet lock, so no two transactions wait on each other
    -- in a cycle (the application also orders each batch by workspace).
    SELECT w.plan, c.monthly_credit_cap INTO v_plan, v_cap
      FROM wallets w
      LEFT JOIN member_caps c ON c.workspace_id = w.workspace_id AND c.user_id = p_user_id
     WHERE w.workspace_id = p_workspace_id
       FOR UPDATE OF w;
    IF NOT FOUND THEN
        RETURN 'LP001:';
    END IF;
    v_rule := COALESCE(p_rules -> v_plan, p_rules -> p_default_plan);
    IF NOT (v_rule ->> 0)::boolean THEN
        RETURN 'LP002:' || v_plan;
    END IF;
    IF p_request_key IS NOT NULL AND jsonb_typeof(v_rule -> 1) = 'number' THEN
        IF NOT lipika_bump(p_request_key, p_day, 1, (v_rule ->> 1)::bigint) THEN
            RETURN 'LP003:' || v_plan;
        END IF;
        v_counters := v_counters || jsonb_build_array(jsonb_build_array(p_request_key, 'requests'));
    END IF;
    IF jsonb_typeof(v_rule -> 2) = 'number' THEN
        IF NOT lipika_bump(p_day_key, p_day, p_amount, (v_rule ->> 2)::bigint) THEN
            v_refusal := 'LP004:' || v_plan;
        ELSE
            v_counters := v_counters || jsonb_build_array(jsonb_build_array(p_day_key, 'credits'));
        END IF;
    END IF;
    IF v_refusal IS NULL AND v_cap IS NOT NULL AND p_member_key IS NOT NULL THEN
        IF NOT lipika_bump(p_member_key, p_day, p_amount, v_cap) THEN
            v_refusal := 'LP005:' || v_cap;
        ELSE
            v_counters := v_counters || jsonb_build_array(jsonb_build_array(p_member_key, 'credits'));
        END IF;
    END IF;
    IF v_refusal IS NULL THEN
        INSERT INTO holds (id, workspace_id, user_id, operation, model, amount, status, price_version,
                           rates, counters, idempotency_key, expires_at, overage, created_at)
        VALUES (p_hold_id, p_workspace_id, p_user_id, p_operation, p_model, p_amount, 'open',
                p_price_version, p_rates, v_counters::json, p_idempotency_key, p_expires_at, 0, p_now)
        ON CONFLICT (idempotency_key) DO NOTHING;
        IF NOT FOUND THEN
            v_refusal := 'LP007:';
        END IF;
    END IF;
    IF v_refusal IS NULL THEN
        -- Last, so the wallet row is locked for as short a time as possible.
        UPDATE wallets SET held = held + p_amount
         WHERE workspace_id = p_workspace_id AND balance - held >= p_amount;
        IF FOUND THEN
            RETURN '';
        END IF;
        DELETE FROM holds WHERE id = p_hold_id;
        SELECT balance - held INTO v_available FROM wallets WHERE workspace_id = p_workspace_id;
        v_refusal := 'LP006:' || v_available;
    END IF;
    -- Refused after counting: give back what was counted.
    UPDATE usage_counters u
       SET value = u.value - CASE WHEN e ->> 1 = 'requests' THEN 1 ELSE p_amount END
      FROM jsonb_array_elements(v_counters) e
     WHERE u.key = e ->> 0;
    RETURN v_refusal;
END $$
"""

# p_items: [[hold_id, workspace_id, user_id, operation, model, amount, price_version, rates,
#            idempotency_key, expires_at, rules, request_key, day_key, member_key], ...]
# One transaction and one commit for every admission the application batched together.
ADMIT_MANY = """
CREATE FUNCTION lipika_admit_many(p_items jsonb, p_now timestamptz, p_day text, p_default_plan text)
RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    i jsonb;
    v_results text[] := '{}';
BEGIN
    -- Commit without waiting for the WAL flush, so the wallet locks are not held through it;
    -- the application then waits for the flush (a synchronous commit after this one) before it
    -- tells any caller its hold exists: holds are durable before any provider call.
    PERFORM set_config('synchronous_commit', 'off', true);
    -- In the order given (the application's workspace order: the lock order).
    FOR i IN SELECT value FROM jsonb_array_elements(p_items) LOOP
        v_results := v_results || lipika_admit(
            (i ->> 0)::uuid, (i ->> 1)::uuid, (i ->> 2)::uuid, i ->> 3, i ->> 4, (i ->> 5)::bigint,
            i ->> 6, (i -> 7)::json, i ->> 8, (i ->> 9)::timestamptz, p_now, p_day, i -> 10, p_default_plan,
            i ->> 11, i ->> 12, i ->> 13);
    END LOOP;
    RETURN v_results;
END $$
"""

# Settlement commits asynchronously (synchronous_commit off for that transaction only): the
# wallet lock is not held through a WAL flush. A crash of the database server can lose the last
# few milliseconds of settlements; their holds are then still open and reconciliation releases
# them: the ledger stays balanced and the user is never charged twice, only possibly not at all.
#
# Both return (status, charged, balance_after, already_settled); status is NULL for no such hold.
CAPTURE = """
CREATE FUNCTION lipika_capture(
    p_hold_id uuid, p_cost bigint, p_usage json, p_outcome text, p_now timestamptz,
    OUT status text, OUT charged bigint, OUT balance_after bigint, OUT already_settled boolean
) LANGUAGE plpgsql AS $$
DECLARE
    h record;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM 1 FROM wallets WHERE workspace_id = (SELECT workspace_id FROM holds WHERE id = p_hold_id)
        FOR UPDATE;
    UPDATE holds
       SET status = 'captured', captured = LEAST(p_cost, amount), overage = GREATEST(p_cost - amount, 0),
           usage = p_usage, outcome = p_outcome, settled_at = p_now
     WHERE id = p_hold_id AND holds.status = 'open'
    RETURNING workspace_id, user_id, model, amount, counters, captured INTO h;
    IF NOT FOUND THEN
        SELECT holds.status, COALESCE(holds.captured, 0), NULL, true
          INTO status, charged, balance_after, already_settled
          FROM holds WHERE id = p_hold_id;
        RETURN;
    END IF;
    IF h.captured <> h.amount THEN
        UPDATE usage_counters SET value = value + (h.captured - h.amount)
         WHERE key IN (SELECT e ->> 0 FROM json_array_elements(h.counters) e WHERE e ->> 1 = 'credits');
    END IF;
    UPDATE wallets SET balance = balance - h.captured, held = held - h.amount
     WHERE workspace_id = h.workspace_id
    RETURNING balance INTO balance_after;
    IF h.captured > 0 THEN
        INSERT INTO ledger_entries (workspace_id, kind, amount, balance_after, idempotency_key,
                                    hold_id, user_id, model, reason, created_at)
        VALUES (h.workspace_id, 'usage', -h.captured, balance_after, 'usage:' || p_hold_id,
                p_hold_id, h.user_id, h.model, p_outcome, p_now);
    END IF;
    status := 'captured';
    charged := h.captured;
    already_settled := false;
END $$
"""

RELEASE = """
CREATE FUNCTION lipika_release(
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
       SET value = u.value - CASE WHEN e ->> 1 = 'requests' THEN 1 ELSE h.amount END
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

# p_items: [["capture", hold_id, cost, usage, outcome] | ["release", hold_id, status, outcome], ...]
SETTLE_MANY = """
CREATE FUNCTION lipika_settle_many(p_items jsonb, p_now timestamptz)
RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    i jsonb;
    r record;
    v_results json[] := '{}';
BEGIN
    FOR i IN SELECT value FROM jsonb_array_elements(p_items) LOOP
        IF i ->> 0 = 'capture' THEN
            SELECT * INTO r FROM lipika_capture((i ->> 1)::uuid, (i ->> 2)::bigint, (i -> 3)::json, i ->> 4, p_now);
        ELSE
            SELECT * INTO r FROM lipika_release((i ->> 1)::uuid, i ->> 2, i ->> 3, p_now);
        END IF;
        v_results := v_results || json_build_array(r.status, r.charged, r.balance_after, r.already_settled);
    END LOOP;
    RETURN array_to_json(v_results);
END $$
"""

FUNCTIONS = {
    "lipika_bump": (BUMP, "text, text, bigint, bigint"),
    "lipika_admit": (
        ADMIT,
        "uuid, uuid, uuid, text, text, bigint, text, json, text, timestamptz, timestamptz, text, "
        "jsonb, text, text, text, text",
    ),
    "lipika_admit_many": (ADMIT_MANY, "jsonb, timestamptz, text, text"),
    "lipika_capture": (CAPTURE, "uuid, bigint, json, text, timestamptz"),
    "lipika_release": (RELEASE, "uuid, text, text, timestamptz"),
    "lipika_settle_many": (SETTLE_MANY, "jsonb, timestamptz"),
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for sql, _ in FUNCTIONS.values():
        op.execute(sql)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (_, signature) in reversed(FUNCTIONS.items()):
        op.execute(f"DROP FUNCTION IF EXISTS {name}({signature})")
