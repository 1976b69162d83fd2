"""Kiosk latency: from a reader publishing a kiosk tap to the kiosk page in Chromium showing it.

Usage: python -m bench.kiosk_latency [--db sqlite|postgresql] [--taps 50] [--out bench/out/]

One run starts its own Mosquitto, a fresh database (migrated, seeded) and
`rollcall serve` as a separate process, pairs a kiosk with `rollcall devices
create`, opens the kiosk page in headless Debian Chromium, and then, one tap at
a time, publishes a kiosk-mode tap as a reader would (QoS 1, protocol v1) and
waits for the page to show that tap's event id. Both ends read the same wall
clock: the publisher just before `publish()`, the page (`Date.now()`, whole
milliseconds) as it puts the figures on screen (`data-shown-at`). The ack's
arrival at the publisher is recorded too, to split the time between the
ingest (tap → committed → ack) and the screen (event → figures → render).
Writes kiosk_latency-<db>.json to the output directory.
"""

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import services
from bench.load import make_client
from bench.stats import percentile
from protocol import CardId, CardTech, Tap, TapMode, encode, topics
from tests.support.browser import chromium
from tests.support.ports import free_port

BIN = Path(sys.executable).parent
READER = "bench-000"
MEMBERS = 50
PAUSE_SECONDS = 0.3  # between taps: one person at a time stands at a kiosk


def summary(values: list[float]) -> dict[str, float]:
    """p50/p95/max in ms."""
    ordered = sorted(values)
    return {
        "p50_ms": percentile(ordered, 50),
        "p95_ms": percentile(ordered, 95),
        "max_ms": ordered[-1] if ordered else math.nan,
        "n": len(ordered),
    }


class Server:
    """`rollcall serve` as a child process, with its HTTP address."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [str(BIN / "rollcall"), "serve"],
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.http = ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if found := re.match(r"rollcall: http at (\S+)", line):
                self.http = found.group(1)
                break
        if not self.http:
            raise RuntimeError(f"rollcall serve did not start; see {log}")

    def stop(self) -> None:
        """SIGTERM, then wait."""
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def pair_kiosk(env: dict[str, str], http: str) -> str:
    """The kiosk URL `rollcall devices create` prints."""
    result = subprocess.run(
        [
            *(str(BIN / "rollcall"), "devices", "create"),
            *("--kind", "kiosk", "--reader", READER, "--base-url", http),
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r"^url: (\S+)$", result.stdout, re.MULTILINE)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"rollcall devices create failed:\n{result.stdout}\n{result.stderr}")
    return found.group(1)


class AckClock:
    """Subscribes to the reader's acks and notes when each event id's ack arrived."""

    def __init__(self, host: str, port: int) -> None:
        self.at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = make_client(f"bench-kiosk-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._ready.set()
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe(topics.acks(READER), qos=1)
        if not self._ready.wait(10):
            raise RuntimeError("no SUBACK for the acks topic")

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        now = time.time()
        event_id = json.loads(message.payload)["event_id"]
        with self._lock:
            self.at[event_id] = now

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def measure(
    page: Any, host: str, port: int, uids: tuple[str, ...], taps: int
) -> list[dict[str, Any]]:
    """Publish `taps` kiosk taps one by one; return per tap the publish, ack and shown times."""
    acks = AckClock(host, port)
    boot = uuid.uuid4()
    rows: list[dict[str, Any]] = []
    try:
        for k in range(taps):
            tap = Tap(
                event_id=uuid.uuid4(),
                reader_id=READER,
                boot_id=boot,
                seq=k + 1,
                card=CardId(tech=CardTech.ISO14443A, uid=uids[k % len(uids)]),
                occurred_at=datetime.now(UTC),
                clock_synced=True,
                mode=TapMode.KIOSK,
            )
            payload = encode(tap)
            published = time.time()
            acks.client.publish(topics.taps(READER), payload, qos=1)
            page.wait_for_selector(f'#kiosk[data-event-id="{tap.event_id}"]', timeout=30_000)
            shown_ms = int(page.get_attribute("#kiosk", "data-shown-at"))
            time.sleep(PAUSE_SECONDS)
            acked = acks.at.get(str(tap.event_id))
            rows.append(
                {
                    "event_id": str(tap.event_id),
                    "tap_to_screen_ms": shown_ms - published * 1000,
                    "tap_to_ack_ms": (acked - published) * 1000 if acked else None,
                }
            )
    finally:
        acks.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--taps", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kiosk-latency-") as tmp:
        workdir = Path(tmp)
        with (
            services.mosquitto(workdir) as (broker, _),
            services.database(args.db, workdir) as database_url,
        ):
            services.upgrade(database_url, workdir)
            roster = services.seed(database_url, members=MEMBERS, readers=1)
            env = {
                "ROLLCALL_DATABASE_URL": database_url,
                "ROLLCALL_MQTT_URL": broker.url,
                "ROLLCALL_HTTP_PORT": str(free_port()),
                "ROLLCALL_DATA_DIR": str(workdir),
                "ROLLCALL_COOKIE_SECURE": "false",
                "ROLLCALL_SCHEDULER_ENABLED": "false",
            }
            server = Server(env, workdir / "server.log")
            try:
                url = pair_kiosk(env, server.http)
                with chromium() as browser:
                    page = browser.new_page()
                    page.goto(url)
                    page.wait_for_selector("#kiosk[data-stream=open]", timeout=30_000)
                    host, port = broker.url.removeprefix("mqtt://").rsplit(":", 1)
                    rows = measure(page, host, int(port), roster.uids, args.taps)
                    page.close()
            finally:
                server.stop()
    screen = [r["tap_to_screen_ms"] for r in rows]
    ack = [r["tap_to_ack_ms"] for r in rows if r["tap_to_ack_ms"] is not None]
    report = {
        "benchmark": "kiosk_latency",
        "db": args.db,
        "taps": args.taps,
        "tap_to_screen": summary(screen),
        "tap_to_ack": summary(ack),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": rows,
    }
    target = args.out / f"kiosk_latency-{args.db}.json"
    target.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    s, a = report["tap_to_screen"], report["tap_to_ack"]
    print(
        f"kiosk latency ({args.db}, {args.taps} taps): reader publish → kiosk page shows it "
        f"p50 {s['p50_ms']:.0f} ms, p95 {s['p95_ms']:.0f} ms, max {s['max_ms']:.0f} ms; "
        f"publish → ack p50 {a['p50_ms']:.0f} ms, p95 {a['p95_ms']:.0f} ms"
    )
    print(f"written {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
