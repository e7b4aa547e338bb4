-- Fails while ABANDONED records exist: they cannot be told apart from others without
-- rewriting them, which would break the chain.
CREATE TABLE audit_events_new (
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
    dry_run BOOLEAN NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL CHECK (outcome IN ('PENDING', 'SUCCESS', 'ERROR', 'DENIED')),
    error_code TEXT,
    duration_ms BIGINT,
    arguments TEXT NOT NULL,
    prev_hash TEXT,
    hash TEXT
);
INSERT INTO audit_events_new (id, seq, started_at, request_id, principal_id, principal_name, tenant, impersonated, cluster_id, operation, field, verb, api_group, api_version, kind, namespace, name, dry_run, outcome, error_code, duration_ms, arguments, prev_hash, hash)
    SELECT id, seq, started_at, request_id, principal_id, principal_name, tenant, impersonated, cluster_id, operation, field, verb, api_group, api_version, kind, namespace, name, dry_run, outcome, error_code, duration_ms, arguments, prev_hash, hash FROM audit_events;
DROP TABLE audit_events;
ALTER TABLE audit_events_new RENAME TO audit_events;
CREATE INDEX audit_events_tenant_seq ON audit_events (tenant, seq);
CREATE INDEX audit_events_principal_seq ON audit_events (principal_id, seq);
