-- A principal's name is unique within its tenant, not across tenants: one tenant's names say
-- nothing about another's.
ALTER TABLE principals DROP CONSTRAINT principals_name_key;
ALTER TABLE principals ADD CONSTRAINT principals_tenant_name_key UNIQUE (tenant, name);
