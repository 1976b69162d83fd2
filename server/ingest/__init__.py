"""The MQTT ingest worker: taps in, one transaction per batch, acks out after commit."""
