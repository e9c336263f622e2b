-- name: journal_append
INSERT INTO journal (campaign_id, delivery_id, email, kind, source, detail, dedupe_key)
SELECT * FROM unnest(%(campaign_ids)s::bigint[], %(delivery_ids)s::bigint[], %(emails)s::text[],
                     %(kinds)s::text[], %(sources)s::text[], %(details)s::jsonb[], %(keys)s::text[])
ON CONFLICT (dedupe_key) DO NOTHING;

-- name: journal_recent
SELECT id, at, campaign_id, delivery_id, email, kind, source, detail FROM journal
 WHERE (%(campaign_id)s::bigint IS NULL OR campaign_id = %(campaign_id)s)
 ORDER BY id DESC LIMIT %(limit)s;
