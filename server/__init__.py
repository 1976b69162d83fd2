"""Rollcall server: MQTT ingest, attendance and points rules, REST API, over SQLAlchemy."""

__version__ = "0.1.0"
