-- Faster typed reads of text attributes for segments (issue 3). Migration 002's versions
-- checked their input with regular expressions, which cost several times the cast itself at
-- a million contacts; these check with translate() and a few comparisons. Same contract:
-- never raise, NULL for anything that is not a number / a calendar date.

CREATE OR REPLACE FUNCTION segment_number(v text) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN length(v) > 100 THEN NULL
    -- digits with at most one '.', optionally one leading sign, and at least one digit
    WHEN length(translate(btrim(v, E' \t\r\n'), '0123456789', '')) >= length(btrim(v, E' \t\r\n')) THEN NULL
    WHEN translate(btrim(v, E' \t\r\n'), '0123456789', '') IN ('', '.')
      OR (translate(btrim(v, E' \t\r\n'), '0123456789', '') IN ('-', '+', '-.', '+.')
          AND left(btrim(v, E' \t\r\n'), 1) IN ('-', '+'))
        THEN btrim(v, E' \t\r\n')::numeric
END;

-- YYYY-MM-DD at the start of the text (so ISO timestamps read as their day).
CREATE OR REPLACE FUNCTION segment_date(v text) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE  -- WHEN clauses run in order: the casts only see the checked shape
    WHEN translate(left(v, 10), '0123456789', '9999999999') <> '9999-99-99' OR left(v, 4) = '0000' THEN NULL
    WHEN substr(v, 6, 2)::int NOT BETWEEN 1 AND 12 OR substr(v, 9, 2)::int = 0 THEN NULL
    WHEN substr(v, 9, 2)::int > CASE
            WHEN substr(v, 6, 2)::int IN (4, 6, 9, 11) THEN 30
            WHEN substr(v, 6, 2)::int <> 2 THEN 31
            WHEN left(v, 4)::int % 4 = 0 AND (left(v, 4)::int % 100 <> 0 OR left(v, 4)::int % 400 = 0) THEN 29
            ELSE 28 END THEN NULL
    ELSE make_date(left(v, 4)::int, substr(v, 6, 2)::int, substr(v, 9, 2)::int)
END;
