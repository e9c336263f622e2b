-- name: heartbeat_beat
INSERT INTO worker_heartbeats (worker_id, host, pid) VALUES (%(worker_id)s, %(host)s, %(pid)s)
ON CONFLICT (worker_id) DO UPDATE SET seen_at = now();

-- name: heartbeat_forget
DELETE FROM worker_heartbeats WHERE worker_id = %(worker_id)s;

-- Heartbeats of workers gone for good (an hour silent) are of no more use.
-- name: heartbeat_prune
DELETE FROM worker_heartbeats WHERE seen_at < now() - interval '1 hour';

-- name: activity_touch
INSERT INTO campaign_activity (campaign_id) SELECT id FROM campaigns WHERE id = %(id)s
ON CONFLICT (campaign_id) DO UPDATE SET at = now();
