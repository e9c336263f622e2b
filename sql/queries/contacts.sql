-- One contact per lower-cased address (the contacts_email_lower index, migration 012).
-- name: contact_upsert
INSERT INTO contacts (email, name, attributes) VALUES (%(email)s, %(name)s, %(attributes)s)
ON CONFLICT ((lower(email::text)) COLLATE "C") DO UPDATE SET name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE contacts.name END,
       attributes = contacts.attributes || EXCLUDED.attributes, updated_at = now()
RETURNING id, (xmax = 0) AS inserted;

-- name: contact_by_email
SELECT * FROM contacts WHERE lower(email::text) COLLATE "C" = lower(%(email)s::text);

-- name: contact_get
SELECT * FROM contacts WHERE id = %(id)s;

-- The contacts page, newest first, by keyset: the next page is the ids below the last one shown,
-- so page 1,000 costs what page 1 does. Every query below takes the same filter parameters
-- (see contact_matches in 004_contacts_import.sql; `ids` narrows to a selection).
-- name: contact_page
SELECT c.id, c.email, c.name, c.status, c.tags, c.attributes, c.created_at
  FROM contacts c
 WHERE c.id < %(before)s
   AND contact_matches(c, %(pattern)s, %(tag)s, %(status)s, %(attrs)s::jsonb[])
   AND (%(list_id)s::bigint IS NULL
        OR EXISTS (SELECT 1 FROM list_members m WHERE m.list_id = %(list_id)s AND m.contact_id = c.id))
   AND (%(ids)s::bigint[] IS NULL OR c.id = ANY(%(ids)s::bigint[]))
 ORDER BY c.id DESC LIMIT %(limit)s;

-- The page before (newer contacts), nearest first; the view shows it the other way round.
-- name: contact_page_newer
SELECT c.id, c.email, c.name, c.status, c.tags, c.attributes, c.created_at
  FROM contacts c
 WHERE c.id > %(after)s
   AND contact_matches(c, %(pattern)s, %(tag)s, %(status)s, %(attrs)s::jsonb[])
   AND (%(list_id)s::bigint IS NULL
        OR EXISTS (SELECT 1 FROM list_members m WHERE m.list_id = %(list_id)s AND m.contact_id = c.id))
   AND (%(ids)s::bigint[] IS NULL OR c.id = ANY(%(ids)s::bigint[]))
 ORDER BY c.id LIMIT %(limit)s;

-- How many match, counted only up to a cap so a million-row filter answers at once.
-- name: contact_count_capped
SELECT count(*) AS n FROM (
    SELECT 1 FROM contacts c
     WHERE contact_matches(c, %(pattern)s, %(tag)s, %(status)s, %(attrs)s::jsonb[])
   AND (%(list_id)s::bigint IS NULL
        OR EXISTS (SELECT 1 FROM list_members m WHERE m.list_id = %(list_id)s AND m.contact_id = c.id))
   AND (%(ids)s::bigint[] IS NULL OR c.id = ANY(%(ids)s::bigint[]))
     LIMIT %(cap)s) s;

-- name: contact_export_keys
SELECT DISTINCT k AS key
  FROM contacts c, jsonb_object_keys(c.attributes) AS k
 WHERE contact_matches(c, %(pattern)s, %(tag)s, %(status)s, %(attrs)s::jsonb[])
   AND (%(list_id)s::bigint IS NULL
        OR EXISTS (SELECT 1 FROM list_members m WHERE m.list_id = %(list_id)s AND m.contact_id = c.id))
   AND (%(ids)s::bigint[] IS NULL OR c.id = ANY(%(ids)s::bigint[]))
 ORDER BY 1 LIMIT 200;

-- name: contact_export
SELECT c.id, c.email, c.name, c.status, c.tags, c.attributes, c.created_at, c.updated_at
  FROM contacts c
 WHERE contact_matches(c, %(pattern)s, %(tag)s, %(status)s, %(attrs)s::jsonb[])
   AND (%(list_id)s::bigint IS NULL
        OR EXISTS (SELECT 1 FROM list_members m WHERE m.list_id = %(list_id)s AND m.contact_id = c.id))
   AND (%(ids)s::bigint[] IS NULL OR c.id = ANY(%(ids)s::bigint[]))
 ORDER BY c.id;

-- name: contact_bulk_add_list
INSERT INTO list_members (list_id, contact_id)
SELECT %(list_id_target)s, c.id
  FROM contacts c
 WHERE contact_matches(c, %(pattern)s, %(tag)s, %(status)s, %(attrs)s::jsonb[])
   AND (%(list_id)s::bigint IS NULL
        OR EXISTS (SELECT 1 FROM list_members m WHERE m.list_id = %(list_id)s AND m.contact_id = c.id))
   AND (%(ids)s::bigint[] IS NULL OR c.id = ANY(%(ids)s::bigint[]))
ON CONFLICT DO NOTHING;

-- name: contact_bulk_remove_list
DELETE FROM list_members t USING contacts c
 WHERE t.list_id = %(list_id_target)s AND t.contact_id = c.id
   AND contact_matches(c, %(pattern)s, %(tag)s, %(status)s, %(attrs)s::jsonb[])
   AND (%(list_id)s::bigint IS NULL
        OR EXISTS (SELECT 1 FROM list_members m WHERE m.list_id = %(list_id)s AND m.contact_id = c.id))
   AND (%(ids)s::bigint[] IS NULL OR c.id = ANY(%(ids)s::bigint[]));

-- name: contact_bulk_add_tag
UPDATE contacts c SET tags = tags_union(c.tags, ARRAY[%(tag_target)s]), updated_at = now()
 WHERE NOT c.tags @> ARRAY[%(tag_target)s]
   AND contact_matches(c, %(pattern)s, %(tag)s, %(status)s, %(attrs)s::jsonb[])
   AND (%(list_id)s::bigint IS NULL
        OR EXISTS (SELECT 1 FROM list_members m WHERE m.list_id = %(list_id)s AND m.contact_id = c.id))
   AND (%(ids)s::bigint[] IS NULL OR c.id = ANY(%(ids)s::bigint[]));

-- name: contact_bulk_remove_tag
UPDATE contacts c SET tags = array_remove(c.tags, %(tag_target)s), updated_at = now()
 WHERE c.tags @> ARRAY[%(tag_target)s]
   AND contact_matches(c, %(pattern)s, %(tag)s, %(status)s, %(attrs)s::jsonb[])
   AND (%(list_id)s::bigint IS NULL
        OR EXISTS (SELECT 1 FROM list_members m WHERE m.list_id = %(list_id)s AND m.contact_id = c.id))
   AND (%(ids)s::bigint[] IS NULL OR c.id = ANY(%(ids)s::bigint[]));

-- name: contact_bulk_delete
DELETE FROM contacts c
 WHERE contact_matches(c, %(pattern)s, %(tag)s, %(status)s, %(attrs)s::jsonb[])
   AND (%(list_id)s::bigint IS NULL
        OR EXISTS (SELECT 1 FROM list_members m WHERE m.list_id = %(list_id)s AND m.contact_id = c.id))
   AND (%(ids)s::bigint[] IS NULL OR c.id = ANY(%(ids)s::bigint[]));

-- name: contact_update
UPDATE contacts SET email = %(email)s, name = %(name)s, status = %(status)s, tags = %(tags)s,
       attributes = %(attributes)s, updated_at = now()
 WHERE id = %(id)s
RETURNING id;

-- name: contact_list_ids
SELECT list_id FROM list_members WHERE contact_id = %(id)s;

-- name: contact_set_lists
WITH gone AS (
    DELETE FROM list_members WHERE contact_id = %(id)s AND list_id <> ALL(%(lists)s::bigint[])
)
INSERT INTO list_members (list_id, contact_id)
SELECT l.id, %(id)s FROM lists l WHERE l.id = ANY(%(lists)s::bigint[])
ON CONFLICT DO NOTHING;

-- ---- one contact's data: export and erasure ------------------------------------------------

-- name: contact_lists_of
SELECT l.id, l.name, m.added_at FROM list_members m JOIN lists l ON l.id = m.list_id
 WHERE m.contact_id = %(id)s ORDER BY l.name;

-- name: contact_deliveries_of
SELECT d.id, d.campaign_id, c.name AS campaign, d.email, d.status, d.attempts, d.last_error, d.smtp_reply,
       d.message_id, d.queued_at, d.sent_at
  FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id
 WHERE d.contact_id = %(id)s ORDER BY d.id;

-- name: contact_journal_of
SELECT at, campaign_id, delivery_id, kind, source, detail FROM journal
 WHERE lower(email) = lower(%(email)s) ORDER BY id LIMIT 10000;

-- name: contact_suppression_of
SELECT email, reason, source, created_at FROM suppressions WHERE email = %(email)s::citext;

-- The address becomes a keyed one-way hash wherever it outlives the contact, so counts and the
-- journal stay whole while the person is gone. Run with mailer.erasure = 'on' (the journal
-- refuses rewrites otherwise).
-- name: contact_erasure_on
SET LOCAL mailer.erasure = 'on';

-- name: contact_erase_deliveries
UPDATE deliveries SET email = %(hash)s
 WHERE contact_id = %(id)s OR (contact_id IS NULL AND email = %(email)s::citext);

-- name: contact_erase_journal
UPDATE journal SET email = %(hash)s, detail = regexp_replace(detail::text, %(pattern)s, %(hash)s, 'gi')::jsonb
 WHERE lower(email) = lower(%(email)s) OR delivery_id = ANY(%(delivery_ids)s::bigint[]);

-- name: contact_erase_suppression
WITH old AS (
    DELETE FROM suppressions WHERE email = %(email)s::citext RETURNING reason, source, created_at
)
INSERT INTO suppressions (email, reason, source, created_at)
SELECT %(hash)s, reason, source, created_at FROM old
ON CONFLICT (email) DO NOTHING;

-- name: contact_erase_captured
DELETE FROM captured_messages
 WHERE rcpt_to && ARRAY[%(email)s::text, lower(%(email)s::text)];

-- name: contact_erase_rejects
DELETE FROM import_rejects WHERE strpos(lower(cells::text), lower(%(email)s)) > 0;

-- name: contact_delete
DELETE FROM contacts WHERE id = %(id)s RETURNING email;

-- name: list_by_name
SELECT id FROM lists WHERE name = %(name)s;

-- name: contact_unsubscribe
UPDATE contacts SET status = 'unsubscribed', updated_at = now()
 WHERE id = %(id)s AND status = 'subscribed' RETURNING email;

-- Sizes from the deltas the list_members triggers keep (migration 008), not a count per view.
-- name: list_all
SELECT l.id, l.name, l.description, l.created_at,
       coalesce((SELECT sum(n.delta) FROM list_member_counts n WHERE n.list_id = l.id), 0)::bigint AS members
  FROM lists l ORDER BY l.name;

-- name: list_get
SELECT * FROM lists WHERE id = %(id)s;

-- name: list_insert
INSERT INTO lists (name, description) VALUES (%(name)s, %(description)s)
ON CONFLICT (name) DO NOTHING RETURNING id;

-- name: list_add_members
INSERT INTO list_members (list_id, contact_id)
SELECT %(list_id)s, unnest(%(contact_ids)s::bigint[]) ON CONFLICT DO NOTHING;
