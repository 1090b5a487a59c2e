-- The worker's durable job queue and the outbox of replies.
--
-- A job is claimed with FOR UPDATE SKIP LOCKED and gets a fresh lease_token;
-- every later update of that job names the token, so a worker whose lease
-- expired (and whose job another worker rescued) changes nothing. Jobs with
-- the same serial_key run one at a time, in id order: "sub:<account>" keeps
-- subscription calls of an account apart, "msg:<account>:<recipient>" keeps a
-- conversation's replies in order.

CREATE SEQUENCE jobs_lease_token;

CREATE TABLE jobs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('subscribe', 'unsubscribe', 'send')),
    -- No foreign keys to tenants or apps: an unsubscribe job outlives the
    -- account, app and tenant it undoes, and carries what it needs in
    -- payload. A running job whose account is deleted keeps its row (SET
    -- NULL), so the account's unsubscribe job still waits behind it.
    tenant_id         bigint,
    app_id            bigint NOT NULL,
    account_id        bigint REFERENCES accounts (id) ON DELETE SET NULL,
    message_id        bigint,
    serial_key        text COLLATE "C" NOT NULL,
    payload           jsonb NOT NULL DEFAULT '{}',
    state             text NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'dead')),
    attempts          integer NOT NULL DEFAULT 0,
    run_at            timestamptz NOT NULL DEFAULT now(),
    last_error        jsonb,
    lease_owner       text,
    lease_token       bigint,
    lease_expires_at  timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz
);
-- What the claim scans: queued jobs that are due, oldest first.
CREATE INDEX jobs_due ON jobs (run_at, id) WHERE state = 'queued';
-- "Is an earlier job of this key unfinished, or one running?" for every
-- candidate. Producers hold an advisory lock on the key until they commit,
-- so ids of one key are in commit order.
CREATE INDEX jobs_serial ON jobs (serial_key, id) WHERE state IN ('queued', 'running');
-- Rescue of expired leases.
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_account ON jobs (account_id, id) WHERE account_id IS NOT NULL;
CREATE INDEX jobs_message ON jobs (message_id) WHERE message_id IS NOT NULL;

-- Graph API rate limits pause calls: code 4 the app's, 17/32/613/800xx the
-- account's, until the time Meta's usage headers give. The queued jobs of a
-- paused account or app get run_at moved to the pause's end, and those of an
-- account whose token Meta rejected get 'infinity' until a new token comes,
-- so the claim does not walk past them.
ALTER TABLE accounts ADD COLUMN paused_until timestamptz;
ALTER TABLE apps ADD COLUMN paused_until timestamptz;

-- A reply to send through the Send API. request is the exact JSON body the
-- worker posts; its job (jobs.message_id) says where the send stands.
CREATE TABLE messages (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account_id       bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    recipient_id     text COLLATE "C" NOT NULL,
    request          jsonb NOT NULL,
    idempotency_key  text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    meta_message_id  text COLLATE "C",          -- Meta's message_id once sent
    sent_at          timestamptz,
    echo_event_id    bigint,                    -- the is_echo webhook of this reply
    created_at       timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE jobs ADD FOREIGN KEY (message_id) REFERENCES messages (id) ON DELETE CASCADE;
CREATE UNIQUE INDEX messages_idempotency ON messages (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_account ON messages (account_id, id DESC);
CREATE INDEX messages_tenant ON messages (tenant_id, id DESC);
CREATE INDEX messages_mid ON messages (meta_message_id) WHERE meta_message_id IS NOT NULL;
-- Sent replies still waiting for their echo, for the sweep that links an
-- echo whose webhook and Send API answer were committed at the same time.
CREATE INDEX messages_unechoed ON messages (sent_at)
    WHERE meta_message_id IS NOT NULL AND echo_event_id IS NULL;
