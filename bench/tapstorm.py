"""Tap storm: how fast and how promptly the real ingest worker turns taps into acks.

Usage: python -m bench.tapstorm [--db sqlite|postgresql] [--quick] [--out bench/out/]
       [--ingest-workers N] [--py-spy PHASE]

One run starts its own Mosquitto and a fresh database, migrates and seeds it,
measures raw broker passthrough (published with paho and with the load
generator's own lean client; the e2e ratio divides by the larger), then runs
`rollcall ingest` (or N of them on the shared subscription, --ingest-workers) as
separate processes while simulated readers publish taps: saturation throughput, then
tap-to-ack latency at fixed offered rates, an overload at 1.5 × saturation, and
the drain of a backlog queued by the broker while ingest was paused. After every
phase it checks in the database that each tap was recorded exactly once and
credited at most once. Throughout, bench.diskprobe times a durable write every
10 ms beside the database: each latency phase reports the disk's stalls and how
many of its slow taps were in flight across one.
Writes tapstorm-<db>.json and tapstorm-<db>.png to the output directory.
"""

import argparse
import json
import math
import os
import platform
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt
import psutil

from bench import diskprobe, services
from bench.load import (
    PhaseResult,
    Readers,
    expected_accepted,
    lean_passthrough,
    passthrough,
    plan_taps,
)
from bench.stats import percentile
from tests.support.mosquitto import MOSQUITTO
from tests.support.roster import Roster


@dataclass(frozen=True)
class Profile:
    """How big a run is."""

    members: int
    readers: int
    passthrough_messages: int
    saturation_taps: int
    rates: tuple[tuple[int, float], ...]  # (offered taps/s, seconds)
    overload_seconds: float  # at 1.5 × the saturation rate measured in the same run
    backlog_taps: int  # published while ingest is stopped, then drained
    warmup_taps: int = 500


QUICK = Profile(
    members=2000,
    readers=10,
    passthrough_messages=10_000,
    saturation_taps=10_000,
    rates=((100, 4.0), (1000, 4.0), (5000, 3.0)),
    overload_seconds=8.0,
    backlog_taps=20_000,
)
FULL = Profile(
    members=5000,
    readers=20,
    passthrough_messages=40_000,
    saturation_taps=40_000,
    rates=((100, 20.0), (1000, 20.0), (5000, 15.0)),
    overload_seconds=15.0,
    backlog_taps=100_000,
)


def latency_summary(result: PhaseResult) -> dict[str, float]:
    """p50/p90/p99/p99.9/max of due-to-ack latency in ms."""
    values = sorted(result.latencies_ms())
    return {
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "p999_ms": percentile(values, 99.9),
        "max_ms": values[-1] if values else math.nan,
    }


def throughput(result: PhaseResult) -> dict[str, float]:
    """Overall and steady-state (10th to 90th percentile of acks) taps/s."""
    acks = sorted(t for t in result.acked_at if not math.isnan(t))
    if len(acks) < 10:
        return {"overall_taps_per_s": math.nan, "steady_taps_per_s": math.nan}
    lo, hi = acks[len(acks) // 10], acks[len(acks) * 9 // 10]
    return {
        "overall_taps_per_s": len(acks) / (acks[-1] - result.first_due),
        "steady_taps_per_s": (len(acks) * 8 // 10) / (hi - lo) if hi > lo else math.nan,
        "send_taps_per_s": result.sent / (result.last_sent - result.first_due),
    }


class Ledger:
    """What the run has sent so far, to check the database against."""

    def __init__(self, readers: int, members: int) -> None:
        self.readers, self.members = readers, members
        self.sent_event_ids: set[str] = set()
        self.taps_sent = 0
        self.accepted_expected = 0
        self.accepted_acked = 0

    def add(self, planned: list[Any], result: PhaseResult, start: int) -> None:
        """Account for one phase's taps."""
        self.sent_event_ids.update(p.event_id for p in planned)
        self.accepted_expected += expected_accepted(self.readers, self.members, start, len(planned))
        self.accepted_acked += result.results.get("accepted", 0)
        self.taps_sent += len(planned)

    def check(self, database_url: str) -> dict[str, Any]:
        """Every tap stored once, nothing extra, one credit per accepted tap."""
        totals = services.totals(database_url)
        stored = set(totals.event_ids)
        report = {
            "taps_sent": self.taps_sent,
            "tap_rows": len(totals.event_ids),
            "distinct_event_ids": len(stored),
            "missing": len(self.sent_event_ids - stored),
            "unexpected": len(stored - self.sent_event_ids),
            "accepted_expected": self.accepted_expected,
            "accepted_acks": self.accepted_acked,
            "attendance_rows": totals.attendance,
            "ledger_rows": totals.ledger_entries,
            "ledger_points": totals.ledger_sum,
        }
        report["ok"] = (
            report["tap_rows"] == report["distinct_event_ids"] == self.taps_sent
            and report["missing"] == 0
            and report["unexpected"] == 0
            and totals.attendance == totals.ledger_entries == self.accepted_expected
            and self.accepted_acked == self.accepted_expected
            and totals.ledger_sum == self.accepted_expected * services.POINTS
        )
        return report


@dataclass(frozen=True)
class Rig:
    """Everything a phase runs against."""

    readers: Readers
    fleet: Roster
    ledger: Ledger
    ingest: services.Ingest | services.IngestGroup
    broker: psutil.Process
    database_url: str
    # Each phase's report with what the generator saw, for the disk figures after the run.
    seen: list[tuple[dict[str, Any], PhaseResult]] = field(default_factory=list)


def ingest_pids(ingest: services.Ingest | services.IngestGroup) -> list[int]:
    """Process ids of every ingest process."""
    if isinstance(ingest, services.IngestGroup):
        return [member.proc.pid for member in ingest.members]
    return [ingest.proc.pid]


def publish_while_stopped(rig: Rig, planned: list[Any]) -> tuple[PhaseResult, float, float]:
    """Stop ingest (SIGSTOP), publish everything, resume it once the broker holds it all.

    Stands in for readers that were offline: the broker queues the taps for the
    ingest's persistent session (`max_queued_messages 0` = no limit). No window,
    since nothing is answered while ingest is stopped. Every ingest process is
    stopped and resumed. The generator's loop resumes them the moment the broker
    has PUBACKed the last tap. Returns the result, the perf_counter time of the
    resume and the seconds spent publishing.
    """
    pids = ingest_pids(rig.ingest)
    resumed: list[float] = []

    def resume() -> None:
        resumed.append(time.perf_counter())
        for pid in pids:
            os.kill(pid, signal.SIGCONT)

    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    started = time.perf_counter()
    try:
        result = rig.readers.run(planned, None, window=len(planned) + 1, on_all_pubacked=resume)
    finally:
        if not resumed:
            resume()
    return result, resumed[0], resumed[0] - started


def run_phase(
    rig: Rig,
    name: str,
    count: int,
    rate: float | None,
    profile_to: Path | None = None,
    *,
    stop_ingest: bool = False,
) -> dict[str, Any]:
    """Plan, publish, wait for every ack, then check the database.

    With `profile_to`, py-spy samples the ingest process during the phase and
    writes collapsed stacks there (one line per stack, with its sample count).
    With `stop_ingest`, ingest is stopped while the taps are published (a backlog).
    """
    readers, ledger, ingest, broker = rig.readers, rig.ledger, rig.ingest, rig.broker
    start = ledger.taps_sent
    planned = plan_taps(rig.fleet.reader_ids, rig.fleet.uids, start, count)
    cpu_before = ingest.cpu_seconds()
    workers_before = (
        [member.cpu_seconds() for member in ingest.members]
        if isinstance(ingest, services.IngestGroup)
        else []
    )
    broker_before = sum(broker.cpu_times()[:2])
    machine_before = psutil.cpu_times()
    wall_before = time.monotonic()
    gen_before = sum(os.times()[:2])
    spy = None
    if profile_to is not None:
        spy = subprocess.Popen(
            [
                str(services.BIN / "py-spy"),
                "record",
                "--pid",
                str(ingest.proc.pid),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(profile_to),
                "--threads",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # py-spy needs a moment to attach
    if stop_ingest:
        result, resumed, published = publish_while_stopped(rig, planned)
    else:
        result = readers.run(planned, rate)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)
    cpu = ingest.cpu_seconds() - cpu_before
    workers_cpu = (
        [
            member.cpu_seconds() - before
            for member, before in zip(ingest.members, workers_before, strict=True)
        ]
        if isinstance(ingest, services.IngestGroup)
        else []
    )
    broker_cpu = sum(broker.cpu_times()[:2]) - broker_before
    gen_cpu = sum(os.times()[:2]) - gen_before
    wall = time.monotonic() - wall_before
    machine_after = psutil.cpu_times()
    busy = sum(machine_after) - machine_after.idle - (sum(machine_before) - machine_before.idle)
    machine_busy = busy / (sum(machine_after) - sum(machine_before))
    ledger.add(planned, result, start)
    check = ledger.check(rig.database_url)
    phase = {
        "name": name,
        "offered_taps_per_s": rate,
        "taps": count,
        "acked": result.acked,
        "timed_out": result.timed_out,
        "results": dict(result.results),
        "duplicate_acks": result.duplicate_acks,
        "stray_acks": result.stray_acks,
        **throughput(result),
        **latency_summary(result),
        "ingest_cpu_seconds": cpu,
        "ingest_cpu_us_per_tap": cpu / count * 1e6,
        "ingest_cpu_share_of_one_core": cpu / wall,
        "machine_cpu_busy_fraction": machine_busy,
        "broker_cpu_us_per_tap": broker_cpu / count * 1e6,
        "generator_cpu_us_per_tap": gen_cpu / count * 1e6,
        "ingest_workers": len(ingest_pids(ingest)),
        "db_check": check,
        # Published (PUBACKed) but never answered or never stored: dropped on the way.
        "unanswered": count - result.acked,
        "pubacked": result.pubacked,
        "pubacked_unanswered": result.pubacked_unanswered,
        "missing_in_db": check["missing"],
    }
    flag = "ok" if check["ok"] and not result.timed_out else "FAILED"
    print(
        f"  {name:<12} {count:>6} taps  steady {phase['steady_taps_per_s']:>7.0f}/s  "
        f"p50 {phase['p50_ms']:>8.2f} ms  p99 {phase['p99_ms']:>8.2f} ms  "
        f"ingest CPU {phase['ingest_cpu_us_per_tap']:>5.0f} µs/tap  "
        f"results {dict(result.results)}  exactly-once {flag}",
        flush=True,
    )
    rig.seen.append((phase, result))
    if workers_cpu:
        phase["ingest_cpu_seconds_per_worker"] = workers_cpu
    if stop_ingest:
        acks = [t for t in result.acked_at if not math.isnan(t)]
        drain = max(acks) - resumed if acks else math.nan
        phase["publish_seconds"] = published
        phase["drain_seconds"] = drain
        phase["drain_taps_per_s"] = len(acks) / drain if acks else math.nan
    return phase


def machine_info(database_url: str, kind: str) -> dict[str, Any]:
    """CPU, memory, versions and the git commit this ran on."""
    root = Path(__file__).resolve().parent.parent
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False
        ).stdout.strip()

    mosquitto = subprocess.run(
        [MOSQUITTO, "-h"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    info: dict[str, Any] = {
        "cpu_model": cpu_model,
        "cpus": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "paho_mqtt": paho.mqtt.__version__,
        "mosquitto": mosquitto[0] if mosquitto else "?",
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if kind == "sqlite":
        info["sqlite"] = sqlite3.sqlite_version
    else:
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import DBAPIError

        engine = create_engine(database_url)
        with engine.connect() as conn:
            info["postgresql"] = conn.scalar(text("SHOW server_version"))
            try:  # a superuser's (or pg_read_all_settings') to read
                info["postgresql_data_directory"] = conn.scalar(text("SHOW data_directory"))
            except DBAPIError:
                info["postgresql_data_directory"] = None
        engine.dispose()
    return info


def same_device(workdir: Path, data_directory: str | None) -> bool | None:
    """Whether the disk probe's directory is on the database's device; None if unknown."""
    if data_directory is None or not Path(data_directory).exists():
        return None
    return workdir.stat().st_dev == Path(data_directory).stat().st_dev


def disk_during(
    samples: list[diskprobe.Sample], result: PhaseResult, phase: dict[str, Any]
) -> dict[str, Any]:
    """The disk probe's figures over one phase, and its slow taps in flight across a stall."""
    acks = [t for t in result.acked_at if not math.isnan(t)]
    end = max(acks) if acks else result.last_sent
    disk = diskprobe.summary(samples, result.first_due, end)
    disk.update(diskprobe.taps_across_stalls(samples, result.due, result.acked_at))
    phase["disk"] = disk
    return disk


def chart(report: dict[str, Any], path: Path) -> None:
    """Latency p50/p99 against offered load, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rated = sorted(
        (p for p in report["phases"] if p["name"].startswith("rate-")),
        key=lambda p: p["offered_taps_per_s"],
    )
    x = [p["offered_taps_per_s"] for p in rated]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(x, [p["p50_ms"] for p in rated], "o-", label="p50")
    ax.plot(x, [p["p99_ms"] for p in rated], "s-", label="p99")
    sat = report["saturation_taps_per_s"]
    ax.axvline(sat, color="grey", linestyle="--", label=f"saturation {sat:.0f}/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (taps/s, open loop)")
    ax.set_ylabel("tap → ack latency (ms)")
    ax.set_title(f"Rollcall ingest, {report['db']}, {report['machine']['cpus']} CPUs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measure_passthrough(host: str, port: int, payload: bytes, count: int) -> dict[str, Any]:
    """Both passthrough probes, and which one the e2e ratio divides by (the larger rate).

    paho → paho is the figure of earlier runs; lean → paho publishes with the
    generator's own client (bench.wire), so the ratio compares like with like.
    The larger rate is the stricter denominator.
    """
    paho = passthrough(host, port, payload, count)
    lean = lean_passthrough(host, port, payload, count)
    rates = {"paho": paho["msgs_per_s"], "lean": lean["msgs_per_s"]}
    used = max(rates, key=lambda name: rates[name])
    print(
        f"  passthrough  {rates['paho']:>7.0f} msgs/s paho → paho, "
        f"{rates['lean']:>7.0f} msgs/s lean → paho "
        f"(QoS 1, one publisher → one subscriber; ratio uses {used})",
        flush=True,
    )
    return {
        "passthrough": paho,
        "passthrough_lean": lean,
        "passthrough_msgs_per_s": rates,
        "passthrough_used": used,
    }


def start_ingest(
    database_url: str, mqtt_url: str, workdir: Path, workers: int
) -> services.Ingest | services.IngestGroup:
    """One `rollcall ingest`, or `workers` of them on the shared subscription."""
    if workers == 1:
        return services.Ingest(database_url, mqtt_url, workdir)
    return services.IngestGroup(database_url, mqtt_url, workdir, workers)


def ingest_logs(ingest: services.Ingest | services.IngestGroup) -> list[Path]:
    """The log file of every ingest process."""
    if isinstance(ingest, services.IngestGroup):
        return [member.log_path for member in ingest.members]
    return [ingest.log_path]


def run(
    kind: str,
    profile: Profile,
    out: Path,
    workdir: Path,
    py_spy_phase: str | None = None,
    *,
    ingest_workers: int = 1,
    disk_probe_interval: float = 0.01,
) -> dict[str, Any]:
    """Everything one run does; returns the report."""
    report: dict[str, Any] = {
        "db": kind,
        "profile": profile.__dict__,
        "ingest_workers": ingest_workers,
        "phases": [],
    }
    with (
        services.mosquitto(workdir) as (mosquitto, broker),
        services.database(kind, workdir) as database_url,
    ):
        host, port = mosquitto.host, mosquitto.port
        report["broker_config"] = mosquitto.config_path.read_text().splitlines()
        report["machine"] = machine_info(database_url, kind)
        t = time.monotonic()
        services.upgrade(database_url, workdir)
        fleet = services.seed(database_url, profile.members, profile.readers)
        print(f"  migrated and seeded in {time.monotonic() - t:.1f} s", flush=True)

        sample = plan_taps(fleet.reader_ids, fleet.uids, 0, 1)[0].payload
        report["machine_pace"] = [services.machine_pace(database_url, kind, sample)]
        print(f"  machine pace  {services.describe_pace(report['machine_pace'][0])}", flush=True)
        report.update(measure_passthrough(host, port, sample, profile.passthrough_messages))
        rates = report["passthrough_msgs_per_s"]
        raw = rates[report["passthrough_used"]]

        ingest = start_ingest(database_url, f"mqtt://{host}:{port}", workdir, ingest_workers)
        readers: Readers | None = None
        disk = diskprobe.DiskProbe(workdir, disk_probe_interval) if disk_probe_interval else None
        report["machine"]["disk_probe_on_database_device"] = same_device(
            workdir, report["machine"].get("postgresql_data_directory")
        )
        try:
            if disk is not None:
                disk.start()
            ingest.wait_ready()
            readers = Readers(host, port, fleet.reader_ids)
            ledger = Ledger(profile.readers, profile.members)
            rig = Rig(readers, fleet, ledger, ingest, broker, database_url)
            phases = report["phases"]
            phases.append(run_phase(rig, "warmup", profile.warmup_taps, 500.0))

            def spy(phase: str) -> Path | None:
                if phase != py_spy_phase:
                    return None
                return out / f"tapstorm-{kind}-{phase}.pyspy.txt"

            phases.append(
                run_phase(rig, "saturation", profile.saturation_taps, None, spy("saturation"))
            )
            for rate, seconds in profile.rates:
                name = f"rate-{rate}"
                phases.append(run_phase(rig, name, int(rate * seconds), float(rate), spy(name)))
            saturation = phases[1]["steady_taps_per_s"]
            over = 1.5 * saturation
            phase = run_phase(rig, "overload", int(over * profile.overload_seconds), over)
            phase["saturation_taps_per_s"] = saturation
            phases.append(phase)
            print(
                f"  {'':<12} offered {over:.0f}/s = 1.5 × saturation {saturation:.0f}/s, "
                f"achieved {phase['overall_taps_per_s']:.0f}/s; "
                f"dropped: {phase['unanswered']} unanswered "
                f"({phase['pubacked_unanswered']} of them PUBACKed), "
                f"{phase['missing_in_db']} missing in the database",
                flush=True,
            )
            phase = run_phase(rig, "backlog", profile.backlog_taps, None, stop_ingest=True)
            phase["saturation_taps_per_s"] = saturation
            phase["drain_to_saturation"] = phase["drain_taps_per_s"] / saturation
            phases.append(phase)
            print(
                f"  {'':<12} published in {phase['publish_seconds']:.1f} s with ingest stopped; "
                f"drained {phase['acked']} in {phase['drain_seconds']:.1f} s = "
                f"{phase['drain_taps_per_s']:.0f}/s = "
                f"{phase['drain_to_saturation']:.2f} × saturation (target ≥ 0.5)",
                flush=True,
            )
            report["ingest_peak_rss_bytes"] = ingest.peak_rss()
            if isinstance(ingest, services.IngestGroup):
                report["ingest_peak_rss_bytes_per_worker"] = [
                    member.peak_rss() for member in ingest.members
                ]
        finally:
            if readers is not None:
                readers.close()
            ingest.stop()
            samples = disk.stop() if disk is not None else []
        report["disk_probe_interval_s"] = disk_probe_interval
        report["disk"] = diskprobe.summary(samples) if samples else None
        for phase, result in rig.seen if disk is not None else []:
            d = disk_during(samples, result, phase)
            if phase["offered_taps_per_s"] is None or phase["name"] == "overload":
                continue
            print(
                f"  disk during {phase['name']:<9} {d['fsyncs']} fsyncs, p99 {d['p99_ms']:.1f} ms, "
                f"max {d['max_ms']:.0f} ms, {d['stalls_over_10ms']} over 10 ms; "
                f"taps over 10 ms: {d['slow_taps']}, {d['slow_taps_across_a_stall']} of them "
                "in flight across a stall",
                flush=True,
            )
        # Again at the end: how much the machine's pace moved during the run.
        report["machine_pace"].append(services.machine_pace(database_url, kind, sample))
        print(f"  machine pace  {services.describe_pace(report['machine_pace'][1])}", flush=True)
        report["ingest_log_errors"] = [
            line
            for log in ingest_logs(ingest)
            for line in log.read_text().splitlines()
            if " ERROR " in line or " WARNING " in line
        ][:20]
    report["generator_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sat = next(p for p in report["phases"] if p["name"] == "saturation")
    report["saturation_taps_per_s"] = sat["steady_taps_per_s"]
    # The headline divides by the larger passthrough (the stricter denominator).
    report["ratio_e2e_to_passthrough"] = sat["steady_taps_per_s"] / raw
    report["ratio_e2e_to_passthrough_paho"] = sat["steady_taps_per_s"] / rates["paho"]
    report["ratio_e2e_to_passthrough_lean"] = sat["steady_taps_per_s"] / rates["lean"]
    report["exactly_once"] = all(
        p["db_check"]["ok"] and not p["timed_out"] for p in report["phases"]
    )
    over = next(p for p in report["phases"] if p["name"] == "overload")
    report["overload_dropped"] = over["unanswered"] + over["missing_in_db"]
    backlog = next(p for p in report["phases"] if p["name"] == "backlog")
    report["backlog_drain_taps_per_s"] = backlog["drain_taps_per_s"]
    report["backlog_drain_to_saturation"] = backlog["drain_to_saturation"]
    return report


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, write the JSON and the chart."""
    parser = argparse.ArgumentParser(prog="python -m bench.tapstorm", description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--quick", action="store_true", help="smaller run, under 2 minutes")
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument(
        "--py-spy",
        metavar="PHASE",
        choices=("saturation", "rate-100", "rate-1000", "rate-5000"),
        help="profile the ingest process during PHASE with py-spy (`pip install py-spy`); "
        "writes collapsed stacks; sampling slows ingest, so that run's figures are not comparable; "
        "with --ingest-workers > 1 only the first worker is profiled",
    )
    parser.add_argument(
        "--ingest-workers",
        type=int,
        default=1,
        metavar="N",
        help="N `rollcall ingest` processes on the shared subscription "
        "($share/rollcall-ingest/…, as bench.horizontal); CPU figures sum over all of them",
    )
    parser.add_argument(
        "--disk-probe-interval",
        type=float,
        default=0.01,
        metavar="SECONDS",
        help="time a 4 KiB write + fdatasync beside the database this often (bench.diskprobe); "
        "0: no probe",
    )
    args = parser.parse_args(argv)
    if args.ingest_workers < 1:
        parser.error("--ingest-workers must be at least 1")
    profile = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    workers = f", {args.ingest_workers} ingest workers" if args.ingest_workers > 1 else ""
    print(f"tapstorm: {args.db}, {'quick' if args.quick else 'full'}{workers}", flush=True)
    with tempfile.TemporaryDirectory(prefix="tapstorm-", dir=args.out) as tmp:
        report = run(
            args.db,
            profile,
            args.out,
            Path(tmp),
            args.py_spy,
            ingest_workers=args.ingest_workers,
            disk_probe_interval=args.disk_probe_interval,
        )
        # Keep the ingest logs next to the results: they are the first place to look.
        for log in sorted(Path(tmp).glob("ingest*.log")):
            (args.out / f"tapstorm-{args.db}-{log.name}").write_text(log.read_text())
    report["quick"] = args.quick
    report["profiled_phase"] = args.py_spy
    report["wall_seconds"] = time.monotonic() - started
    json_path = args.out / f"tapstorm-{args.db}.json"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    chart(report, args.out / f"tapstorm-{args.db}.png")
    print(
        f"tapstorm: saturation {report['saturation_taps_per_s']:.0f} taps/s = "
        f"{report['ratio_e2e_to_passthrough']:.2f} × passthrough "
        f"({report['passthrough_used']}, the larger: "
        f"{report['ratio_e2e_to_passthrough_paho']:.2f} × paho, "
        f"{report['ratio_e2e_to_passthrough_lean']:.2f} × lean); "
        f"ingest peak RSS {report['ingest_peak_rss_bytes'] / 2**20:.0f} MiB; "
        f"overload dropped {report['overload_dropped']}; "
        f"backlog drain {report['backlog_drain_to_saturation']:.2f} × saturation; "
        f"exactly-once {'ok' if report['exactly_once'] else 'FAILED'}; "
        f"{report['wall_seconds']:.0f} s; wrote {json_path}",
        flush=True,
    )
    return 0 if report["exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
