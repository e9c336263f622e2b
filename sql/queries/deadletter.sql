-- Dead letters: what landed in a *.XQ queue, kept with its reason for the UI.

-- name: dead_letter_insert
INSERT INTO dead_letters (dedupe_key, queue_name, campaign_id, delivery_id, email, actor_name, reason, message, raw)
SELECT k, %(queue_name)s, c, d, e, a, r, m, w
  FROM unnest(%(keys)s::text[], %(campaign_ids)s::bigint[], %(delivery_ids)s::bigint[], %(emails)s::text[],
              %(actor_names)s::text[], %(reasons)s::text[], %(messages)s::jsonb[], %(raws)s::bytea[])
       AS x(k, c, d, e, a, r, m, w)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING id;

-- name: dead_letter_page
SELECT l.id, l.queue_name, l.campaign_id, l.delivery_id, l.email, l.actor_name, l.reason, l.status,
       l.created_at, l.resolved_at, l.resolution, l.message IS NOT NULL AS replayable,
       d.status AS delivery_status, d.attempts
  FROM dead_letters l LEFT JOIN deliveries d ON d.id = l.delivery_id
 WHERE (%(campaign_id)s::bigint IS NULL OR l.campaign_id = %(campaign_id)s)
   AND (%(unassigned)s = false OR l.campaign_id IS NULL)
   AND (%(status)s::text IS NULL OR l.status = %(status)s)
   AND (%(before)s::bigint IS NULL OR l.id < %(before)s)
 ORDER BY l.id DESC LIMIT %(limit)s;

-- name: dead_letter_counts
SELECT status, count(*) AS n FROM dead_letters
 WHERE (%(campaign_id)s::bigint IS NULL OR campaign_id = %(campaign_id)s)
   AND (%(unassigned)s = false OR campaign_id IS NULL)
 GROUP BY status;

-- Locks the dead letters being resolved, so two replays at once replay each only once.
-- name: dead_letter_lock_open
SELECT * FROM dead_letters
 WHERE status = 'open' AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s))
   AND (%(campaign_id)s::bigint IS NULL OR campaign_id = %(campaign_id)s)
 ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED;

-- name: dead_letter_resolve
UPDATE dead_letters SET status = %(status)s, resolution = %(resolution)s, resolved_at = now()
 WHERE id = ANY(%(ids)s) AND status = 'open';

-- name: dead_letter_get
SELECT * FROM dead_letters WHERE id = %(id)s;
