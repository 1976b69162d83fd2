"""STYLE.md import rules, checked on the source: domain does no I/O; no reader_agent."""

import ast
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[3] / "server"
DOMAIN_FORBIDDEN = (
    "fastapi",
    "sqlalchemy",
    "paho",
    "amqtt",
    "server.db",
    "server.api",
    "server.ingest",
)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def offenders(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(SERVER.parent)} imports {name}"
        for path in paths
        for name in sorted(imported_modules(path))
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


def test_there_is_source_to_check() -> None:
    assert (SERVER / "domain" / "attendance.py").is_file()


def test_domain_does_no_io() -> None:
    assert offenders(sorted((SERVER / "domain").rglob("*.py")), DOMAIN_FORBIDDEN) == []


@pytest.mark.parametrize("forbidden", ["reader_agent"])
def test_server_never_imports_the_reader_agent(forbidden: str) -> None:
    assert offenders(sorted(SERVER.rglob("*.py")), (forbidden,)) == []
