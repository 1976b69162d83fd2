"""Disk probe: how long a durable write takes on this machine, and when it stalls.

Usage: python -m bench.diskprobe [--dir DIR] [--seconds 60] [--interval 0.01]

Every tap's ack waits for its batch's COMMIT, and a COMMIT for the WAL's
`fdatasync`. On the 2-vCPU VM these figures were measured on, that call usually
takes a quarter of a millisecond but now and then stalls for tens or hundreds
(an idle minute: p50 0.25 ms, p99.9 14 ms, max 89 ms, 18 calls over 10 ms), and
every tap answered during a stall waits for it: at 1,000 taps/s a 30 ms stall
alone puts some thirty taps over a 10 ms ack.

The probe writes 4 KiB and calls `fdatasync` every `interval` seconds in a
process of its own, timing each call on the monotonic clock the tap generator
uses (`time.perf_counter`), so that a benchmark can tell, phase by phase, how
the disk behaved and which slow taps were answered across a stall
(`DiskProbe`, `summary`, `taps_across_stalls`). Its file belongs on the
database's file system: bench.tapstorm puts it in its work directory and
records whether that is the device of PostgreSQL's data directory.

Run alone, it prints the distribution over `seconds`: a check of the machine
before believing a latency figure.
"""

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from bench.stats import percentile

# A call slower than this is a stall: the ack latency target at 1,000 taps/s is 10 ms.
STALL_SECONDS = 0.010
BLOCK = b"\0" * 4096
FILE_BYTES = 1 << 20  # written round and round: the file never grows


@dataclass(frozen=True)
class Sample:
    """One durable write: when it began (perf_counter seconds) and how long it took."""

    at: float
    seconds: float

    @property
    def end(self) -> float:
        """When it returned."""
        return self.at + self.seconds


def probe(path: Path, interval: float, until: float = math.inf) -> list[Sample]:
    """Write and `fdatasync` `path` every `interval` s until `until` (perf_counter) or SIGTERM."""
    stopped = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopped
        stopped = True

    previous = signal.signal(signal.SIGTERM, stop)
    starts, took = array("d"), array("d")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        offset = 0
        due = time.perf_counter()
        while not stopped and due < until:
            os.pwrite(fd, BLOCK, offset)
            offset = (offset + len(BLOCK)) % FILE_BYTES
            began = time.perf_counter()
            os.fdatasync(fd)
            starts.append(began)
            took.append(time.perf_counter() - began)
            due = max(due + interval, time.perf_counter())  # no catching up after a stall
            time.sleep(max(0.0, due - time.perf_counter()))
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
        signal.signal(signal.SIGTERM, previous)
    return [Sample(a, s) for a, s in zip(starts, took, strict=True)]


def summary(
    samples: Sequence[Sample], start: float = -math.inf, end: float = math.inf
) -> dict[str, Any]:
    """The calls begun in [start, end]: count, p50/p99/max in ms, and the stalls among them."""
    inside = [s for s in samples if start <= s.at <= end]
    ordered = sorted(s.seconds * 1000 for s in inside)
    stalls = [s for s in inside if s.seconds > STALL_SECONDS]
    return {
        "fsyncs": len(ordered),
        "p50_ms": percentile(ordered, 50),
        "p99_ms": percentile(ordered, 99),
        "p999_ms": percentile(ordered, 99.9),
        "max_ms": ordered[-1] if ordered else math.nan,
        "stalls_over_10ms": len(stalls),
        "stalled_ms": sum(s.seconds for s in stalls) * 1000,
    }


def taps_across_stalls(
    samples: Sequence[Sample],
    due: Sequence[float],
    acked: Sequence[float],
    over_seconds: float = STALL_SECONDS,
) -> dict[str, int]:
    """Of the taps answered in more than `over_seconds`, how many were in flight during a stall.

    A tap is in flight from when it was due to when its ack came; a stall is a
    probe call slower than STALL_SECONDS. Unanswered taps (NaN) are not counted.
    """
    stalls = [(s.at, s.end) for s in samples if s.seconds > STALL_SECONDS]
    slow = across = 0
    for d, a in zip(due, acked, strict=True):
        if math.isnan(a) or a - d <= over_seconds:
            continue
        slow += 1
        # Stalls are few (tens a minute): a plain scan.
        if any(begin < a and finish > d for begin, finish in stalls):
            across += 1
    return {"slow_taps": slow, "slow_taps_across_a_stall": across}


class DiskProbe:
    """`python -m bench.diskprobe --serve` in a process of its own while a benchmark runs."""

    def __init__(self, directory: Path, interval: float = 0.01) -> None:
        self.directory = directory
        self.out = directory / "diskprobe.json"
        self.interval = interval
        self.samples: list[Sample] = []
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Begin probing (returns at once)."""
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.diskprobe",
                "--serve",
                str(self.out),
                "--dir",
                str(self.directory),
                "--interval",
                str(self.interval),
            ],
        )

    def stop(self) -> list[Sample]:
        """Stop probing; the samples taken."""
        if self._proc is None:
            return self.samples
        self._proc.send_signal(signal.SIGTERM)
        code = self._proc.wait(timeout=30)
        self._proc = None
        if code != 0 or not self.out.exists():
            raise RuntimeError(f"bench.diskprobe exited with {code} and no samples")
        self.samples = [Sample(a, s) for a, s in json.loads(self.out.read_text())["samples"]]
        return self.samples


def main(argv: list[str] | None = None) -> int:
    """Probe for a while and print the distribution, or serve a benchmark (--serve OUT)."""
    parser = argparse.ArgumentParser(prog="python -m bench.diskprobe", description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(), help="where the probe file goes")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--serve", type=Path, metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    path = args.dir / f"diskprobe-{os.getpid()}.bin"
    if args.serve is not None:
        samples = probe(path, args.interval)
        args.serve.write_text(json.dumps({"samples": [[s.at, s.seconds] for s in samples]}))
        return 0
    samples = probe(path, args.interval, time.perf_counter() + args.seconds)
    s = summary(samples)
    print(
        f"diskprobe: {s['fsyncs']} × 4 KiB write + fdatasync in {args.dir.resolve()} over "
        f"{args.seconds:.0f} s: p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms, "
        f"p99.9 {s['p999_ms']:.2f} ms, max {s['max_ms']:.1f} ms; "
        f"{s['stalls_over_10ms']} over 10 ms ({s['stalled_ms']:.0f} ms in all)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
