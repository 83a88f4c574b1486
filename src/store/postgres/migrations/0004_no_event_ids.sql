-- Schema 4: no `event_ids`.
--
-- `event_ids` held every event id ever written, and a page commit inserted each of its
-- events' ids there to learn which were new: a write per event (7.3 µs of PostgreSQL time
-- per event, measured) repeating what the unique indexes of `events.id` and
-- `held_events.id` already hold. Re-derived events are refused by their sequence (an
-- event at or below its application's stored snapshot's sequence; see ARCHITECTURE.md,
-- "Dedupe survives"); the check by id stays, as a read of `events`, `held_events` and
-- `dropped_events` (the held events an operator dropped, until retention lets them go).
DROP TABLE event_ids;

-- That read probes `dropped_events` by id (a few rows: it only holds dropped held events).
CREATE INDEX dropped_events_by_id ON dropped_events (id);
