-- name: contact_upsert
INSERT INTO contacts (email, name, attributes) VALUES (%(email)s, %(name)s, %(attributes)s)
ON CONFLICT (email) DO UPDATE SET name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE contacts.name END,
       attributes = contacts.attributes || EXCLUDED.attributes, updated_at = now()
RETURNING id, (xmax = 0) AS inserted;

-- name: contact_by_email
SELECT * FROM contacts WHERE email = %(email)s;

-- name: contact_get
SELECT * FROM contacts WHERE id = %(id)s;

-- name: contact_page
SELECT id, email, name, status, attributes, tags, created_at FROM contacts
 WHERE (%(search)s::text IS NULL OR email ILIKE '%%' || %(search)s || '%%' OR name ILIKE '%%' || %(search)s || '%%')
   AND (%(list_id)s::bigint IS NULL OR EXISTS (SELECT 1 FROM list_members m WHERE m.contact_id = contacts.id AND m.list_id = %(list_id)s))
   AND id > %(after)s
 ORDER BY id LIMIT %(limit)s;

-- name: contact_unsubscribe
UPDATE contacts SET status = 'unsubscribed', updated_at = now()
 WHERE id = %(id)s AND status = 'subscribed' RETURNING email;

-- name: list_all
SELECT l.id, l.name, l.description, l.created_at,
       (SELECT count(*) FROM list_members m WHERE m.list_id = l.id) AS members
  FROM lists l ORDER BY l.name;

-- name: list_get
SELECT * FROM lists WHERE id = %(id)s;

-- name: list_insert
INSERT INTO lists (name, description) VALUES (%(name)s, %(description)s)
ON CONFLICT (name) DO NOTHING RETURNING id;

-- name: list_add_members
INSERT INTO list_members (list_id, contact_id)
SELECT %(list_id)s, unnest(%(contact_ids)s::bigint[]) ON CONFLICT DO NOTHING;
