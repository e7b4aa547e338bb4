-- A record whose request went away before its action finished is completed as ABANDONED.
ALTER TABLE audit_events DROP CONSTRAINT audit_events_outcome_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_outcome_check
    CHECK (outcome IN ('PENDING', 'SUCCESS', 'ERROR', 'DENIED', 'ABANDONED'));
