-- name: journal_append
INSERT INTO journal (campaign_id, delivery_id, email, kind, source, detail, dedupe_key)
SELECT * FROM unnest(%(campaign_ids)s::bigint[], %(delivery_ids)s::bigint[], %(emails)s::text[],
                     %(kinds)s::text[], %(sources)s::text[], %(details)s::jsonb[], %(keys)s::text[])
ON CONFLICT (dedupe_key) DO NOTHING;

-- name: journal_recent
SELECT id, at, campaign_id, delivery_id, email, kind, source, detail FROM journal
 WHERE (%(campaign_id)s::bigint IS NULL OR campaign_id = %(campaign_id)s)
 ORDER BY id DESC LIMIT %(limit)s;

-- The journal page and its CSV export: filters by campaign, kind (exact, which the kind
-- index serves, or a family such as "delivery.%%") and address; newest first, a page before
-- a given id.
-- name: journal_page
SELECT id, at, campaign_id, delivery_id, email, kind, source, detail FROM journal
 WHERE (%(campaign_id)s::bigint IS NULL OR campaign_id = %(campaign_id)s)
   AND (%(kind)s::text IS NULL OR kind = %(kind)s)
   AND (%(family)s::text IS NULL OR kind LIKE %(family)s)
   AND (%(email)s::text IS NULL OR lower(email) = lower(%(email)s))
   AND (%(before)s::bigint IS NULL OR id < %(before)s)
 ORDER BY id DESC LIMIT %(limit)s;

-- Distinct kinds by a skip scan over journal_kind, so the filter's list stays cheap.
-- name: journal_kinds
WITH RECURSIVE k AS (
    SELECT min(kind) AS kind FROM journal
    UNION ALL
    SELECT (SELECT min(kind) FROM journal WHERE kind > k.kind) FROM k WHERE k.kind IS NOT NULL
)
SELECT kind FROM k WHERE kind IS NOT NULL;
