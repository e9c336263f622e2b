-- Statements of `scripts/bench segments`, loaded with the app's own named-query loader.

-- The contacts indexes the migrations made, to drop before the bulk COPY and build again
-- after it (one build beats a million insertions into GIN indexes).
-- name: segbench_contact_indexes
SELECT c.relname AS indexname, pg_get_indexdef(i.indexrelid) AS ddl
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = 'public.contacts'::regclass
   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid);

-- name: segbench_copy
COPY contacts (email, name, status, attributes, tags, created_at, updated_at) FROM STDIN;

-- The segment as a DBA writes it by hand, with the same meaning: newsletter readers in Norway
-- or Sweden over 30, where an age that is not a number (CSV imports store text) does not match
-- instead of failing the query (segment_number, the typed read the README gives DBAs).
-- name: segbench_select
SELECT id FROM contacts
 WHERE tags @> ARRAY['newsletter']
   AND (attributes @> '{"country": "NO"}' OR attributes @> '{"country": "SE"}')
   AND segment_number(attributes ->> 'age') > 30;

-- The quick version a DBA might try first: the same ids on clean data, but one contact whose
-- age is not a number makes it fail for everyone. Timed for reference only.
-- name: segbench_select_naive
SELECT id FROM contacts
 WHERE tags @> ARRAY['newsletter']
   AND (attributes @> '{"country": "NO"}' OR attributes @> '{"country": "SE"}')
   AND (attributes ->> 'age')::int > 30;

-- name: segbench_eval
SELECT contact_id FROM segment_eval(%(fn)s::regprocedure);
