"""Server-sent events as the pages stream them: `event:`/`data:` frames and keep-alives."""

import json
from typing import Any, Final

# Sent first: how long EventSource waits before reconnecting, in milliseconds.
RETRY: Final = "retry: 2000\n\n"
# A comment line: keeps proxies from timing the stream out and finds dead clients.
KEEPALIVE: Final = ": keep-alive\n\n"
KEEPALIVE_SECONDS: Final = 15.0
HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def frame(event: str, data: Any) -> str:
    """One named event whose data is JSON (on one line, as SSE requires)."""
    return (
        f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"
    )
