"""Tap trace: where each tap's time goes at a fixed rate, through the real ingest.

Usage: python -m bench.taptrace [--db postgresql|sqlite] [--rate 1000] [--seconds 8]
       [--readers 10] [--members 2000] [--out bench/out/]

One run starts its own Mosquitto and a fresh database like bench.tapstorm, then
`rollcall ingest` in a process of its own with timing wrapped around the
worker's batches and around every wait on PostgreSQL (psycopg's
`Connection.wait`), and publishes taps at the rate for the seconds given. Each
tap's tap-to-ack time is then split into:

- inbound: from when it was due to when the worker read it off the socket (the
  broker's hop, and mostly the batch in progress: the worker reads between
  batches);
- queue: from read to its batch's start;
- record: its batch's `record_taps` (the worker's CPU and its database waits);
- answer: acks and PUBACKs queued and written, events relayed;
- back: from the batch's end to the generator reading the ack (can be
  negative: the acks are written before the batch's bookkeeping ends).

It also prints each kind of database wait per batch (by the code that waited)
and writes taptrace-<db>.json. Unlike the tap storm's figures, these are for
finding where the time goes: the wrapping costs a few µs a batch.
"""

import argparse
import atexit
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from bench import services
from bench.load import Readers, plan_taps
from bench.stats import percentile

# How many callers name a database wait ("execute<driver_rows<_insert_taps…").
WAIT_SITE_DEPTH = 6
STAGES = ("inbound", "queue", "record", "answer", "back", "total")


# ---- inside the traced ingest process


def serve_traced_ingest(out: Path) -> int:
    """Run `rollcall ingest` with its batches and database waits timed; dump to `out` at exit."""
    import psycopg

    from server.cli import main as rollcall
    from server.ingest import worker

    batches: list[dict[str, float]] = []
    taps: dict[str, tuple[float, int]] = {}  # event id → (read at, batch index)
    waits: dict[str, list[float]] = {}
    current: dict[str, float] = {"recorded": 0.0, "db_wait": 0.0, "db_waits": 0.0}

    handle = worker.IngestWorker._handle
    record_taps = worker.IngestWorker._record_taps
    wait = psycopg.Connection.wait

    def timed_handle(self: worker.IngestWorker, batch: Sequence[Any]) -> Any:
        start, cpu = time.time(), time.thread_time()
        current.update(recorded=start, db_wait=0.0, db_waits=0.0)
        try:
            return handle(self, batch)
        finally:
            batches.append(
                {
                    "start": start,
                    "recorded": current["recorded"],
                    "end": time.time(),
                    "size": len(batch),
                    "cpu": time.thread_time() - cpu,
                    "db_wait": current["db_wait"],
                    "db_waits": current["db_waits"],
                }
            )

    def timed_record_taps(self: worker.IngestWorker, submissions: Sequence[Any]) -> Any:
        outcomes = record_taps(self, submissions)
        current["recorded"] = time.time()
        for submission in submissions:
            tap = getattr(submission, "tap", None)
            if tap is not None:
                taps[str(tap.event_id)] = (submission.received_at.timestamp(), len(batches))
        return outcomes

    def timed_wait(self: psycopg.Connection[Any], *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return wait(self, *args, **kwargs)
        finally:
            took = time.perf_counter() - start
            current["db_wait"] += took
            current["db_waits"] += 1
            frame: FrameType | None = sys._getframe(1)
            names: list[str] = []
            while frame is not None and len(names) < WAIT_SITE_DEPTH:
                names.append(frame.f_code.co_name)
                frame = frame.f_back
            waits.setdefault("<".join(names), []).append(took)

    def dump() -> None:
        out.write_text(json.dumps({"batches": batches, "taps": taps, "waits": waits}))

    worker.IngestWorker._handle = timed_handle  # type: ignore[method-assign]
    worker.IngestWorker._record_taps = timed_record_taps  # type: ignore[method-assign]
    psycopg.Connection.wait = timed_wait  # type: ignore[method-assign]
    atexit.register(dump)
    return rollcall(["ingest"])


# ---- the driver


@dataclass(frozen=True)
class Options:
    """One trace run."""

    db: str
    rate: float
    seconds: float
    readers: int
    members: int


def spread(values: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 and mean."""
    ordered = sorted(values)
    return {
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "mean": statistics.fmean(values),
    }


def run(options: Options, workdir: Path) -> dict[str, Any]:
    """Everything one trace does; returns its report."""
    dump = workdir / "trace.json"
    with (
        services.mosquitto(workdir) as (broker, _),
        services.database(options.db, workdir) as database_url,
    ):
        services.upgrade(database_url, workdir)
        fleet = services.seed(database_url, options.members, options.readers)
        sample = plan_taps(fleet.reader_ids, fleet.uids, 0, 1)[0].payload
        pace = services.machine_pace(database_url, options.db, sample)
        ingest = services.Ingest(
            database_url,
            f"mqtt://{broker.host}:{broker.port}",
            workdir,
            command=[sys.executable, "-m", "bench.taptrace", "--serve-traced-ingest", str(dump)],
        )
        try:
            ingest.wait_ready()
            readers = Readers(broker.host, broker.port, fleet.reader_ids)
            try:
                readers.run(plan_taps(fleet.reader_ids, fleet.uids, 0, 500), 500.0)
                count = int(options.rate * options.seconds)
                planned = plan_taps(fleet.reader_ids, fleet.uids, 500, count)
                # perf_counter (the generator's clock) to the epoch (the worker's).
                offset = time.time() - time.perf_counter()
                result = readers.run(planned, options.rate)
            finally:
                readers.close()
        finally:
            ingest.stop()  # SIGTERM: the traced process writes `dump` as it exits
    traced = json.loads(dump.read_text())
    batches, taps = traced["batches"], traced["taps"]
    rows: dict[str, list[float]] = {stage: [] for stage in STAGES}
    sizes: list[float] = []
    for tap, due, acked in zip(planned, result.due, result.acked_at, strict=True):
        if tap.event_id not in taps or math.isnan(acked):
            continue
        read_at, index = taps[tap.event_id]
        batch = batches[index]
        stages = {
            "inbound": read_at - (due + offset),
            "queue": batch["start"] - read_at,
            "record": batch["recorded"] - batch["start"],
            "answer": batch["end"] - batch["recorded"],
            "back": acked + offset - batch["end"],
            "total": acked - due,
        }
        for stage, seconds in stages.items():
            rows[stage].append(seconds * 1000)
        sizes.append(batch["size"])
    tap_batches = [b for b in batches if b["size"] > 0]
    return {
        "db": options.db,
        "machine_pace": pace,
        "rate": options.rate,
        "seconds": options.seconds,
        "readers": options.readers,
        "members": options.members,
        "taps_traced": len(sizes),
        "batches": len(batches),
        "stages_ms": {stage: spread(values) for stage, values in rows.items() if values},
        "batch_size_seen_by_a_tap": spread(sizes),
        "per_batch": {
            "wall_ms": spread([(b["end"] - b["start"]) * 1000 for b in tap_batches]),
            "cpu_ms": spread([b["cpu"] * 1000 for b in tap_batches]),
            "db_wait_ms": spread([b["db_wait"] * 1000 for b in tap_batches]),
            "db_waits": spread([b["db_waits"] for b in tap_batches]),
        },
        "db_waits_us": {
            site: {"count": len(values), **spread([v * 1e6 for v in values])}
            for site, values in sorted(traced["waits"].items(), key=lambda kv: -sum(kv[1]))
        },
    }


def show(report: dict[str, Any]) -> None:
    """Print the report."""
    print(
        f"taptrace: {report['db']}, {report['rate']:.0f} taps/s for {report['seconds']:.0f} s, "
        f"{report['taps_traced']} taps in {report['batches']} batches"
    )
    for stage, s in report["stages_ms"].items():
        print(
            f"  {stage:8} p50 {s['p50']:7.2f}  p90 {s['p90']:7.2f}  p99 {s['p99']:7.2f}  "
            f"mean {s['mean']:7.2f} ms"
        )
    b = report["per_batch"]
    print(
        f"  per batch (p50): wall {b['wall_ms']['p50']:.2f} ms, CPU {b['cpu_ms']['p50']:.2f} ms, "
        f"database wait {b['db_wait_ms']['p50']:.2f} ms in {b['db_waits']['p50']:.0f} waits; "
        f"batch size seen by a tap p50 {report['batch_size_seen_by_a_tap']['p50']:.0f}"
    )
    print(f"  machine pace: {services.describe_pace(report['machine_pace'])}")
    print("  database waits, by the code that waited:")
    for site, s in list(report["db_waits_us"].items())[:12]:
        print(
            f"    {s['count']:6} × p50 {s['p50']:6.0f}  p90 {s['p90']:6.0f}  "
            f"p99 {s['p99']:7.0f} µs  {site[:100]}"
        )


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.taptrace", description=__doc__)
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered taps/s")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--readers", type=int, default=10)
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument("--serve-traced-ingest", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_traced_ingest is not None:
        return serve_traced_ingest(args.serve_traced_ingest)
    options = Options(args.db, args.rate, args.seconds, args.readers, args.members)
    with tempfile.TemporaryDirectory(prefix="taptrace-") as tmp:
        report = run(options, Path(tmp))
    show(report)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"taptrace-{args.db}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"taptrace: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
