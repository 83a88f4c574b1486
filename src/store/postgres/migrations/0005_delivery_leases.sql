-- Schema 5: delivery leases.
--
-- Which replica delivers to which subscriber: one holder at a time, until expires_at (the
-- database's clock), spread across live replicas with the integrations' leases. Claims
-- stay the guarantee that a delivery is in flight on one replica at most and that order
-- per application holds; the lease only decides who claims, so that one subscriber's queue
-- is not split into small claims by every replica, and so that its `max_in_flight` and
-- `rate_limit` hold across the cluster.
CREATE TABLE delivery_leases (
    subscriber text COLLATE "C" PRIMARY KEY,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL
);
