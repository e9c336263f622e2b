-- Segments and merge procedures: versions, validation, evaluation, static lists.
-- Statements with {where} / {name} are psycopg.sql templates: the rule builder fills them
-- with SQL composed from whitelisted parts and quoted literals (app/services/rules.py).

-- The evaluation guard: read-only, a statement timeout, and the reader role, all LOCAL so
-- they end with the (sub)transaction.
-- name: procedure_read_only
SELECT set_config('transaction_read_only', 'on', true),
       set_config('statement_timeout', %(timeout_ms)s, true),
       set_config('role', 'mailer_segment_reader', true);

-- name: statement_timeout_local
SELECT set_config('statement_timeout', %(timeout_ms)s, true);

-- name: procedure_contract_problem
SELECT CASE WHEN to_regprocedure(%(signature)s) IS NULL THEN 'does not exist'
            ELSE procedure_contract_problem(to_regprocedure(%(signature)s), %(kind)s) END AS problem;

-- name: procedure_checksum_of
SELECT procedure_checksum(to_regprocedure(%(signature)s)) AS checksum;

-- Every function in the segments schema named like a procedure that is not a recorded
-- version (with the contract's arguments) yet.
-- name: procedure_candidates
SELECT quote_ident(n.nspname) || '.' || quote_ident(p.proname) || '(' || oidvectortypes(p.proargtypes) || ')' AS signature,
       p.proname AS fn_name,
       CASE WHEN p.proname ^@ 'segment_' THEN 'segment' ELSE 'merge' END AS kind,
       procedure_checksum(p.oid::regprocedure) AS checksum,
       procedure_contract_problem(p.oid::regprocedure,
                                  CASE WHEN p.proname ^@ 'segment_' THEN 'segment' ELSE 'merge' END) AS problem
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'segments' AND (p.proname ^@ 'segment_' OR p.proname ^@ 'merge_')
   AND NOT EXISTS (SELECT 1 FROM procedure_versions v
                    WHERE v.fn_name = p.proname
                      AND oidvectortypes(p.proargtypes) = CASE WHEN p.proname ^@ 'segment_' THEN '' ELSE 'bigint[]' END)
 ORDER BY p.proname, p.oid;

-- name: segment_probe
SELECT count(*) AS n, count(*) FILTER (WHERE c.id IS NULL) AS strangers,
       min(r.contact_id) FILTER (WHERE c.id IS NULL) AS example
  FROM segment_eval(%(fn)s::regprocedure) r LEFT JOIN contacts c ON c.id = r.contact_id;

-- A merge procedure is tried on the newest 100 contacts.
-- name: merge_probe
WITH sample AS (
    SELECT coalesce(array_agg(id), '{}') AS ids FROM (SELECT id FROM contacts ORDER BY id DESC LIMIT 100) s
)
SELECT count(*) AS n,
       count(*) FILTER (WHERE r.contact_id IS NULL OR r.contact_id <> ALL (sample.ids)) AS strangers,
       min(r.contact_id) FILTER (WHERE r.contact_id IS NULL OR r.contact_id <> ALL (sample.ids)) AS example,
       count(*) FILTER (WHERE r.data IS NOT NULL AND jsonb_typeof(r.data) <> 'object') AS not_objects
  FROM sample CROSS JOIN LATERAL merge_eval(%(fn)s::regprocedure, sample.ids) r;

-- name: merge_data
SELECT contact_id, data FROM merge_eval(%(fn)s::regprocedure, %(ids)s::bigint[]);

-- name: procedure_ensure
INSERT INTO procedures (kind, slug, name) VALUES (%(kind)s, %(slug)s, %(name)s)
ON CONFLICT (kind, slug) DO UPDATE SET kind = EXCLUDED.kind
RETURNING id;

-- name: procedure_insert
INSERT INTO procedures (kind, slug, name) VALUES ('segment', %(slug)s, %(name)s)
ON CONFLICT DO NOTHING RETURNING *;

-- name: procedure_get
SELECT * FROM procedures WHERE id = %(id)s;

-- name: procedure_lock
SELECT * FROM procedures WHERE id = %(id)s FOR UPDATE;

-- The source and checksum are read from PostgreSQL, so they are what drift is checked against.
-- name: procedure_version_insert
INSERT INTO procedure_versions (procedure_id, version, fn_name, author, origin, rules, source, checksum, matched)
SELECT %(procedure_id)s, %(version)s, %(fn_name)s, %(author)s, %(origin)s, %(rules)s,
       procedure_source(f), procedure_checksum(f), %(matched)s
  FROM to_regprocedure(%(signature)s) AS f
 WHERE f IS NOT NULL
ON CONFLICT DO NOTHING
RETURNING *;

-- name: procedure_versions_of
SELECT v.*, p.kind, p.slug, p.name,
       procedure_checksum(to_regprocedure('segments.' || v.fn_name
                          || CASE p.kind WHEN 'segment' THEN '()' ELSE '(bigint[])' END)) AS current_checksum
  FROM procedure_versions v JOIN procedures p ON p.id = v.procedure_id
 WHERE v.procedure_id = %(procedure_id)s
 ORDER BY v.version;

-- name: procedure_version_get
SELECT v.*, p.kind, p.slug, p.name,
       procedure_checksum(to_regprocedure('segments.' || v.fn_name
                          || CASE p.kind WHEN 'segment' THEN '()' ELSE '(bigint[])' END)) AS current_checksum
  FROM procedure_versions v JOIN procedures p ON p.id = v.procedure_id
 WHERE v.id = %(id)s;

-- name: procedure_list
SELECT p.*, v.id AS latest_id, v.version AS latest_version, v.author AS latest_author,
       v.created_at AS latest_at, v.matched AS latest_matched,
       (SELECT count(*) FROM procedure_versions x WHERE x.procedure_id = p.id) AS versions
  FROM procedures p
  LEFT JOIN LATERAL (SELECT * FROM procedure_versions v WHERE v.procedure_id = p.id
                      ORDER BY v.version DESC LIMIT 1) v ON true
 WHERE p.kind = %(kind)s
 ORDER BY lower(p.name), p.id;

-- name: procedure_version_choices
SELECT v.id, v.version, v.fn_name, p.name, p.slug
  FROM procedure_versions v JOIN procedures p ON p.id = v.procedure_id
 WHERE p.kind = %(kind)s
 ORDER BY lower(p.name), p.id, v.version DESC;

-- name: procedure_newer_versions
SELECT version, fn_name FROM procedure_versions
 WHERE procedure_id = %(procedure_id)s AND version > %(version)s ORDER BY version;

-- name: procedure_refusals_prune
DELETE FROM procedure_refusals WHERE to_regprocedure(signature) IS NULL;

-- name: procedure_refusal_get
SELECT * FROM procedure_refusals WHERE signature = %(signature)s;

-- name: procedure_refusal_upsert
INSERT INTO procedure_refusals (signature, kind, checksum, reason)
VALUES (%(signature)s, %(kind)s, coalesce(%(checksum)s, ''), %(reason)s)
ON CONFLICT (signature) DO UPDATE SET kind = EXCLUDED.kind, checksum = EXCLUDED.checksum,
       reason = EXCLUDED.reason, seen_at = now();

-- name: procedure_refusal_delete
DELETE FROM procedure_refusals WHERE signature = %(signature)s;

-- name: procedure_refusal_list
SELECT * FROM procedure_refusals ORDER BY signature;

-- name: segment_slug_taken
SELECT EXISTS (SELECT 1 FROM procedures WHERE kind = 'segment' AND slug = %(slug)s)
    OR EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = 'segments' AND p.proname ~ ('^segment_' || %(slug)s || '_v[1-9][0-9]*$')) AS taken;

-- The next version number: above every recorded one and every function a DBA may have
-- created under the slug without registering it yet.
-- name: segment_next_version
SELECT greatest(
         (SELECT max(v.version) FROM procedure_versions v WHERE v.procedure_id = %(procedure_id)s),
         (SELECT max(substring(p.proname from '_v([0-9]+)$')::bigint)
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'segments' AND p.proname ~ ('^segment_' || %(slug)s || '_v[1-9][0-9]*$')),
         0) + 1 AS version;

-- name: segment_function_create
CREATE FUNCTION segments.{name}() RETURNS TABLE (contact_id bigint)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT c.id FROM public.contacts c WHERE {where};
END;

-- name: segment_preview_estimate
EXPLAIN (FORMAT JSON) SELECT c.id FROM public.contacts c WHERE {where};

-- name: segment_preview_count
SELECT count(*) AS matched, count(*) FILTER (WHERE c.status = 'subscribed') AS subscribed
  FROM public.contacts c WHERE {where};

-- name: segment_preview_sample
SELECT c.id, c.email, c.name, c.status FROM public.contacts c WHERE {where} ORDER BY c.id LIMIT 20;

-- Attribute keys of the newest contacts, with how many values read as each type.
-- name: segment_attribute_keys
WITH sample AS (SELECT attributes FROM contacts ORDER BY id DESC LIMIT 5000)
SELECT e.key, count(*) AS n,
       count(*) FILTER (WHERE jsonb_typeof(e.value) = 'number'
                           OR segment_number(e.value #>> '{}') IS NOT NULL) AS numbers,
       count(*) FILTER (WHERE segment_date(e.value #>> '{}') IS NOT NULL) AS dates,
       count(*) FILTER (WHERE jsonb_typeof(e.value) = 'boolean'
                           OR segment_bool(e.value #>> '{}') IS NOT NULL) AS booleans
  FROM sample CROSS JOIN LATERAL jsonb_each(sample.attributes) e
 WHERE jsonb_typeof(e.value) <> 'null' AND e.value <> '""'::jsonb
 GROUP BY e.key
 ORDER BY count(*) DESC, e.key
 LIMIT 300;

-- name: segment_top_tags
SELECT t.tag, count(*) AS n
  FROM (SELECT tags FROM contacts ORDER BY id DESC LIMIT 5000) s CROSS JOIN LATERAL unnest(s.tags) AS t(tag)
 GROUP BY t.tag ORDER BY count(*) DESC, t.tag LIMIT 200;

-- name: segment_latest_rules
SELECT rules FROM procedure_versions
 WHERE procedure_id = %(procedure_id)s AND rules IS NOT NULL ORDER BY version DESC LIMIT 1;

-- name: campaign_segment_checksum
UPDATE campaigns SET segment_checksum = %(checksum)s WHERE id = %(id)s;

-- name: segment_list_insert
INSERT INTO segment_lists (list_id, procedure_id, version_id) VALUES (%(list_id)s, %(procedure_id)s, %(version_id)s);

-- name: segment_list_get
SELECT sl.*, l.name FROM segment_lists sl JOIN lists l ON l.id = sl.list_id WHERE sl.list_id = %(list_id)s FOR UPDATE OF sl;

-- name: segment_lists_of
SELECT sl.*, l.name, v.version, (SELECT count(*) FROM list_members m WHERE m.list_id = sl.list_id) AS members
  FROM segment_lists sl JOIN lists l ON l.id = sl.list_id JOIN procedure_versions v ON v.id = sl.version_id
 WHERE sl.procedure_id = %(procedure_id)s ORDER BY l.name;

-- name: segment_list_touch
UPDATE segment_lists SET version_id = %(version_id)s, refreshed_at = now() WHERE list_id = %(list_id)s;

-- A static list becomes exactly the segment's members: one statement, the segment run
-- through segment_eval with the reader role's rights.
-- name: segment_list_fill
WITH members AS MATERIALIZED (
    SELECT DISTINCT c.id AS contact_id
      FROM segment_eval(%(fn)s::regprocedure) r JOIN contacts c ON c.id = r.contact_id
), gone AS (
    DELETE FROM list_members m
     WHERE m.list_id = %(list_id)s AND NOT EXISTS (SELECT 1 FROM members x WHERE x.contact_id = m.contact_id)
    RETURNING 1
), added AS (
    INSERT INTO list_members (list_id, contact_id)
    SELECT %(list_id)s, contact_id FROM members
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM members) AS members, (SELECT count(*) FROM added) AS added,
       (SELECT count(*) FROM gone) AS removed;
