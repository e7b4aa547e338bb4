-- Fails while ABANDONED records exist (they cannot be rewritten without breaking the chain).
ALTER TABLE audit_events DROP CONSTRAINT audit_events_outcome_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_outcome_check
    CHECK (outcome IN ('PENDING', 'SUCCESS', 'ERROR', 'DENIED'));
