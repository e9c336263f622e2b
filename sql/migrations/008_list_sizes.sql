-- List sizes without counting members on every page that shows them (the dashboard, the
-- lists page, every list select): counting a 100,000-member list took ~40 ms of PostgreSQL
-- per dashboard view, which at 20 views/s during a send was most of the database's work
-- (issue 6, `scripts/bench send`). Kept like delivery_counts: append-only deltas written by
-- statement triggers, so concurrent imports never fight over one counter row, and a list's
-- size is the sum of a few rows.
CREATE TABLE list_member_counts (
    list_id bigint NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    delta   bigint NOT NULL
);
CREATE INDEX list_member_counts_list ON list_member_counts (list_id);

CREATE FUNCTION list_members_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO list_member_counts (list_id, delta)
    SELECT list_id, count(*) FROM new_rows GROUP BY 1;
    RETURN NULL;
END $$;
CREATE FUNCTION list_members_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO list_member_counts (list_id, delta)
    SELECT list_id, sum(d) FROM (
        SELECT list_id, -1 AS d FROM old_rows
        UNION ALL
        SELECT list_id, 1 FROM new_rows
    ) c GROUP BY 1 HAVING sum(d) <> 0;
    RETURN NULL;
END $$;
-- A list being deleted takes its deltas with it (cascade): no delta for it then.
CREATE FUNCTION list_members_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO list_member_counts (list_id, delta)
    SELECT o.list_id, -count(*) FROM old_rows o JOIN lists l ON l.id = o.list_id GROUP BY 1;
    RETURN NULL;
END $$;
CREATE FUNCTION list_members_count_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM list_member_counts;
    RETURN NULL;
END $$;
CREATE TRIGGER list_members_count_insert AFTER INSERT ON list_members
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION list_members_count_insert();
CREATE TRIGGER list_members_count_update AFTER UPDATE ON list_members
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION list_members_count_update();
CREATE TRIGGER list_members_count_delete AFTER DELETE ON list_members
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION list_members_count_delete();
CREATE TRIGGER list_members_count_truncate AFTER TRUNCATE ON list_members
    FOR EACH STATEMENT EXECUTE FUNCTION list_members_count_truncate();

INSERT INTO list_member_counts (list_id, delta) SELECT list_id, count(*) FROM list_members GROUP BY 1;
