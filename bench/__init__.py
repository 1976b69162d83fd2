"""Benchmarks: tap storms against a real broker, the real ingest worker and a real database."""
