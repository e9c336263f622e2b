-- Deliveries change status twice per email: the claim (open -> sending) and the outcome.
-- Any index whose key or predicate names a column that an UPDATE changes forces a new entry
-- in every index of the table, the "non-HOT" update: with seven indexes that was most of
-- PostgreSQL's cost of a send (issue 6). Without status, claimed_at and the reply columns
-- in any index, both updates are HOT (heap-only: the new row version goes on the same page,
-- no index is touched), given room on the page, hence the fill factor.
--
-- What the dropped partial indexes answered now comes from elsewhere:
-- - "anything open or in flight?" (completion): the per-status counters (delivery_counts),
--   kept by the statement triggers in the same transaction as every status change;
-- - claims in flight (unknown after a worker died): delivery_claims, one row per dispatch
--   batch holding the ids it claimed, written with the claim and removed with the batch's
--   last outcomes;
-- - a campaign's unknown deliveries (campaign page): read only when the counters say there
--   are some; open pages for enqueue: the campaign's deliveries in id order, filtered.
-- The partial indexes also misled the planner: right after a materialise the statistics say
-- "nothing open", and it chose them over the primary key, reading every open delivery of
-- the campaign for each claim.
ALTER TABLE deliveries SET (fillfactor = 50);
DROP INDEX deliveries_unfinished;
DROP INDEX deliveries_sending;
DROP INDEX deliveries_unknown;

CREATE TABLE delivery_claims (
    claimed_by  text PRIMARY KEY,  -- "<worker id>/<batch token>", as in deliveries.claimed_by
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    ids         bigint[] NOT NULL
);
INSERT INTO delivery_claims (claimed_by, campaign_id, claimed_at, ids)
SELECT claimed_by, min(campaign_id), min(claimed_at), array_agg(id)
  FROM deliveries WHERE status = 'sending' AND claimed_by IS NOT NULL GROUP BY claimed_by;
