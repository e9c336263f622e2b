-- name: suppression_add_bounces
WITH s AS (
    INSERT INTO suppressions (email, reason, source)
    SELECT e, 'hard bounce at send time', 'smtp' FROM unnest(%(emails)s::citext[]) AS e
    ON CONFLICT (email) DO NOTHING
)
UPDATE contacts SET status = 'bounced', updated_at = now()
 WHERE lower(email::text) COLLATE "C" = ANY(ARRAY(SELECT lower(e) FROM unnest(%(emails)s::text[]) AS e))
   AND status = 'subscribed';
