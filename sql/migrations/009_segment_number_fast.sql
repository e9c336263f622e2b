-- segment_number, fast path first (issue 3). Most numeric attributes are plain digits
-- ("42" from a CSV); checking those with one translate() before the general case brings a
-- number condition to about the cost of a bare ::numeric cast, measured with
-- `scripts/bench segments`. The segment's functions inline it, so they pick this up as is.
CREATE OR REPLACE FUNCTION segment_number(v text) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE  -- WHEN clauses run in order: the casts only see the checked shape
    WHEN translate(v, '0123456789', '') = '' THEN CASE WHEN length(v) BETWEEN 1 AND 100 THEN v::numeric END
    WHEN length(v) > 100 THEN NULL
    -- digits with at most one '.', optionally one leading sign, and at least one digit
    WHEN length(translate(btrim(v, E' \t\r\n'), '0123456789', '')) >= length(btrim(v, E' \t\r\n')) THEN NULL
    WHEN translate(btrim(v, E' \t\r\n'), '0123456789', '') IN ('', '.')
      OR (translate(btrim(v, E' \t\r\n'), '0123456789', '') IN ('-', '+', '-.', '+.')
          AND left(btrim(v, E' \t\r\n'), 1) IN ('-', '+'))
        THEN btrim(v, E' \t\r\n')::numeric
END;
