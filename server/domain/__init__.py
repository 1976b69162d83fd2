"""Pure rules of attendance and points: no I/O, no FastAPI, SQLAlchemy or MQTT."""
