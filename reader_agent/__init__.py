"""Rollcall reader agent: reads cards, keeps taps in a durable outbox, publishes them over MQTT."""

__version__ = "0.1.0"
