-- Cluster configurations. Secret columns hold envelopes sealed by CredentialCipher
-- (XChaCha20-Poly1305, associated data = cluster id + column name); key_id names the
-- master key that sealed every envelope of the row.
CREATE TABLE clusters (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
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
    labels TEXT NOT NULL DEFAULT '{}',
    key_id TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
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
