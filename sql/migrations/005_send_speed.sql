-- Indexes the send path needs at 100,000 and more deliveries per campaign (issue 6;
-- `scripts/bench send` measures them, README "Performance" has the figures).

-- "Is anything of this campaign still open or in flight?" (campaign_complete_if_done, run
-- after every dispatch batch and by the scheduler) had no index covering 'sending', so each
-- check walked the campaign's finished deliveries: quadratic in the campaign's size, and the
-- main PostgreSQL cost of a large send. One partial index serves it, and the enqueue pages too
-- (their status IN ('queued', 'retry') implies this predicate).
DROP INDEX deliveries_open;
CREATE INDEX deliveries_unfinished ON deliveries (campaign_id, id)
    WHERE status IN ('queued', 'retry', 'sending');

-- Still once per address per campaign, but compared as the bytes of the lower-cased address
-- instead of through citext, whose comparison lower-cases both sides at every step of the
-- B-tree descent. Same rule (citext equality is equality of lower()), and it made inserting
-- a delivery and every later status change of it (each touches this index) about 40% cheaper.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_campaign_id_email_key;
CREATE UNIQUE INDEX deliveries_campaign_email ON deliveries (campaign_id, (lower(email::text)) COLLATE "C");
