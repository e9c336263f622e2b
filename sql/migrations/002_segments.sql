-- Segments and merge data as versioned stored procedures (issue 3).
--
-- A segment version is a function segments.segment_<slug>_v<N>() RETURNS TABLE (contact_id
-- bigint); a merge version is segments.merge_<slug>_v<N>(ids bigint[]) RETURNS TABLE
-- (contact_id bigint, data jsonb). The rule builder writes them and DBAs write them in psql;
-- the tables below record each version's source so an in-place edit shows up as drift.

CREATE SCHEMA segments;

-- The role every procedure is evaluated as: it may read, never write. Roles belong to the
-- cluster, so the databases of parallel test runs share it: create it once, quietly.
DO $$
BEGIN
    CREATE ROLE mailer_segment_reader NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;

-- The app's role must be able to SET ROLE to the reader (a superuser already can).
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'mailer_segment_reader', 'MEMBER') THEN
        EXECUTE format('GRANT mailer_segment_reader TO %I', current_user);
    END IF;
EXCEPTION WHEN unique_violation THEN
    NULL;
END $$;

GRANT USAGE ON SCHEMA public, segments TO mailer_segment_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO mailer_segment_reader;
-- Tables created later (below, and by later migrations run as the same role) too.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO mailer_segment_reader;
-- Merge data ends up in emails: the manager's password hash must never be one query away.
REVOKE ALL ON manager FROM mailer_segment_reader;

-- Temporary tables are the one thing a role without privileges could still create.
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO %I', current_database(), current_user);
END $$;

-- Typed reads of text attributes that never raise: CSV imports store every attribute as a
-- string, and one malformed value must not make a whole segment fail.
CREATE FUNCTION segment_number(v text) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN v ~ '^\s*[-+]?([0-9]{1,30}(\.[0-9]{0,30})?|\.[0-9]{1,30})\s*$' THEN btrim(v)::numeric END;

CREATE FUNCTION segment_date(v text) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN v !~ '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])' OR left(v, 4) = '0000' THEN NULL
    WHEN substr(v, 9, 2)::int > CASE
            WHEN substr(v, 6, 2)::int IN (4, 6, 9, 11) THEN 30
            WHEN substr(v, 6, 2)::int <> 2 THEN 31
            WHEN left(v, 4)::int % 4 = 0 AND (left(v, 4)::int % 100 <> 0 OR left(v, 4)::int % 400 = 0) THEN 29
            ELSE 28 END THEN NULL
    ELSE make_date(left(v, 4)::int, substr(v, 6, 2)::int, substr(v, 9, 2)::int)
END;

CREATE FUNCTION segment_bool(v text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN lower(btrim(v)) IN ('true', 't', 'yes', 'y', 'on', '1') THEN true
    WHEN lower(btrim(v)) IN ('false', 'f', 'no', 'n', 'off', '0') THEN false
END;

-- A function's source as the drift check sees it: pg_get_functiondef under a fixed
-- search_path, so the text (and its checksum) is the same whichever session asks.
CREATE FUNCTION procedure_source(fn regprocedure) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog
RETURN pg_get_functiondef(fn);

CREATE FUNCTION procedure_checksum(fn regprocedure) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog
RETURN encode(sha256(convert_to(public.procedure_source(fn), 'UTF8')), 'hex');

-- Why a function does not follow the naming and signature contract of its kind ('segment'
-- or 'merge'), or NULL when it does. The evaluation wrappers and the app both ask this.
CREATE FUNCTION procedure_contract_problem(fn regprocedure, kind text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
SELECT CASE
    WHEN n.nspname <> 'segments' THEN 'is not in the segments schema'
    WHEN p.proname !~ ('^' || kind || '_[a-z][a-z0-9_]*_v[1-9][0-9]*$') OR length(p.proname) > 63
        THEN format('is not named %s_<slug>_v<N> (slug: lower-case letters, digits, _)', kind)
    WHEN p.prokind <> 'f' THEN 'is not a plain function'
    WHEN kind = 'segment' AND (p.pronargs <> 0 OR NOT p.proretset
                               OR pg_get_function_result(p.oid) <> 'TABLE(contact_id bigint)')
        THEN format('has the signature (%s) RETURNS %s; a segment must be %I() RETURNS TABLE (contact_id bigint)',
                    pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), p.proname)
    WHEN kind = 'merge' AND (p.pronargs <> 1 OR p.proargtypes[0] <> 'bigint[]'::regtype OR NOT p.proretset
                             OR pg_get_function_result(p.oid) <> 'TABLE(contact_id bigint, data jsonb)')
        THEN format('has the signature (%s) RETURNS %s; a merge procedure must be %I(ids bigint[]) RETURNS TABLE (contact_id bigint, data jsonb)',
                    pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), p.proname)
    WHEN p.prosecdef THEN 'is SECURITY DEFINER: it would run with its owner''s rights, not the read-only role''s'
    WHEN EXISTS (SELECT 1 FROM unnest(p.proconfig) AS s
                  WHERE s ~* '^(role|session_authorization|transaction_read_only|default_transaction_read_only)=')
        THEN 'changes the role or the read-only mode in its SET clause'
    WHEN kind NOT IN ('segment', 'merge') THEN 'is of an unknown kind'
END
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE p.oid = fn
$$;

-- The only way the app runs a procedure. SECURITY DEFINER owned by the reader role: the
-- procedure runs with the reader's rights, and inside a security-definer function not even
-- SET ROLE / RESET ROLE can get them back. So materialising into deliveries (which the app
-- must write) can call a segment in the same statement without the segment writing anything.
CREATE FUNCTION segment_eval(fn regprocedure) RETURNS TABLE (contact_id bigint)
LANGUAGE plpgsql STRICT SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    problem text := procedure_contract_problem(fn, 'segment');
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION '% %', fn, problem USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY EXECUTE format('SELECT r.contact_id FROM %s AS r', fn::oid::regproc::text || '()');
END $$;

CREATE FUNCTION merge_eval(fn regprocedure, ids bigint[]) RETURNS TABLE (contact_id bigint, data jsonb)
LANGUAGE plpgsql STRICT SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    problem text := procedure_contract_problem(fn, 'merge');
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION '% %', fn, problem USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY EXECUTE format('SELECT r.contact_id, r.data FROM %s($1) AS r', fn::oid::regproc::text) USING ids;
END $$;

ALTER FUNCTION segment_eval(regprocedure) OWNER TO mailer_segment_reader;
ALTER FUNCTION merge_eval(regprocedure, bigint[]) OWNER TO mailer_segment_reader;

-- A family of versions: one segment (or merge procedure) by its slug.
CREATE TABLE procedures (
    id         bigserial PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('segment', 'merge')),
    slug       text NOT NULL CHECK (slug ~ '^[a-z][a-z0-9_]*$' AND length(slug) <= 40),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, slug)
);

-- One immutable version: the function's source and checksum as validated. The function in
-- PostgreSQL may later be replaced in place; comparing checksums shows that drift.
CREATE TABLE procedure_versions (
    id           bigserial PRIMARY KEY,
    procedure_id bigint NOT NULL REFERENCES procedures (id),
    version      int NOT NULL CHECK (version >= 1),
    fn_name      text NOT NULL UNIQUE,
    author       text NOT NULL CHECK (author IN ('builder', 'dba')),
    origin       text NOT NULL DEFAULT '',
    rules        jsonb,
    source       text NOT NULL,
    checksum     text NOT NULL,
    matched      bigint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (procedure_id, version)
);

CREATE FUNCTION procedure_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'procedure versions are immutable: write a new version instead'
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER procedure_versions_immutable BEFORE UPDATE OR DELETE ON procedure_versions
    FOR EACH ROW EXECUTE FUNCTION procedure_versions_immutable();

-- Functions under the naming contract that failed validation, with the reason shown to the
-- manager. Re-validated only when their checksum changes (the DBA fixed them).
CREATE TABLE procedure_refusals (
    signature  text PRIMARY KEY,
    kind       text NOT NULL,
    checksum   text NOT NULL,
    reason     text NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now()
);

-- A campaign sends to a list or to one exact segment version, minus excluded lists and
-- segment versions, optionally with a merge procedure version for {{ data.* }}.
ALTER TABLE campaigns
    ADD COLUMN segment_version_id bigint REFERENCES procedure_versions (id),
    ADD COLUMN merge_version_id bigint REFERENCES procedure_versions (id),
    ADD COLUMN exclude_list_ids bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN exclude_segment_version_ids bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN segment_checksum text,
    ADD CONSTRAINT campaigns_one_target CHECK (list_id IS NULL OR segment_version_id IS NULL);

-- "Save matches as list": a static list filled from a segment, refreshable.
CREATE TABLE segment_lists (
    list_id      bigint PRIMARY KEY REFERENCES lists (id) ON DELETE CASCADE,
    procedure_id bigint NOT NULL REFERENCES procedures (id),
    version_id   bigint NOT NULL REFERENCES procedure_versions (id),
    refreshed_at timestamptz NOT NULL DEFAULT now()
);

-- The worked merge example: open positions, matched to contacts by their city attribute.
CREATE TABLE offers (
    id         bigserial PRIMARY KEY,
    title      text NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
    city       text NOT NULL CHECK (length(city) <= 200),
    url        text NOT NULL DEFAULT '' CHECK (length(url) <= 2000),
    open       boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX offers_open_city ON offers (lower(city)) WHERE open;

-- What makes segments fast at a million contacts: tag and attribute containment use GIN,
-- list membership has list_members_contact already.
CREATE INDEX contacts_tags ON contacts USING gin (tags);
CREATE INDEX contacts_attributes ON contacts USING gin (attributes jsonb_path_ops);
CREATE INDEX contacts_created_at ON contacts (created_at);
