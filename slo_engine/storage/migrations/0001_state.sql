-- The state store on PostgreSQL: the tables of the SQLite file (storage/sqlite.py), same
-- names and columns; times as timestamptz, bytes as bytea, text ordered byte-wise ("C") as
-- SQLite orders it. Ids come from state_ids, inside the writing transaction, so a rolled-back
-- write leaves no gap (a sequence would) and ids match the SQLite store's.
CREATE TABLE changes (
    service text COLLATE "C" NOT NULL,
    kind text COLLATE "C" NOT NULL,
    version text COLLATE "C" NOT NULL,
    time text COLLATE "C" NOT NULL,
    time_ns bigint NOT NULL,
    body text NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (service, kind, version, time)
);
CREATE INDEX changes_by_time ON changes (service, time_ns);

CREATE TABLE state_ids (
    name text PRIMARY KEY,           -- the table whose ids it hands out
    last bigint NOT NULL             -- the last id handed out and committed
);
INSERT INTO state_ids (name, last) VALUES ('notify_outbox', 0), ('notify_incidents', 0);

CREATE TABLE notify_outbox (
    id bigint PRIMARY KEY,
    kind text NOT NULL,              -- post, update, reply, upload
    channel text NOT NULL,           -- as routed; a sent post keeps the ID Slack answered
    parent_id bigint,                -- the post whose channel and ts an update/reply needs
    notice_key text UNIQUE,          -- send_notice's idempotency key
    body text NOT NULL,              -- message JSON; an upload's title
    filename text,
    content bytea,
    state text NOT NULL DEFAULT 'queued',  -- queued, sending, sent, failed
    ts text,
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL,
    sent_at timestamptz,
    not_before timestamptz           -- Slack's Retry-After: not to be tried before
);
CREATE INDEX notify_outbox_by_state ON notify_outbox (state, id);
CREATE INDEX notify_outbox_by_parent ON notify_outbox (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE notify_incidents (
    id bigint PRIMARY KEY,
    incident_key text NOT NULL,
    service text NOT NULL,
    slo text NOT NULL,
    group_key text NOT NULL,
    severity text NOT NULL,
    channel text NOT NULL,
    post_id bigint NOT NULL,
    tiers text NOT NULL,             -- JSON list of the tiers firing now
    opened_at timestamptz NOT NULL,
    resolved_at timestamptz,
    consumed_at_open double precision,
    budget_spent double precision,
    fingerprint text NOT NULL,       -- of the last rendered page: an identical repeat is skipped
    message text NOT NULL
);
CREATE UNIQUE INDEX notify_open_incident ON notify_incidents (incident_key)
    WHERE resolved_at IS NULL;

CREATE TABLE engine_firing (
    tier text PRIMARY KEY,           -- dedup.tier_id
    body text NOT NULL               -- the BurnAlert as JSON
);

CREATE TABLE engine_budget_notices (
    service text NOT NULL,
    slo text NOT NULL,
    grp text NOT NULL,
    threshold double precision NOT NULL,
    sent_at timestamptz NOT NULL,
    PRIMARY KEY (service, slo, grp, threshold)
);

CREATE TABLE engine_outage (
    id integer PRIMARY KEY CHECK (id = 1),  -- at most one outage at a time
    since timestamptz NOT NULL,
    noticed boolean NOT NULL DEFAULT false,
    reason text NOT NULL
);

CREATE TABLE engine_lease (
    id integer PRIMARY KEY CHECK (id = 1),  -- one leader among the replicas
    holder text NOT NULL,
    token bigint NOT NULL,           -- fencing token: +1 each time the lease changes hands
    expires_at timestamptz NOT NULL
);

CREATE TABLE state_meta (
    id integer PRIMARY KEY CHECK (id = 1),  -- one row: which database this is
    identity text NOT NULL,
    created_at timestamptz NOT NULL,
    heartbeat_at timestamptz         -- /readyz's write probe
);
INSERT INTO state_meta (id, identity, created_at)
    VALUES (1, substr(md5(random()::text || clock_timestamp()::text), 1, 16), now());
