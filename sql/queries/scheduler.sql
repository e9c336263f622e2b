-- name: scheduler_due_campaigns
SELECT id FROM campaigns WHERE status = 'scheduled' AND scheduled_at <= now() ORDER BY scheduled_at;

-- name: scheduler_running_campaigns
SELECT id FROM campaigns WHERE status = 'running';

-- name: scheduler_mark_unknown
UPDATE deliveries SET status = 'unknown', updated_at = now()
 WHERE status = 'sending' AND claimed_at < now() - %(grace)s::interval
RETURNING id, campaign_id, email, attempts, claimed_at;
