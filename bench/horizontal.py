"""Horizontal ingest: 1 against 2 `rollcall ingest` processes on one shared subscription.

Usage: python -m bench.horizontal [--db sqlite|postgresql] [--taps 20000] [--pairs 1]

Each run gets its own Mosquitto and fresh database (as bench.tapstorm), starts N
workers with ROLLCALL_INGEST_SHARED=true ($share/rollcall-ingest/…) and their own
client ids, warms up, then publishes as fast as a window of unanswered taps
allows. After the phase it checks that every tap was stored exactly once and
each new (member, session) pair credited once. Runs alternate 1, 2, 1, 2 … so a
change in the machine's load hits both; prints the gain and writes
horizontal-<db>.json. On a 2-core machine shared with the broker and the load
generator, a second worker can only help as far as cores are idle.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import services
from bench.load import Readers
from bench.tapstorm import Ledger, Rig, machine_info, run_phase


def run_once(
    kind: str, workers: int, *, members: int, readers: int, taps: int, workdir: Path
) -> dict[str, Any]:
    """One run with `workers` ingest processes; returns its saturation phase."""
    with (
        services.mosquitto(workdir) as (mosquitto, broker),
        services.database(kind, workdir) as database_url,
    ):
        services.upgrade(database_url, workdir)
        fleet = services.seed(database_url, members, readers)
        mqtt_url = f"mqtt://{mosquitto.host}:{mosquitto.port}"
        group = services.IngestGroup(database_url, mqtt_url, workdir, workers)
        clients: Readers | None = None
        try:
            group.wait_ready()
            clients = Readers(mosquitto.host, mosquitto.port, fleet.reader_ids)
            rig = Rig(clients, fleet, Ledger(readers, members), group, broker, database_url)
            run_phase(rig, "warmup", 500, 500.0)
            phase = run_phase(rig, f"saturation×{workers}", taps, None)
            phase["machine"] = machine_info(database_url, kind)
            phase["workers"] = workers
            # How the broker split the load: each worker's CPU time over the whole run.
            phase["cpu_seconds_per_worker"] = [m.cpu_seconds() for m in group.members]
            return phase
        finally:
            if clients is not None:
                clients.close()
            group.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the pairs, print the table and write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.horizontal", description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--taps", type=int, default=20_000)
    parser.add_argument("--members", type=int, default=2_000)
    parser.add_argument("--readers", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"horizontal: {args.db}, {args.taps} taps per run, {args.pairs} pair(s)", flush=True)
    runs: list[dict[str, Any]] = []
    for _ in range(args.pairs):
        for workers in (1, 2):
            with tempfile.TemporaryDirectory(prefix="horizontal-", dir=args.out) as tmp:
                runs.append(
                    run_once(
                        args.db,
                        workers,
                        members=args.members,
                        readers=args.readers,
                        taps=args.taps,
                        workdir=Path(tmp),
                    )
                )
    rate = {
        n: statistics.median(r["steady_taps_per_s"] for r in runs if r["workers"] == n)
        for n in (1, 2)
    }
    cpu = {
        n: statistics.median(r["ingest_cpu_us_per_tap"] for r in runs if r["workers"] == n)
        for n in (1, 2)
    }
    exactly_once = all(r["db_check"]["ok"] and not r["timed_out"] for r in runs)
    print(f"  {'workers':>7} {'taps/s':>8} {'ingest CPU µs/tap':>18} {'machine busy':>13}")
    for r in runs:
        print(
            f"  {r['workers']:>7} {r['steady_taps_per_s']:>8.0f} "
            f"{r['ingest_cpu_us_per_tap']:>18.0f} {r['machine_cpu_busy_fraction']:>13.0%}"
        )
    gain = rate[2] / rate[1]
    print(
        f"horizontal: 1 worker {rate[1]:.0f} taps/s, 2 workers {rate[2]:.0f} taps/s: "
        f"gain ×{gain:.2f}; exactly-once {'ok' if exactly_once else 'FAILED'}",
        flush=True,
    )
    report = {
        "db": args.db,
        "taps_per_run": args.taps,
        "members": args.members,
        "readers": args.readers,
        "median_taps_per_s": rate,
        "median_ingest_cpu_us_per_tap": cpu,
        "gain": gain,
        "exactly_once": exactly_once,
        "runs": runs,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = args.out / f"horizontal-{args.db}.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    print(f"horizontal: wrote {path}")
    return 0 if exactly_once else 1


if __name__ == "__main__":
    sys.exit(main())
