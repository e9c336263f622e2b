-- Indexes for the pages the manager watches while a campaign sends (issue 6: the dashboard
-- and the campaign page must answer in 50 ms at 20 requests/s during a 100,000-email send).

-- The campaign page's deliveries table: a campaign's deliveries in id order, a page at a
-- time. Without it PostgreSQL sorted the campaign's deliveries, or walked the primary key
-- through every older campaign's, on every view.
CREATE INDEX deliveries_campaign_id ON deliveries (campaign_id, id);

-- Its "unknown" list on every view: mostly empty, which without an index means reading the
-- whole campaign to find nothing. Holds only unknown rows, so sending never touches it.
CREATE INDEX deliveries_unknown ON deliveries (campaign_id, id) WHERE status = 'unknown';
