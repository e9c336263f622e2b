-- Send to the first email in under a second, however large the campaign (issue 6).
-- Materialising 100,000 deliveries takes seconds (each row checks two foreign keys and
-- enters four indexes), and nothing could go out before it ended. Now one statement, one
-- snapshot, still freezes the whole recipient set at Send: the recipients with the lowest
-- contact ids (MATERIALISE_FIRST_PAGE of them) go straight into deliveries and the rest
-- into materialise_staging, an unlogged heap without indexes that takes a row in about a
-- microsecond. That commits and is enqueued at once; a second transaction then moves the
-- staged rest into deliveries.
-- While the rest is staged, materialising_after holds the last contact id of the first
-- page: the campaign cannot complete meanwhile, and if the process dies before the rest is
-- in, the scheduler moves it. Unlogged rows do not survive a PostgreSQL crash; then the
-- scheduler reads the rest again (contacts after materialising_after, from a fresh snapshot).
ALTER TABLE campaigns ADD COLUMN materialising_after bigint;

CREATE UNLOGGED TABLE materialise_staging (
    campaign_id bigint NOT NULL,
    contact_id  bigint NOT NULL,
    email       citext NOT NULL
);

-- The recipients of a campaign target, as campaign_materialise has always chosen them:
-- a list or a segment version (run through segment_eval, with the read-only reader role's
-- rights), less excluded lists and segments, unsubscribed, bounced and suppressed contacts.
-- A segment may return an id twice; the INSERT's ON CONFLICT keeps one.
CREATE FUNCTION campaign_recipients(p_list_id bigint, p_segment regprocedure,
                                    p_exclude_segments regprocedure[], p_exclude_list_ids bigint[])
RETURNS TABLE (contact_id bigint, email citext) LANGUAGE sql STABLE AS $$
    WITH excluded AS MATERIALIZED (
        SELECT e.contact_id FROM unnest(p_exclude_segments) AS f, LATERAL segment_eval(f) AS e
        UNION
        SELECT m.contact_id FROM list_members m WHERE m.list_id = ANY (p_exclude_list_ids)
    )
    SELECT c.id, c.email
      FROM (SELECT m.contact_id FROM list_members m WHERE m.list_id = p_list_id
            UNION ALL
            SELECT r.contact_id FROM segment_eval(p_segment) AS r) AS t
      JOIN contacts c ON c.id = t.contact_id
     WHERE c.status = 'subscribed'
       AND NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.email = c.email)
       AND NOT EXISTS (SELECT 1 FROM excluded x WHERE x.contact_id = c.id)
$$;
