-- Open deliveries in id order, a page at a time (keyset, so a million rows stream).
-- name: delivery_open_page
SELECT id FROM deliveries
 WHERE campaign_id = %(campaign_id)s AND status IN ('queued', 'retry') AND id > %(after)s
 ORDER BY id LIMIT %(limit)s;

-- What prepare needs to render a batch: only deliveries still open.
-- name: delivery_render_batch
SELECT d.id, d.email, c.id AS contact_id, c.name, c.status, c.attributes, c.tags
  FROM deliveries d JOIN contacts c ON c.id = d.contact_id
 WHERE d.id = ANY(%(ids)s) AND d.status IN ('queued', 'retry')
 ORDER BY d.id;

-- The claim: only one worker can move a delivery from open to sending.
-- name: delivery_claim
UPDATE deliveries SET status = 'sending', attempts = attempts + 1, claimed_at = now(), updated_at = now()
 WHERE id = ANY(%(ids)s) AND campaign_id = %(campaign_id)s AND status IN ('queued', 'retry')
RETURNING id, attempts;

-- Outcomes of a batch in one statement; a claimed delivery marked unknown meanwhile still
-- gets the truth once the worker reports it.
-- name: delivery_record_outcomes
UPDATE deliveries d
   SET status = o.status, smtp_reply = o.reply, last_error = o.error, message_id = o.message_id,
       sent_at = CASE WHEN o.status = 'sent' THEN now() ELSE d.sent_at END, updated_at = now()
  FROM unnest(%(ids)s::bigint[], %(statuses)s::text[], %(replies)s::text[], %(errors)s::text[],
              %(message_ids)s::text[]) AS o(id, status, reply, error, message_id)
 WHERE d.id = o.id AND d.status IN ('sending', 'unknown');

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
UPDATE deliveries SET status = 'queued', attempts = attempts - 1, claimed_at = NULL, updated_at = now()
 WHERE id = ANY(%(ids)s) AND status = 'sending';
