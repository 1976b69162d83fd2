"""Fixtures for the kiosk and live screen: a served app with its real runtime, SSE readers."""

import contextlib
import json
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from server.api.app import create_app
from server.db.engine import Database
from server.kiosk.devices import DeviceKind, DeviceRequest, create_device
from server.services.unit_of_work import UnitOfWork
from server.settings import load_settings

# The database (migrated) and probes (paho test clients) fixtures of the server tests.
from tests.integration.server.conftest import database, probes  # noqa: F401
from tests.support.served import ApiClient, served


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> FastAPI:
    """The whole app (API, console, kiosk) with its own runtime and embedded broker."""
    settings = load_settings(
        database_url=database_url,
        data_dir=tmp_path,
        cookie_secure=False,
        kiosk_name_mask="mask_middle",
        scheduler_enabled=False,
    )
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[ApiClient]:
    """A client of the app, served by uvicorn with its real lifespan."""
    with served(app) as http:
        http.runtime = app.state.runtime
        yield http


def make_device(db: Database, request: DeviceRequest) -> str:
    """Create a device token as an administrator would; return the token."""
    _, token = create_device(
        UnitOfWork(db.write_sessions), request, actor="test", now=datetime.now(UTC)
    )
    return token


def kiosk_for(db: Database, reader_id: str) -> str:
    """A kiosk token paired with a reader."""
    return make_device(db, DeviceRequest(DeviceKind.KIOSK, reader_id=reader_id))


class SseReader:
    """Reads a server-sent event stream in a thread; `next(name)` waits for the next such event."""

    def __init__(self, client: httpx.Client, path: str, cookies: dict[str, str]) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.status: int | None = None
        # Why the stream broke, if it broke before close().
        self.error: httpx.HTTPError | None = None
        self._opened = threading.Event()
        self._stop = threading.Event()
        self._response: httpx.Response | None = None
        self._client = httpx.Client(base_url=str(client.base_url), cookies=cookies, timeout=30)
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True)
        self._thread.start()
        assert self._opened.wait(10), "the stream did not open"

    def _run(self, path: str) -> None:
        try:
            with self._client.stream("GET", path) as response:
                self._response = response
                self.status = response.status_code
                self._opened.set()
                name, data = "message", ""
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    elif line == "" and data:
                        self.events.put((name, json.loads(data)))
                        name, data = "message", ""
        except httpx.HTTPError as exc:
            if not self._stop.is_set():  # not our own close(): keep it for next() to tell
                self.error = exc
        finally:
            self._opened.set()

    def next(self, name: str, timeout: float = 10.0) -> Any:
        """The data of the next event called `name` (others are skipped)."""
        while True:
            try:
                got, data = self.events.get(timeout=timeout)
            except queue.Empty:
                if self.error is not None:
                    raise AssertionError(f"the event stream broke: {self.error!r}") from None
                raise
            if got == name:
                return data

    def close(self) -> None:
        """Stop reading and close the connection."""
        self._stop.set()
        if self._response is not None:
            # Closing from another thread does not wake a blocked read; a shutdown does.
            stream = self._response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        self._client.close()


@pytest.fixture
def sse(client: ApiClient) -> Iterator[Callable[[str, dict[str, str]], SseReader]]:
    """Open SSE streams on the served app; all are closed after the test."""
    opened: list[SseReader] = []

    def open_(path: str, cookies: dict[str, str]) -> SseReader:
        reader = SseReader(client, path, cookies)
        opened.append(reader)
        return reader

    yield open_
    for reader in opened:
        reader.close()
