-- Cluster configurations. Secret columns hold envelopes sealed by CredentialCipher
-- (XChaCha20-Poly1305, associated data = cluster id + column name); key_id names the
-- master key that sealed every envelope of the row.
CREATE TABLE clusters (
    id TEXT PRIMARY KEY NOT NULL,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('KUBECONFIG', 'DIRECT', 'IN_CLUSTER')),
    kubeconfig_path TEXT,
    kubeconfig_context TEXT,
    kubeconfig_sealed BYTEA,
    api_server_url TEXT,
    bearer_token_sealed BYTEA,
    ca_data_sealed BYTEA,
    ca_fingerprint_sha256 TEXT,
    client_certificate_sealed BYTEA,
    client_key_sealed BYTEA,
    tls_server_name TEXT,
    insecure_skip_tls_verify BOOLEAN NOT NULL DEFAULT FALSE,
    default_namespace TEXT,
    impersonate_caller BOOLEAN NOT NULL DEFAULT FALSE,
    labels TEXT NOT NULL DEFAULT '{}',
    key_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    UNIQUE (tenant, name)
);

-- API principals: users and service accounts. Role and tenant are enforced by the
-- authorization layer.
CREATE TABLE principals (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('USER', 'SERVICE_ACCOUNT')),
    role TEXT NOT NULL CHECK (role IN ('ADMIN', 'OPERATOR', 'VIEWER')),
    tenant TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- API tokens are stored as SHA-256 digests of high-entropy random tokens; the
-- token itself is shown once, at creation.
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    principal_id TEXT NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    revoked_at TIMESTAMP
);
CREATE INDEX api_tokens_principal ON api_tokens (principal_id);

-- One row per audited action. A row is written (PENDING, without seq or hash) before the
-- action runs, so an action whose record cannot be written is refused; it is completed
-- afterwards, when it joins the hash chain: seq is the next number and hash covers the row and
-- the previous row's hash, so an edited or deleted row breaks the chain.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY NOT NULL,
    seq BIGINT UNIQUE,
    started_at TIMESTAMP NOT NULL,
    request_id TEXT NOT NULL,
    principal_id TEXT,
    principal_name TEXT,
    tenant TEXT,
    impersonated TEXT,
    cluster_id TEXT,
    operation TEXT,
    field TEXT NOT NULL,
    verb TEXT,
    api_group TEXT,
    api_version TEXT,
    kind TEXT,
    namespace TEXT,
    name TEXT,
    dry_run BOOLEAN NOT NULL DEFAULT FALSE,
    outcome TEXT NOT NULL CHECK (outcome IN ('PENDING', 'SUCCESS', 'ERROR', 'DENIED')),
    error_code TEXT,
    duration_ms BIGINT,
    arguments TEXT NOT NULL,
    prev_hash TEXT,
    hash TEXT
);
CREATE INDEX audit_events_tenant_seq ON audit_events (tenant, seq);
CREATE INDEX audit_events_principal_seq ON audit_events (principal_id, seq);
