-- When a worker last picked up a message of a campaign (prepare, dispatch, enqueue). The
-- purge-to-stop watch counts it as progress: a message in a worker's hands is work in flight
-- even before it has written any outcome, and the management API's queue figures, refreshed
-- every few seconds, may never show a message that lived only a moment.
CREATE TABLE campaign_activity (
    campaign_id bigint PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now()
);
