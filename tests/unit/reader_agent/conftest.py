"""Reader agent unit tests never see the developer's ROLLCALL_READER_* variables."""

import os

import pytest


@pytest.fixture(autouse=True)
def _no_reader_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ROLLCALL_READER_"):
            monkeypatch.delenv(name)
