-- Contacts at scale (issue 5): background imports with their uploaded file, progress and
-- rejected rows; the helpers the set-based merge and the contacts page share; and the index
-- that makes deleting or erasing a contact cheap.

-- One upload and what became of it. The file itself lives in import_chunks so an import
-- worker on any host can read it (nothing may assume one machine).
CREATE TABLE imports (
    id           bigserial PRIMARY KEY,
    filename     text NOT NULL CHECK (length(filename) BETWEEN 1 AND 255),
    format       text NOT NULL CHECK (format IN ('csv', 'xlsx')),
    size         bigint NOT NULL CHECK (size >= 0),
    -- How to read it: detected at upload, changeable on the mapping page.
    encoding     text,
    delimiter    text CHECK (length(delimiter) = 1),
    has_header   boolean NOT NULL DEFAULT true,
    -- What the manager chose: {"columns": [{"role": ..., "key": ..., "type": ...}], ...}.
    mapping      jsonb,
    status       text NOT NULL DEFAULT 'uploaded'
                 CHECK (status IN ('uploaded', 'queued', 'running', 'done', 'failed')),
    phase        text NOT NULL DEFAULT '',
    progress     real NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    rows_read    bigint NOT NULL DEFAULT 0,
    inserted     bigint NOT NULL DEFAULT 0,
    updated      bigint NOT NULL DEFAULT 0,
    skipped      bigint NOT NULL DEFAULT 0,
    rejected     bigint NOT NULL DEFAULT 0,
    duplicates   bigint NOT NULL DEFAULT 0,
    error        text,
    attempts     int NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);
CREATE INDEX imports_recent ON imports (id DESC);

-- The uploaded file in 1 MB pieces, streamed in and out; no compression (CSV compresses,
-- but the CPU is better spent parsing) and dropped once the import is done.
CREATE TABLE import_chunks (
    import_id bigint NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    seq       int NOT NULL,
    data      bytea NOT NULL,
    PRIMARY KEY (import_id, seq)
);
ALTER TABLE import_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

-- Every row an import refused, with its line in the file and why, downloadable as CSV.
CREATE TABLE import_rejects (
    import_id bigint NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    line      bigint NOT NULL,
    reason    text NOT NULL,
    cells     jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (import_id, line)
);

-- Deleting or erasing a contact sets deliveries.contact_id to NULL: without this index every
-- deleted contact is a full scan of the outbox.
CREATE INDEX deliveries_contact ON deliveries (contact_id);

-- Tags of a then b, each once, in first-seen order.
CREATE FUNCTION tags_union(a text[], b text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(t ORDER BY first), '{}')
      FROM (SELECT t, min(i) AS first FROM unnest(a || b) WITH ORDINALITY AS u(t, i) GROUP BY t) s
$$;
CREATE AGGREGATE tags_union_agg(text[]) (sfunc = tags_union, stype = text[], initcond = '{}');

-- Objects merged left to right (later keys win): the fold of one address's rows in a file.
CREATE AGGREGATE jsonb_merge_agg(jsonb) (sfunc = jsonb_concat, stype = jsonb, initcond = '{}');

-- The contacts page filter (search pattern, tag, status, attribute containment), written
-- once for the page, the count, the export and the bulk actions. Plain SQL so the planner
-- inlines it and sees the GIN-indexable tag and attribute tests.
CREATE FUNCTION contact_matches(c contacts, pattern text, wanted_tag text, wanted_status text,
                                attrs jsonb[]) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT (pattern IS NULL OR c.email::text ILIKE pattern OR c.name ILIKE pattern
            OR c.attributes::text ILIKE pattern)
       AND (wanted_tag IS NULL OR c.tags @> ARRAY[wanted_tag])
       AND (wanted_status IS NULL OR c.status = wanted_status)
       AND (attrs IS NULL OR c.attributes @> attrs[1] OR c.attributes @> attrs[2])
$$;
