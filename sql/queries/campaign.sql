-- name: campaign_get
SELECT c.*, l.name AS list_name FROM campaigns c LEFT JOIN lists l ON l.id = c.list_id WHERE c.id = %(id)s;

-- name: campaign_lock
SELECT * FROM campaigns WHERE id = %(id)s FOR UPDATE;

-- name: campaign_status
SELECT status FROM campaigns WHERE id = %(id)s;

-- name: campaign_list
SELECT c.id, c.name, c.status, c.subject, c.created_at, c.started_at, c.finished_at, l.name AS list_name
  FROM campaigns c LEFT JOIN lists l ON l.id = c.list_id
 ORDER BY c.id DESC LIMIT 500;

-- name: campaign_insert
INSERT INTO campaigns (name, from_name, from_email, reply_to, subject, body_html, list_id, max_attempts,
                       segment_version_id, merge_version_id, exclude_list_ids, exclude_segment_version_ids)
VALUES (%(name)s, %(from_name)s, %(from_email)s, %(reply_to)s, %(subject)s, %(body_html)s, %(list_id)s, %(max_attempts)s,
        %(segment_version_id)s, %(merge_version_id)s, %(exclude_list_ids)s, %(exclude_segment_version_ids)s)
RETURNING id;

-- name: campaign_update
UPDATE campaigns SET name = %(name)s, from_name = %(from_name)s, from_email = %(from_email)s,
       reply_to = %(reply_to)s, subject = %(subject)s, body_html = %(body_html)s,
       list_id = %(list_id)s, max_attempts = %(max_attempts)s,
       segment_version_id = %(segment_version_id)s, merge_version_id = %(merge_version_id)s,
       exclude_list_ids = %(exclude_list_ids)s, exclude_segment_version_ids = %(exclude_segment_version_ids)s
 WHERE id = %(id)s AND status IN ('draft', 'scheduled');

-- name: campaign_set_status
UPDATE campaigns SET status = %(status)s,
       started_at = CASE WHEN %(status)s = 'running' THEN coalesce(started_at, now()) ELSE started_at END,
       finished_at = CASE WHEN %(status)s IN ('completed', 'stopped', 'failed', 'cancelled') THEN now() ELSE NULL END
 WHERE id = %(id)s;

-- Completes a running campaign when nothing is open or in flight. Safe to race: the
-- last worker to commit an outcome sees every other outcome. Run it after
-- campaign_lock_running in the same transaction: a replay or resend reopening deliveries
-- holds that lock until it commits, and this statement's own snapshot then sees them.
-- name: campaign_complete_if_done
UPDATE campaigns SET status = 'completed', finished_at = now()
 WHERE id = %(id)s AND status = 'running' AND materialising_after IS NULL
   AND (SELECT coalesce(sum(delta), 0) FROM delivery_counts
         WHERE campaign_id = %(id)s AND status IN ('queued', 'retry', 'sending')) = 0
RETURNING id;

-- The cheap test before taking the lock: most calls find work still open and stop here.
-- Both read the counters, which commit with every status change (migration 014).
-- name: campaign_has_open
SELECT coalesce(sum(delta), 0) > 0 AS open FROM delivery_counts
 WHERE campaign_id = %(id)s AND status IN ('queued', 'retry', 'sending');

-- name: campaign_lock_running
SELECT id FROM campaigns WHERE id = %(id)s AND status = 'running' FOR UPDATE;

-- name: campaign_counts
SELECT status, sum(delta)::bigint AS n FROM delivery_counts
 WHERE campaign_id = %(id)s GROUP BY status HAVING sum(delta) <> 0;

-- Folds a campaign's count deltas into one row per status; the scheduler runs it every tick
-- for running campaigns. Each dispatch chunk adds a few deltas, and the campaign page sums
-- them on every view: unfolded, a 100,000-email send left ~40,000 rows to sum per view.
-- The sum never changes: exactly the rows this DELETE removed come back summed, and deltas
-- committed meanwhile are not in its snapshot, so they stay as they are.
-- name: campaign_counts_fold
WITH folded AS (
    DELETE FROM delivery_counts WHERE campaign_id = %(id)s RETURNING status, delta
)
INSERT INTO delivery_counts (campaign_id, status, delta)
SELECT %(id)s, status, sum(delta) FROM folded GROUP BY status HAVING sum(delta) <> 0;

-- Set-based materialisation: the recipient set is frozen here, in one statement, once per
-- address (a segment may return an id twice: ON CONFLICT keeps the first). The target is a
-- list or a segment version (campaign_recipients, migration 015, says who is in it). The
-- first page (the lowest contact ids) goes into deliveries, the rest into the staging heap.
-- name: campaign_materialise_first
WITH recipients AS MATERIALIZED (
    SELECT r.contact_id, r.email
      FROM campaign_recipients(%(list_id)s, %(segment)s::regprocedure, %(exclude_segments)s::regprocedure[],
                               %(exclude_list_ids)s::bigint[]) AS r
), page AS MATERIALIZED (
    SELECT contact_id, email FROM recipients ORDER BY contact_id LIMIT %(limit)s
), inserted AS (
    INSERT INTO deliveries (campaign_id, contact_id, email)
    SELECT %(id)s, contact_id, email FROM page
    ON CONFLICT DO NOTHING
    RETURNING id
), staged AS (
    INSERT INTO materialise_staging (campaign_id, contact_id, email)
    SELECT %(id)s, contact_id, email FROM recipients WHERE contact_id > (SELECT max(contact_id) FROM page)
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted) AS n, (SELECT max(id) FROM inserted) AS last_id,
       (SELECT max(contact_id) FROM page) AS last_contact, (SELECT count(*) FROM staged) AS staged;

-- name: campaign_materialise_staged
INSERT INTO deliveries (campaign_id, contact_id, email)
SELECT %(id)s, contact_id, email FROM materialise_staging WHERE campaign_id = %(id)s
ON CONFLICT DO NOTHING;

-- name: campaign_staging_clear
DELETE FROM materialise_staging WHERE campaign_id = %(id)s;

-- name: campaign_staged
SELECT EXISTS (SELECT 1 FROM materialise_staging WHERE campaign_id = %(id)s) AS staged;

-- The rest read again, when its staged copy was lost with a PostgreSQL crash.
-- name: campaign_materialise_after
INSERT INTO deliveries (campaign_id, contact_id, email)
SELECT %(id)s, r.contact_id, r.email
  FROM campaign_recipients(%(list_id)s, %(segment)s::regprocedure, %(exclude_segments)s::regprocedure[],
                           %(exclude_list_ids)s::bigint[]) AS r
 WHERE r.contact_id > %(after_contact)s
ON CONFLICT DO NOTHING;

-- Serialises the starts of one campaign (a double click, the scheduler and a person at once,
-- the scheduler finishing an interrupted materialise) across the transactions of a start.
-- name: campaign_start_lock
SELECT pg_advisory_lock(727003, hashint8(%(id)s::bigint));

-- name: campaign_start_try_lock
SELECT pg_try_advisory_lock(727003, hashint8(%(id)s::bigint)) AS locked;

-- name: campaign_materialising
UPDATE campaigns SET materialising_after = %(after)s WHERE id = %(id)s;

-- name: campaign_materialised
UPDATE campaigns SET materialising_after = NULL WHERE id = %(id)s AND materialising_after IS NOT NULL
RETURNING status;

-- Statistics right after a large materialise: with the old ones (no rows for this campaign)
-- the planner read every remaining delivery of the campaign and sorted it for each enqueue
-- page (19 ms a page at 100,000, the largest PostgreSQL cost of `scripts/bench send`), where
-- an index walk takes 0.3 ms. Autovacuum would analyze too, but only after minutes.
-- name: deliveries_analyze
ANALYZE deliveries;

-- Campaigns whose materialise was interrupted (the scheduler finishes them).
-- name: campaign_materialise_unfinished
SELECT id, materialising_after FROM campaigns WHERE materialising_after IS NOT NULL;

-- name: campaign_delivery_total
SELECT count(*) AS n FROM deliveries WHERE campaign_id = %(id)s;

-- name: attachment_insert
INSERT INTO attachments (campaign_id, filename, content_type, content, size, sha256)
VALUES (%(campaign_id)s, %(filename)s, %(content_type)s, %(content)s, %(size)s, %(sha256)s) RETURNING id;

-- name: attachment_list
SELECT id, filename, content_type, size, sha256 FROM attachments WHERE campaign_id = %(campaign_id)s ORDER BY id;

-- name: attachment_contents
SELECT filename, content_type, content FROM attachments WHERE campaign_id = %(campaign_id)s ORDER BY id;

-- name: attachment_delete
DELETE FROM attachments a USING campaigns c
 WHERE a.id = %(id)s AND a.campaign_id = %(campaign_id)s AND c.id = a.campaign_id
   AND c.status IN ('draft', 'scheduled');

-- name: attachment_total_size
SELECT coalesce(sum(size), 0)::bigint AS n FROM attachments WHERE campaign_id = %(campaign_id)s;

-- A dry run: whom the campaign would reach now, without materialising anything.
-- name: campaign_recipient_count
SELECT count(DISTINCT r.contact_id) AS n
  FROM campaign_recipients(%(list_id)s, %(segment)s::regprocedure, %(exclude_segments)s::regprocedure[],
                           %(exclude_list_ids)s::bigint[]) AS r;

-- name: campaign_recipient_rows
SELECT DISTINCT ON (c.id) c.id AS contact_id, c.email, c.name, c.status, c.attributes, c.tags
  FROM campaign_recipients(%(list_id)s, %(segment)s::regprocedure, %(exclude_segments)s::regprocedure[],
                           %(exclude_list_ids)s::bigint[]) AS r
  JOIN contacts c ON c.id = r.contact_id
 ORDER BY c.id LIMIT %(limit)s;
