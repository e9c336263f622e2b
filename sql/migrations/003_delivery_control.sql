-- Delivery that loses nothing: retry schedule, claim owners, worker heartbeats, dead letters,
-- and a way back to `running` for a finished campaign whose dead letters or unknown
-- deliveries the manager sends again.

-- When a delivery in `retry` is due again: a resume re-enqueues it with the delay it still has
-- instead of skipping its backoff. attempt_floor is the attempt count at the last replay, so
-- a replayed dead letter gets the campaign's full retry budget again.
ALTER TABLE deliveries
    ADD COLUMN next_attempt_at timestamptz,
    ADD COLUMN claimed_by      text,
    ADD COLUMN attempt_floor   int NOT NULL DEFAULT 0;

-- Each worker process writes its heartbeat every few seconds. A delivery claimed by a worker
-- whose heartbeat stopped is `unknown` within seconds, not after a long fixed grace period.
CREATE TABLE worker_heartbeats (
    worker_id  text PRIMARY KEY,
    host       text NOT NULL,
    pid        int NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now()
);

-- Everything that landed in a *.XQ dead-letter queue, with the reason, kept here so the
-- manager can list, replay and discard it per campaign. A per-email dead letter (an email
-- whose last retry failed) names its delivery; a malformed message names neither.
CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    dedupe_key  text NOT NULL UNIQUE,
    queue_name  text NOT NULL,
    campaign_id bigint,
    delivery_id bigint,
    email       text,
    actor_name  text,
    reason      text NOT NULL,
    message     jsonb,
    raw         bytea,
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'replayed', 'discarded')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    resolution  text
);
CREATE INDEX dead_letters_campaign ON dead_letters (campaign_id, id);
CREATE INDEX dead_letters_open ON dead_letters (id) WHERE status = 'open';

-- The journal page filters by address.
CREATE INDEX journal_email ON journal (lower(email), id) WHERE email IS NOT NULL;

-- Replaying a dead letter or resending an unknown delivery of a finished campaign opens it
-- again; it completes again once nothing is left open.
INSERT INTO campaign_transitions VALUES ('completed', 'running');
