"""Test support: real services (Mosquitto, PostgreSQL) started and stopped for tests."""


class ServiceUnavailable(RuntimeError):
    """A service the tests or benchmarks need is missing or would not start; says how to fix."""
