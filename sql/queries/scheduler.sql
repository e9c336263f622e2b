-- name: scheduler_due_campaigns
SELECT id FROM campaigns WHERE status = 'scheduled' AND scheduled_at <= now() ORDER BY scheduled_at;

-- name: scheduler_running_campaigns
SELECT id FROM campaigns WHERE status = 'running';

-- A claim is unknown when its worker's heartbeat stopped (killed mid-send), or when it is
-- older than any send could take. Heartbeats are only trusted once the scheduler has been
-- connected for the whole silence period: right after the database restarted, every
-- heartbeat is old, and the workers need a moment to beat again. Claims in flight are found
-- through delivery_claims (one row per dispatch batch), never by scanning deliveries.
-- name: scheduler_mark_unknown
WITH claim AS MATERIALIZED (
    SELECT c.claimed_by, c.ids,
           %(connected_at)s::timestamptz < now() - %(dead_after)s::interval
           AND NOT EXISTS (SELECT 1 FROM worker_heartbeats h
                            WHERE h.worker_id = split_part(c.claimed_by, '/', 1)
                              AND h.seen_at > now() - %(dead_after)s::interval) AS worker_gone
      FROM delivery_claims c
     WHERE c.claimed_at < now() - least(%(grace)s::interval, %(dead_after)s::interval)
)
-- The ids as one array, looked up by primary key: joined to the claims instead, the planner
-- (with a fresh campaign's statistics) hashed every delivery on every tick, 24 ms each.
UPDATE deliveries d SET status = 'unknown', updated_at = now()
 WHERE d.id = ANY (ARRAY(SELECT unnest(c.ids) FROM claim c)) AND d.status = 'sending'
   AND EXISTS (SELECT 1 FROM claim c
                WHERE c.claimed_by = d.claimed_by AND d.id = ANY(c.ids)
                  AND (d.claimed_at < now() - %(grace)s::interval
                       OR (c.worker_gone AND d.claimed_at < now() - %(dead_after)s::interval)))
RETURNING d.id, d.campaign_id, d.email, d.attempts, d.claimed_at, d.claimed_by;

-- Claims with nothing left in flight: a dead worker's, once all of them are marked unknown
-- (the tick after), or a batch whose worker vanished after settling its outcomes.
-- name: scheduler_claims_prune
DELETE FROM delivery_claims c
 WHERE c.claimed_at < now() - interval '1 minute'
   AND NOT EXISTS (SELECT 1 FROM deliveries d
                    WHERE d.id = ANY(c.ids) AND d.claimed_by = c.claimed_by AND d.status = 'sending');

-- Open deliveries of a campaign that should be in a queue now (a retry not yet due is held
-- in a delay queue by a worker), counted only up to what the queues could carry.
-- name: purge_open_due
SELECT count(*) AS n FROM (
    SELECT 1 FROM deliveries
     WHERE campaign_id = %(id)s AND status IN ('queued', 'retry')
       AND (next_attempt_at IS NULL OR next_attempt_at < now() - interval '30 seconds')
     LIMIT %(limit)s) due;

-- Progress of a campaign: its last journal event and when a worker last picked up its work.
-- name: purge_progress
SELECT (SELECT max(id) FROM journal WHERE campaign_id = %(id)s) AS event,
       (SELECT at FROM campaign_activity WHERE campaign_id = %(id)s) AS touched;

-- name: scheduler_now
SELECT now() AS t;
