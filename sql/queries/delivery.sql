-- Open deliveries in id order, a page at a time (keyset, so a million rows stream).
-- next_attempt_at lets a resume keep what is left of a retry's backoff.
-- `until` bounds the stream of a first page, enqueued while the rest is still being written.
-- name: delivery_open_page
SELECT id, greatest(0, extract(epoch FROM next_attempt_at - now()) * 1000)::bigint AS wait_ms
  FROM deliveries
 WHERE campaign_id = %(campaign_id)s AND status IN ('queued', 'retry') AND id > %(after)s
   AND (%(until)s::bigint IS NULL OR id <= %(until)s)
 ORDER BY id LIMIT %(limit)s;

-- What prepare needs to render a batch: only deliveries still open. A contact deleted since
-- the materialise comes back as a NULL contact_id (the foreign key set it so), for prepare
-- to fail that email with a reason rather than leave it open for ever.
-- name: delivery_render_batch
SELECT d.id, d.email, c.id AS contact_id, c.name, c.status, c.attributes, c.tags
  FROM deliveries d LEFT JOIN contacts c ON c.id = d.contact_id
 WHERE d.id = ANY(%(ids)s) AND d.status IN ('queued', 'retry')
 ORDER BY d.id;

-- The claim: only one worker can move a delivery from open to sending.
-- claimed_by is "<worker id>/<claim token>": the worker part ties the claim to a heartbeat,
-- the token makes a claim retried after a lost commit find its own rows again.
-- Only while the campaign runs: the share lock makes a pause or stop (which locks the row
-- for update) wait for claims in progress and refuse every claim after it, so the counts it
-- journals are exact and nothing is claimed once it has committed.
-- What was claimed is noted in delivery_claims (one row per batch), where the scheduler
-- finds the claims of a worker that died.
-- name: delivery_claim
WITH running AS (SELECT id FROM campaigns WHERE id = %(campaign_id)s AND status = 'running' FOR SHARE),
claimed AS (
    UPDATE deliveries SET status = 'sending', attempts = attempts + 1, claimed_at = now(),
           claimed_by = %(claimed_by)s, updated_at = now()
     WHERE id = ANY(%(ids)s) AND campaign_id = (SELECT id FROM running) AND status IN ('queued', 'retry')
    RETURNING id, attempts, attempts - attempt_floor AS round_attempt
), noted AS (
    INSERT INTO delivery_claims (claimed_by, campaign_id, ids)
    SELECT %(claimed_by)s, %(campaign_id)s, array_agg(id) FROM claimed HAVING count(*) > 0
    ON CONFLICT (claimed_by) DO UPDATE SET ids = delivery_claims.ids || excluded.ids
)
SELECT * FROM claimed;

-- A batch's claims are settled (its last outcomes are in the same transaction). A delivery
-- still `sending` then was in flight when the batch broke off (an interrupt mid-send): its
-- fate is unknown, and the row stays for the scheduler to find it.
-- name: delivery_claim_release
DELETE FROM delivery_claims c
 WHERE c.claimed_by = %(claimed_by)s
   AND NOT EXISTS (SELECT 1 FROM deliveries d
                    WHERE d.id = ANY(c.ids) AND d.claimed_by = c.claimed_by AND d.status = 'sending');

-- name: delivery_claimed_by
SELECT id, attempts, attempts - attempt_floor AS round_attempt FROM deliveries
 WHERE id = ANY(%(ids)s) AND status = 'sending' AND claimed_by = %(claimed_by)s;

-- Outcomes of a batch and their journal events in one statement, from one JSON array
-- (psycopg builds it at C speed; eight typed arrays cost ~10 µs an email in Python).
-- A claimed delivery marked unknown meanwhile still gets the truth once the worker reports
-- it. A deferred email (no attempt made: every server resting) gives its attempt back.
-- Every outcome is journaled, applied or not (the journal says what the worker saw); the
-- key makes a retried commit write nothing twice.
-- name: delivery_record_outcomes
WITH o AS (
    SELECT * FROM json_to_recordset(%(outcomes)s::json)
           AS o(id bigint, email text, status text, reply text, message_id text, attempt int,
                not_tried int, wait_ms bigint)
), recorded AS (
    UPDATE deliveries d
       SET status = o.status, smtp_reply = o.reply,
           last_error = CASE WHEN o.status = 'sent' THEN NULL ELSE o.reply END,
           message_id = coalesce(o.message_id, d.message_id), attempts = d.attempts - o.not_tried,
           next_attempt_at = now() + o.wait_ms * interval '1 millisecond',
           sent_at = CASE WHEN o.status = 'sent' THEN now() ELSE d.sent_at END, updated_at = now()
      FROM o
     WHERE d.id = o.id AND d.status IN ('sending', 'unknown') AND d.claimed_by = %(claimed_by)s
)
INSERT INTO journal (campaign_id, delivery_id, email, kind, source, detail, dedupe_key)
SELECT %(campaign_id)s, o.id, o.email,
       CASE WHEN o.not_tried = 1 THEN 'delivery.deferred' ELSE 'delivery.' || o.status END, 'dispatch',
       jsonb_build_object('attempt', o.attempt - o.not_tried, 'reply', o.reply, 'message_id', o.message_id,
                          'retry_in_ms', o.wait_ms),
       CASE WHEN o.not_tried = 0 THEN format('d%%s.a%%s.%%s', o.id, o.attempt, o.status) END
  FROM o
ON CONFLICT (dedupe_key) DO NOTHING;

-- Rendering failures happen before the claim, so they close open deliveries directly.
-- name: delivery_fail_open
UPDATE deliveries d SET status = 'failed', last_error = o.error, updated_at = now()
  FROM unnest(%(ids)s::bigint[], %(errors)s::text[]) AS o(id, error)
 WHERE d.id = o.id AND d.status IN ('queued', 'retry');

-- name: delivery_list
SELECT id, email, status, attempts, last_error, smtp_reply, message_id, sent_at, updated_at
  FROM deliveries WHERE campaign_id = %(campaign_id)s AND id > %(after)s
   AND (%(status)s::text IS NULL OR status = %(status)s)
 ORDER BY id LIMIT %(limit)s;

-- A claimed delivery handed back untouched (campaign paused or stopped mid-batch).
-- name: delivery_unclaim
UPDATE deliveries SET status = CASE WHEN attempts > 1 THEN 'retry' ELSE 'queued' END,
       attempts = attempts - 1, claimed_at = NULL, updated_at = now()
 WHERE id = ANY(%(ids)s) AND status = 'sending' AND claimed_by = %(claimed_by)s;

-- name: delivery_status
SELECT status FROM deliveries WHERE id = %(id)s;

-- A replay reopens a delivery only from `dead`, with a fresh retry budget.
-- name: delivery_reopen_dead
UPDATE deliveries SET status = 'retry', attempt_floor = attempts, next_attempt_at = NULL, updated_at = now()
 WHERE id = ANY(%(ids)s) AND status = 'dead'
RETURNING id;

-- name: delivery_resend_unknown
UPDATE deliveries SET status = 'retry', attempt_floor = attempts, next_attempt_at = NULL, updated_at = now()
 WHERE campaign_id = %(campaign_id)s AND status = 'unknown' AND (%(id)s::bigint IS NULL OR id = %(id)s)
RETURNING id, email, attempts;

-- name: delivery_mark_unknown_sent
UPDATE deliveries SET status = 'sent', smtp_reply = 'marked as sent by the manager',
       sent_at = coalesce(sent_at, claimed_at), updated_at = now()
 WHERE campaign_id = %(campaign_id)s AND status = 'unknown' AND (%(id)s::bigint IS NULL OR id = %(id)s)
RETURNING id, email, attempts;
