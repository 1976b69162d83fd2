"""Serve a FastAPI app with uvicorn on a free loopback port, for API tests."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from server.runtime import ServerRuntime


class ApiClient(httpx.Client):
    """An HTTP client of the served app, knowing its runtime."""

    runtime: ServerRuntime


@contextmanager
def served(app: FastAPI) -> Iterator[ApiClient]:
    """Run `app` in a thread until the block ends; yield a client of it."""
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        with ApiClient(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=10) as c:
            yield c
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()
