"""Durable records in Redis: the quarantine ledger and the audit trail."""
