"""The audit log: an append-only hash chain of administrative actions."""
