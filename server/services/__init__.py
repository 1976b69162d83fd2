"""Use cases: what the ingest worker and the HTTP routes both call."""
