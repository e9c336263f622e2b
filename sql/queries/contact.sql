-- name: suppression_add_bounces
WITH s AS (
    INSERT INTO suppressions (email, reason, source)
    SELECT e, 'hard bounce at send time', 'smtp' FROM unnest(%(emails)s::citext[]) AS e
    ON CONFLICT (email) DO NOTHING
)
UPDATE contacts SET status = 'bounced', updated_at = now()
 WHERE email = ANY(%(emails)s::citext[]) AND status = 'subscribed';
