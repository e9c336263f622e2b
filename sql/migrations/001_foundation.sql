-- The foundation: contacts, lists, campaigns, the deliveries outbox and the journal.
-- PostgreSQL is the only truth; queues only carry work lists that point back here.

CREATE EXTENSION IF NOT EXISTS citext;

-- One manager account (single-user tool); the CHECK keeps it single.
CREATE TABLE manager (
    id            smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    username      text NOT NULL CHECK (length(username) BETWEEN 1 AND 200),
    password_hash text NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE contacts (
    id          bigserial PRIMARY KEY,
    email       citext NOT NULL UNIQUE CHECK (length(email) BETWEEN 3 AND 320),
    name        text NOT NULL DEFAULT '' CHECK (length(name) <= 500),
    status      text NOT NULL DEFAULT 'subscribed'
                CHECK (status IN ('subscribed', 'unsubscribed', 'bounced')),
    attributes  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(attributes) = 'object'),
    tags        text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lists (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE list_members (
    list_id    bigint NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    contact_id bigint NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (list_id, contact_id)
);
CREATE INDEX list_members_contact ON list_members (contact_id);

-- Addresses that must never be mailed again (hard bounces, complaints, manual).
CREATE TABLE suppressions (
    email      citext PRIMARY KEY,
    reason     text NOT NULL DEFAULT '',
    source     text NOT NULL DEFAULT 'manual',
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaigns (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    from_name     text NOT NULL DEFAULT '' CHECK (length(from_name) <= 200),
    from_email    text NOT NULL CHECK (length(from_email) <= 320),
    reply_to      text NOT NULL DEFAULT '' CHECK (length(reply_to) <= 320),
    subject       text NOT NULL CHECK (length(subject) BETWEEN 1 AND 998),
    body_html     text NOT NULL DEFAULT '',
    list_id       bigint REFERENCES lists (id) ON DELETE SET NULL,
    status        text NOT NULL DEFAULT 'draft'
                  CHECK (status IN ('draft', 'scheduled', 'running', 'paused', 'stopped',
                                    'completed', 'failed', 'cancelled')),
    max_attempts  int NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 20),
    scheduled_at  timestamptz,
    started_at    timestamptz,
    finished_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Legal campaign transitions, enforced by a trigger so psql users obey them too.
CREATE TABLE campaign_transitions (
    from_status text NOT NULL,
    to_status   text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);
INSERT INTO campaign_transitions VALUES
    ('draft', 'scheduled'), ('draft', 'running'),
    ('scheduled', 'draft'), ('scheduled', 'running'), ('scheduled', 'cancelled'),
    ('running', 'paused'), ('running', 'stopped'), ('running', 'completed'), ('running', 'failed'),
    ('paused', 'running'), ('paused', 'stopped'),
    ('stopped', 'running');

CREATE FUNCTION campaigns_guard_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        PERFORM 1 FROM campaign_transitions
         WHERE from_status = OLD.status AND to_status = NEW.status;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'illegal campaign transition % -> %', OLD.status, NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER campaigns_guard_transition BEFORE UPDATE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION campaigns_guard_transition();

CREATE TABLE attachments (
    id           bigserial PRIMARY KEY,
    campaign_id  bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    filename     text NOT NULL CHECK (length(filename) BETWEEN 1 AND 255),
    content_type text NOT NULL,
    content      bytea NOT NULL,
    size         int NOT NULL,
    sha256       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attachments_campaign ON attachments (campaign_id);

-- The outbox: one row per campaign and recipient, frozen at materialisation.
-- Open states are queued and retry; sending is claimed (a worker owns it); the rest are final
-- except unknown, which waits for the manager.
CREATE TABLE deliveries (
    id          bigserial PRIMARY KEY,
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    contact_id  bigint REFERENCES contacts (id) ON DELETE SET NULL,
    email       citext NOT NULL,
    status      text NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'sending', 'retry', 'sent', 'failed', 'dead', 'unknown')),
    attempts    int NOT NULL DEFAULT 0,
    last_error  text,
    smtp_reply  text,
    message_id  text,
    queued_at   timestamptz NOT NULL DEFAULT now(),
    claimed_at  timestamptz,
    sent_at     timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, contact_id),
    UNIQUE (campaign_id, email)
);
CREATE INDEX deliveries_open ON deliveries (campaign_id, id) WHERE status IN ('queued', 'retry');
CREATE INDEX deliveries_sending ON deliveries (claimed_at) WHERE status = 'sending';

-- Per-status counters kept as append-only deltas by statement triggers: no hot row to fight
-- over, and a campaign's counts are a sum over a few thousand rows instead of a scan of
-- its deliveries.
CREATE TABLE delivery_counts (
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    status      text NOT NULL,
    delta       bigint NOT NULL
);
CREATE INDEX delivery_counts_campaign ON delivery_counts (campaign_id, status);

CREATE FUNCTION deliveries_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO delivery_counts (campaign_id, status, delta)
    SELECT campaign_id, status, count(*) FROM new_rows GROUP BY 1, 2;
    RETURN NULL;
END $$;
CREATE FUNCTION deliveries_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO delivery_counts (campaign_id, status, delta)
    SELECT campaign_id, status, sum(d) FROM (
        SELECT campaign_id, status, -1 AS d FROM old_rows
        UNION ALL
        SELECT campaign_id, status, 1 FROM new_rows
    ) c GROUP BY 1, 2 HAVING sum(d) <> 0;
    RETURN NULL;
END $$;
CREATE FUNCTION deliveries_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO delivery_counts (campaign_id, status, delta)
    SELECT o.campaign_id, o.status, -count(*) FROM old_rows o
      JOIN campaigns c ON c.id = o.campaign_id GROUP BY 1, 2;
    RETURN NULL;
END $$;
CREATE TRIGGER deliveries_count_insert AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION deliveries_count_insert();
CREATE TRIGGER deliveries_count_update AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_count_update();
CREATE TRIGGER deliveries_count_delete AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION deliveries_count_delete();

-- Append-only record of every state change. dedupe_key makes a replayed broker message
-- unable to write the same event twice.
CREATE TABLE journal (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    campaign_id bigint,
    delivery_id bigint,
    email       text,
    kind        text NOT NULL,
    source      text NOT NULL DEFAULT 'system',
    detail      jsonb NOT NULL DEFAULT '{}',
    dedupe_key  text UNIQUE
);
CREATE INDEX journal_campaign ON journal (campaign_id, id);
CREATE INDEX journal_kind ON journal (kind, id);

-- Rewrites are refused except for an erasure (data-protection request), which sets
-- mailer.erasure = 'on' for its own transaction.
CREATE FUNCTION journal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('mailer.erasure', true) = 'on' AND TG_OP = 'UPDATE' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'journal is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER journal_append_only BEFORE UPDATE OR DELETE ON journal
    FOR EACH ROW EXECUTE FUNCTION journal_append_only();

-- What the local capture SMTP server received, so the UI can show the inbox.
CREATE TABLE captured_messages (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    mail_from   text NOT NULL,
    rcpt_to     text[] NOT NULL,
    subject     text NOT NULL DEFAULT '',
    message_id  text,
    raw         bytea NOT NULL
);
CREATE INDEX captured_messages_rcpt ON captured_messages USING gin (rcpt_to);
