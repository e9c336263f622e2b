-- Contact imports: the upload, its progress, and the set-based merge of a staged file.

-- name: import_insert
INSERT INTO imports (filename, format, size, encoding, delimiter, has_header, mapping, status)
VALUES (%(filename)s, %(format)s, %(size)s, %(encoding)s, %(delimiter)s, %(has_header)s, %(mapping)s, %(status)s)
RETURNING id;

-- name: import_chunk_insert
INSERT INTO import_chunks (import_id, seq, data) VALUES (%(import_id)s, %(seq)s, %(data)s);

-- name: import_chunk
SELECT data FROM import_chunks WHERE import_id = %(import_id)s AND seq = %(seq)s;

-- name: import_get
SELECT * FROM imports WHERE id = %(id)s;

-- name: import_recent
SELECT id, filename, format, size, status, inserted, updated, skipped, rejected, duplicates, error,
       created_at, finished_at
  FROM imports ORDER BY id DESC LIMIT %(limit)s;

-- name: import_set_options
UPDATE imports SET encoding = %(encoding)s, delimiter = %(delimiter)s, has_header = %(has_header)s
 WHERE id = %(id)s AND status IN ('uploaded', 'failed');

-- name: import_queue
UPDATE imports SET mapping = %(mapping)s, encoding = %(encoding)s, delimiter = %(delimiter)s,
       has_header = %(has_header)s, status = 'queued', phase = 'queued', progress = 0, rows_read = 0,
       error = NULL, attempts = 0
 WHERE id = %(id)s AND status IN ('uploaded', 'failed')
RETURNING id;

-- The worker takes the import; a redelivered message for a finished one finds nothing.
-- name: import_claim
UPDATE imports SET status = 'running', phase = 'reading', progress = 0, rows_read = 0, error = NULL,
       attempts = attempts + 1, started_at = now()
 WHERE id = %(id)s AND status IN ('queued', 'running')
RETURNING *;

-- name: import_progress
UPDATE imports SET phase = %(phase)s, progress = %(progress)s, rows_read = %(rows_read)s
 WHERE id = %(id)s AND status = 'running';

-- name: import_fail
UPDATE imports SET status = 'failed', phase = 'failed', error = %(error)s, finished_at = now()
 WHERE id = %(id)s AND status <> 'done';

-- name: import_note_error
UPDATE imports SET error = %(error)s WHERE id = %(id)s;

-- name: import_finish
UPDATE imports SET status = 'done', phase = 'done', progress = 1, error = NULL, finished_at = now(),
       rows_read = %(rows_read)s, inserted = %(inserted)s, updated = %(updated)s, skipped = %(skipped)s,
       rejected = %(rejected)s, duplicates = %(duplicates)s
 WHERE id = %(id)s;

-- name: import_drop_file
DELETE FROM import_chunks WHERE import_id = %(id)s;

-- Uploads nobody imported within a day, and failed imports nobody retried, give their space back.
-- name: import_drop_stale_files
DELETE FROM import_chunks
 WHERE import_id IN (SELECT id FROM imports WHERE status IN ('uploaded', 'failed')
                       AND created_at < now() - interval '1 day');

-- name: import_lists_missing
SELECT x FROM unnest(%(lists)s::bigint[]) AS x WHERE NOT EXISTS (SELECT 1 FROM lists WHERE id = x);

-- name: import_rejects_page
SELECT line, reason, cells FROM import_rejects
 WHERE import_id = %(import_id)s AND line > %(after)s ORDER BY line LIMIT %(limit)s;

-- ---- the merge, in the import's one transaction ----------------------------------------------

-- One import per import id at a time, whatever the queue delivers twice (session lock on the
-- worker's side connection).
-- name: import_lock
SELECT pg_try_advisory_lock(727005, mod(%(id)s::bigint, 2147483647)::int) AS ok;

-- Temporary tables stay in the import backend's memory up to this size (the default is 8 MB);
-- set on the import's own connection before its first temporary table.
-- name: import_session
SET temp_buffers = '256MB';

-- Sorting a million rows for the merge in memory rather than in temporary files.
-- name: import_work_mem
SET LOCAL work_mem = '512MB';

-- Rows of the file as checked by app/services/import_rows.py, one chunk at a time (the
-- table is emptied after each); a refused row has a reason and its cells instead of an email.
-- `key` is what the contacts_email_lower index compares (migration 012), so in-file duplicates
-- are found exactly as the unique index would find them.
-- name: import_batch_create
CREATE TEMP TABLE import_batch (
    line       bigint NOT NULL,
    email      text,
    name       text,
    status     text,
    tags       text,
    attributes jsonb,
    reason     text,
    cells      jsonb,
    key        text COLLATE "C" GENERATED ALWAYS AS (lower(email)) STORED
) ON COMMIT DROP;

-- name: import_batch_copy
COPY import_batch (line, email, name, status, tags, attributes, reason, cells) FROM STDIN;

-- name: import_batch_clear
TRUNCATE import_batch;

-- The contacts this import made, and the valid rows that met a contact which existed by then
-- (a contact from before the import, or one an earlier row of the file made): they are
-- applied once the whole file is in, in file order.
-- name: import_new_create
CREATE TEMP TABLE import_new (id bigint NOT NULL) ON COMMIT DROP;

-- name: import_later_create
CREATE TEMP TABLE import_later (
    line       bigint NOT NULL,
    key        text COLLATE "C" NOT NULL,
    name       text,
    status     text,
    tags       text,
    attributes jsonb
) ON COMMIT DROP;

-- name: import_batch_rejects
INSERT INTO import_rejects (import_id, line, reason, cells)
SELECT %(import_id)s, line, reason, cells FROM import_batch WHERE reason IS NOT NULL;

-- One chunk of the file into the contacts: the first row of each address that is not a
-- contact yet makes one, in file order; every other valid row goes to import_later. Chunks
-- come in file order, so the row that makes a contact is the address's first in the file.
-- The "is it a contact?" test is a per-row probe of contacts_email_lower (a LIMIT 1 subquery,
-- so the planner cannot turn it into a hash join that lower-cases every contact's address per
-- chunk). The rows go in in address order (as the window sorted them), so that they land on
-- neighbouring pages of the index. A plain INSERT, not ON CONFLICT: an address someone adds meanwhile makes it fail,
-- and the actor's retry imports the file again with that contact counted as existing.
-- name: import_batch_merge
WITH ranked AS (
    SELECT line, key, email, name, status, tags, attributes,
           row_number() OVER (PARTITION BY key ORDER BY line) = 1 AS first
      FROM import_batch WHERE reason IS NULL
), rows AS MATERIALIZED (
    SELECT *, first AND (SELECT 1 FROM contacts c WHERE lower(c.email::text) COLLATE "C" = r.key LIMIT 1) IS NULL
              AS fresh
      FROM ranked r
), later AS (
    INSERT INTO import_later (line, key, name, status, tags, attributes)
    SELECT line, key, name, status, tags, attributes FROM rows WHERE NOT fresh
), ins AS (
    INSERT INTO contacts (email, name, status, attributes, tags)
    SELECT email, coalesce(name, ''), coalesce(status, 'subscribed'), attributes,
           coalesce(string_to_array(tags, E'\x1f'), '{}')
      FROM rows WHERE fresh
    RETURNING id
)
INSERT INTO import_new (id) SELECT id FROM ins;

-- name: import_later_analyze
ANALYZE import_later;

-- The addresses with rows still to apply, and their contact; `inserted` marks the ones this
-- import made (their first row is applied already). One index probe per address.
-- name: import_pending
CREATE TEMP TABLE import_pending ON COMMIT DROP AS
SELECT k.key, c.id, EXISTS (SELECT 1 FROM import_new n WHERE n.id = c.id) AS inserted
  FROM (SELECT DISTINCT key FROM import_later) k
 CROSS JOIN LATERAL (SELECT c.id FROM contacts c WHERE lower(c.email::text) COLLATE "C" = k.key LIMIT 1) c;

-- name: import_pending_counts
SELECT count(*) FILTER (WHERE NOT inserted) AS existing, count(*) AS addresses FROM import_pending;

-- Every remaining row, folded per address in file order, applied to its contact as if the rows
-- had been imported one after another: names and statuses from the last row that has one,
-- attributes merged (later wins) or replaced by the last row's, tags added or replaced.
-- Without %(resubscribe)s a contact that is unsubscribed or bounced, or that a row of the file
-- unsubscribes, never becomes subscribed again.
-- name: import_apply
WITH applied AS (
    SELECT p.id, s.line, s.name, s.status, coalesce(s.tags, '') AS tags, s.attributes
      FROM import_later s JOIN import_pending p ON p.key = s.key
), folded AS (
    SELECT id,
           (array_agg(name ORDER BY line DESC) FILTER (WHERE name <> ''))[1] AS name,
           jsonb_merge_agg(attributes ORDER BY line) AS attributes_merged,
           (array_agg(attributes ORDER BY line DESC))[1] AS attributes_last,
           tags_union_agg(string_to_array(tags, E'\x1f') ORDER BY line) AS tags_all,
           string_to_array((array_agg(tags ORDER BY line DESC))[1], E'\x1f') AS tags_last,
           (array_agg(status ORDER BY line DESC) FILTER (WHERE status IS NOT NULL))[1] AS status_last,
           (array_agg(status ORDER BY line DESC) FILTER (WHERE status <> 'subscribed'))[1] AS status_held
      FROM applied GROUP BY id
)
UPDATE contacts c SET
    name = coalesce(f.name, c.name),
    attributes = CASE WHEN %(overwrite)s THEN f.attributes_last ELSE c.attributes || f.attributes_merged END,
    tags = CASE WHEN %(overwrite)s AND %(tags_mapped)s THEN f.tags_last ELSE tags_union(c.tags, f.tags_all) END,
    status = CASE WHEN %(resubscribe)s THEN coalesce(f.status_last, 'subscribed')
                  WHEN c.status <> 'subscribed' OR f.status_held IS NOT NULL THEN coalesce(f.status_held, c.status)
                  ELSE coalesce(f.status_last, c.status) END,
    updated_at = now()
  FROM folded f
 WHERE c.id = f.id;

-- Every address of the file joins the chosen lists, whatever happened to its contact.
-- name: import_join_lists
INSERT INTO list_members (list_id, contact_id)
SELECT l.id, t.id
  FROM lists l, (SELECT id FROM import_new UNION ALL SELECT id FROM import_pending WHERE NOT inserted) t
 WHERE l.id = ANY(%(lists)s::bigint[])
ON CONFLICT DO NOTHING;

-- ---- a large import into an empty contacts table builds the secondary indexes once ---------
-- Maintaining the GIN indexes (tags, attributes) and created_at row by row costs more than
-- building them over the finished table (1M rows: ~2.5 s of inserts against ~1.7 s of build).
-- Only when contacts is empty, since the import then holds the table exclusively until it
-- commits (readers wait); NOWAIT, so it never queues behind a reader. All inside the import's
-- transaction: a failed import rolls the indexes back with everything else.
-- name: import_contacts_empty
SELECT NOT EXISTS (SELECT 1 FROM contacts) AS empty;

-- name: import_contacts_lock
LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE NOWAIT;

-- The indexes no uniqueness rests on, as their definitions (rebuilt from these, so a later
-- migration's change to one is kept).
-- name: import_deferrable_indexes
SELECT n.nspname AS schema, c.relname AS name, pg_get_indexdef(i.indexrelid) AS definition
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE i.indrelid = 'contacts'::regclass AND NOT i.indisunique AND NOT i.indisprimary
 ORDER BY c.relname;

-- name: import_index_build_memory
SET LOCAL maintenance_work_mem = '256MB';
