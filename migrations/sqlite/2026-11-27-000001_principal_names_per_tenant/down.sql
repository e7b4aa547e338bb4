CREATE TABLE principals_old (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('USER', 'SERVICE_ACCOUNT')),
    role TEXT NOT NULL CHECK (role IN ('ADMIN', 'OPERATOR', 'VIEWER')),
    tenant TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
INSERT INTO principals_old (id, name, kind, role, tenant, created_at)
    SELECT id, name, kind, role, tenant, created_at FROM principals;

CREATE TABLE api_tokens_old (
    id TEXT PRIMARY KEY NOT NULL,
    principal_id TEXT NOT NULL REFERENCES principals_old (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    revoked_at TIMESTAMP
);
INSERT INTO api_tokens_old (id, principal_id, name, token_sha256, created_at, expires_at, revoked_at)
    SELECT id, principal_id, name, token_sha256, created_at, expires_at, revoked_at FROM api_tokens;

DROP TABLE api_tokens;
DROP TABLE principals;
ALTER TABLE principals_old RENAME TO principals;
ALTER TABLE api_tokens_old RENAME TO api_tokens;
CREATE INDEX api_tokens_principal ON api_tokens (principal_id);
