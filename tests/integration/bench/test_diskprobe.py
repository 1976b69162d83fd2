"""The disk probe as a benchmark runs it: a process of its own, real writes and fdatasync."""

import time
from pathlib import Path

import pytest

from bench.diskprobe import DiskProbe, main

pytestmark = pytest.mark.integration


def test_the_probe_times_durable_writes_on_the_generators_clock(tmp_path: Path) -> None:
    disk = DiskProbe(tmp_path, interval=0.01)
    before = time.perf_counter()
    disk.start()
    time.sleep(1.0)
    samples = disk.stop()
    after = time.perf_counter()
    # Python needs a moment to start; then about one call each 10 ms.
    assert len(samples) >= 20
    # Stamped with perf_counter: the same clock as the generator's due and ack times.
    assert all(before < s.at < after for s in samples)
    assert all(s.seconds > 0 for s in samples)
    assert [s.at for s in samples] == sorted(s.at for s in samples)
    # Its file is gone; only the samples it handed over are left.
    assert [p.name for p in tmp_path.iterdir()] == ["diskprobe.json"]


def test_stopping_a_probe_that_never_started_gives_no_samples(tmp_path: Path) -> None:
    assert DiskProbe(tmp_path).stop() == []


def test_run_alone_it_prints_the_distribution(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--dir", str(tmp_path), "--seconds", "0.3", "--interval", "0.01"]) == 0
    line = capsys.readouterr().out
    assert line.startswith("diskprobe: ")
    assert "fdatasync" in line
    assert "over 10 ms" in line
    assert list(tmp_path.iterdir()) == []
