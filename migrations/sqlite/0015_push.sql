-- Push endpoints and the durable wake-up queue (docs/PROTOCOL.md §18). Both cascade from
-- devices(account_id, device_number), so unlinking a device or deleting its account removes its
-- endpoints and its pending wake-up.
--
-- push_endpoints.target is the endpoint (Web Push URL and keys, or gateway app id and pushkey)
-- sealed at rest (server/src/sealing.rs) under the key kept outside the database; lookup is a
-- keyed hash of it, so registering the same endpoint again finds its row without the clear text.
CREATE TABLE push_endpoints (
    id            BLOB PRIMARY KEY NOT NULL,
    account_id    BLOB NOT NULL,
    device_number BIGINT NOT NULL,
    kind          SMALLINT NOT NULL,
    lookup        BLOB NOT NULL,
    target        BLOB NOT NULL,
    created_at    BIGINT NOT NULL,
    FOREIGN KEY (account_id, device_number)
        REFERENCES devices(account_id, device_number) ON DELETE CASCADE
);
CREATE UNIQUE INDEX push_endpoints_lookup ON push_endpoints(account_id, device_number, lookup);

-- One row per device that has (or had) a wake-up to send; its times are Unix milliseconds. pending = 1: a wake-up is owed, due
-- at due_at; claimed_until: a worker holds it until then (a crashed worker's claim expires).
-- rearm = 1: mail arrived while a wake-up was being sent, so another is owed after it.
-- last_sent_at and the hourly counter enforce the coalescing window and the per-device limit.
CREATE TABLE push_queue (
    account_id    BLOB NOT NULL,
    device_number BIGINT NOT NULL,
    pending       SMALLINT NOT NULL,
    due_at        BIGINT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    claimed_until BIGINT NOT NULL DEFAULT 0,
    last_sent_at  BIGINT NOT NULL DEFAULT 0,
    hour_start    BIGINT NOT NULL DEFAULT 0,
    hour_count    BIGINT NOT NULL DEFAULT 0,
    rearm         SMALLINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, device_number),
    FOREIGN KEY (account_id, device_number)
        REFERENCES devices(account_id, device_number) ON DELETE CASCADE
);
CREATE INDEX push_queue_due ON push_queue(pending, due_at);
