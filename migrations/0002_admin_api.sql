-- The admin API: tenant API keys, Instagram accounts, app settings, and the
-- indexes the event queries need.

-- A tenant's API keys. Only the SHA-256 of a key is kept: keys are 256-bit
-- random, so a fast hash is as good as a slow one, and lookups stay one index
-- probe. prefix is what people see in listings to tell keys apart.
CREATE TABLE api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    prefix      text NOT NULL,
    key_hash    bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id);

ALTER TABLE apps
    ADD COLUMN name              text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    ADD COLUMN graph_api_version text NOT NULL DEFAULT 'v25.0'
               CHECK (graph_api_version ~ '^v[0-9]{1,2}\.[0-9]$'),
    ADD COLUMN verify_token_hint text NOT NULL DEFAULT '',
    ADD COLUMN updated_at        timestamptz NOT NULL DEFAULT now();

-- An Instagram professional account a tenant receives events for. Events are
-- routed to it by entry.id: the Instagram account id, or the Page id for
-- Messenger-Platform setups. The subscription columns are what Meta holds, as
-- last seen by the worker; subscribed_fields is what the tenant wants.
CREATE TABLE accounts (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id            bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    app_id               bigint NOT NULL REFERENCES apps (id),
    ig_id                text COLLATE "C" NOT NULL CHECK (ig_id ~ '^[0-9]{1,32}$'),
    page_id              text COLLATE "C" CHECK (page_id ~ '^[0-9]{1,32}$'),
    username             text CHECK (length(username) <= 200),
    login_type           text NOT NULL
                         CHECK (login_type IN ('instagram_login', 'facebook_login',
                                               'messenger_platform')),
    access_token_sealed  text NOT NULL,  -- AES-256-GCM, see lib/secretbox.h
    access_token_hint    text NOT NULL,
    subscribed_fields    text[] NOT NULL DEFAULT '{}',
    sub_state            text NOT NULL DEFAULT 'pending'
                         CHECK (sub_state IN ('pending', 'active', 'failed', 'token_invalid')),
    sub_fields           text[] NOT NULL DEFAULT '{}',
    sub_error            jsonb,
    sub_checked_at       timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX accounts_app_ig ON accounts (app_id, ig_id);
CREATE UNIQUE INDEX accounts_app_page ON accounts (app_id, page_id) WHERE page_id IS NOT NULL;
CREATE INDEX accounts_tenant ON accounts (tenant_id, id);

-- contains={...} filters: jsonb_path_ops answers @> and is a third of the
-- size of the default operator class.
CREATE INDEX events_payload ON events USING gin (payload jsonb_path_ops) WITH (gin_pending_list_limit = 64);
-- The operator's view across tenants, newest first.
CREATE INDEX events_received ON events (received_at DESC, id DESC);
-- Deliveries across apps for the operator, newest first.
CREATE INDEX deliveries_received ON deliveries (received_at DESC, id DESC);
