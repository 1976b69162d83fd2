"""CPU cost of the ingest path without MQTT: decode + `record_taps` per batch size.

The tap storm measures the whole system on a shared machine, where scheduling
noise is ±30 %. This measures only the in-process part (decode the payload,
record the batch in one transaction, encode the acks) in CPU time, so a change
to the statements or the parsing can be A/B-tested in seconds with little noise.
On a busy machine CPU time too is inflated by contention (caches, hyperthreads):
the minimum over rounds is the steadier figure, the median is printed beside it.

    .venv/bin/python -m bench.recordcost --db sqlite
    .venv/bin/python -m bench.recordcost --db postgresql --sizes 1,20,500
    .venv/bin/python -m bench.recordcost --db postgresql --sizes 500 --profile 30
"""

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import services
from bench.load import plan_taps
from protocol import encode
from server.db.engine import open_database
from server.ingest.inbound import tap_submission
from server.services.reference import UNCACHED, ReferenceCache
from server.services.taps import record_taps
from server.services.unit_of_work import HeldConnection


def measure(  # noqa: PLR0917 - a benchmark entry point: its options, in order
    kind: str,
    sizes: list[int],
    taps_per_size: int,
    rounds: int,
    profile: int = 0,
    cached: bool = True,
) -> None:
    """Print CPU µs per tap and per batch for each batch size (min and median of rounds)."""
    with tempfile.TemporaryDirectory(prefix="rollcall-recordcost-") as tmp:
        workdir = Path(tmp)
        with services.database(kind, workdir) as url:
            services.upgrade(url, workdir)
            members = taps_per_size * len(sizes) * rounds // 10 + 10
            fleet = services.seed(url, members=members, readers=10)
            # As the ingest worker does: no pre-ping, one connection kept between
            # batches, readers, sessions and rules kept between batches.
            database = open_database(url, pre_ping=False)
            held = HeldConnection(database.writer)
            reference = ReferenceCache() if cached else UNCACHED
            try:
                start = 0
                print(
                    f"recordcost: {kind}, {members} members, 10 readers, "
                    f"reference data {'kept between batches' if cached else 'read per batch'}"
                )
                for size in sizes:
                    per_round = []
                    for _ in range(rounds):
                        planned = plan_taps(fleet.reader_ids, fleet.uids, start, taps_per_size)
                        start += taps_per_size
                        topics_ = [fleet.reader_ids[p.reader] for p in planned]
                        profiler = cProfile.Profile() if profile else None
                        if profiler:
                            profiler.enable()
                        cpu0 = time.process_time()
                        wall0 = time.perf_counter()
                        for i in range(0, len(planned), size):
                            now = datetime.now(UTC)
                            batch = [
                                tap_submission(topics_[j], planned[j].payload, now)
                                for j in range(i, min(i + size, len(planned)))
                            ]
                            outcomes = record_taps(held, batch, reference=reference)
                            for outcome in outcomes:
                                ack = outcome.ack()
                                if ack is not None:
                                    encode(ack)
                        cpu = time.process_time() - cpu0
                        wall = time.perf_counter() - wall0
                        if profiler:
                            profiler.disable()
                            stats = pstats.Stats(profiler)
                            stats.sort_stats("cumulative").print_stats(profile)
                            stats.sort_stats("tottime").print_stats(profile)
                        per_round.append((cpu, wall))
                    cpu_min = min(c for c, _ in per_round) / taps_per_size * 1e6
                    cpu_us = statistics.median(c for c, _ in per_round) / taps_per_size * 1e6
                    wall_us = statistics.median(w for _, w in per_round) / taps_per_size * 1e6
                    print(
                        f"  batch {size:4d}: CPU min {cpu_min:6.0f} median {cpu_us:6.0f} µs/tap"
                        f"  {cpu_min * size / 1000:7.2f} ms/batch   wall {wall_us:7.0f} µs/tap"
                    )
            finally:
                held.close()
                database.dispose()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--sizes", default="1,10,50,500")
    parser.add_argument("--taps", type=int, default=1000, help="taps per size per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--uncached",
        action="store_true",
        help="read readers, sessions and rules per batch (no ReferenceCache)",
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="cProfile each round, print N lines"
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    measure(args.db, sizes, args.taps, args.rounds, args.profile, cached=not args.uncached)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
