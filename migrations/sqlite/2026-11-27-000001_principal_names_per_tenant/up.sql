-- A principal's name is unique within its tenant, not across tenants: one tenant's names say
-- nothing about another's. SQLite cannot drop a column's UNIQUE, so both tables are rebuilt:
-- the child first (dropping the parent while a child refers to it would cascade-delete the
-- tokens), then the parent; renaming fixes the child's reference.
CREATE TABLE principals_new (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('USER', 'SERVICE_ACCOUNT')),
    role TEXT NOT NULL CHECK (role IN ('ADMIN', 'OPERATOR', 'VIEWER')),
    tenant TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (tenant, name)
);
INSERT INTO principals_new (id, name, kind, role, tenant, created_at)
    SELECT id, name, kind, role, tenant, created_at FROM principals;

CREATE TABLE api_tokens_new (
    id TEXT PRIMARY KEY NOT NULL,
    principal_id TEXT NOT NULL REFERENCES principals_new (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    revoked_at TIMESTAMP
);
INSERT INTO api_tokens_new (id, principal_id, name, token_sha256, created_at, expires_at, revoked_at)
    SELECT id, principal_id, name, token_sha256, created_at, expires_at, revoked_at FROM api_tokens;

DROP TABLE api_tokens;
DROP TABLE principals;
ALTER TABLE principals_new RENAME TO principals;
ALTER TABLE api_tokens_new RENAME TO api_tokens;
CREATE INDEX api_tokens_principal ON api_tokens (principal_id);
