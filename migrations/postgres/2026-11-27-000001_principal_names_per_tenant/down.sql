ALTER TABLE principals DROP CONSTRAINT principals_tenant_name_key;
ALTER TABLE principals ADD CONSTRAINT principals_name_key UNIQUE (name);
