"""Test support: real services (Mosquitto, PostgreSQL) started and stopped for tests."""
