"""The `rollcall-reader` command: run the agent, inspect its outbox, try a card or a reader.

Logs go to stderr. Stdout carries one line per event, each starting with a
bracketed tag, so people, the demo and tests can all read it:

    [queued] 04A1B2C3 seq=1 event=6f1c…      a tap was stored in the outbox
    [card] 04A1B2C3                          the person's card was read (feedback)
    [accepted] 签到成功 +2 — 张三 | 支部党员大会  the server's answer (feedback)
    [personalised] 04A1B2C3 key_version=2     `personalise` wrote the card's key
"""

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, Final

from protocol import Tap, TapMode, decode_as
from protocol.errors import MalformedMessage
from reader_agent import __version__
from reader_agent.agent import Agent, RunOutcome
from reader_agent.cardauth import CardKeyFile, Personaliser, read_key_dir
from reader_agent.config import (
    ReaderSettings,
    environment_has_settings,
    load_diagnostic_settings,
    load_settings,
)
from reader_agent.errors import ReaderAgentError
from reader_agent.feedback_factory import close_feedback, make_feedback
from reader_agent.outbox import Outbox, PendingTap
from reader_agent.sources.factory import SimulatedInputs, make_source
from reader_agent.transport import MqttTransport

log = logging.getLogger("reader_agent")

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_DRAIN_TIMEOUT: Final = 3
_EXIT_CODES: Final = {
    RunOutcome.STOPPED: EXIT_OK,
    RunOutcome.DRAINED: EXIT_OK,
    RunOutcome.DRAIN_TIMEOUT: EXIT_DRAIN_TIMEOUT,
    RunOutcome.SOURCE_FAILED: EXIT_FAILED,
    RunOutcome.OUTBOX_FAILED: EXIT_FAILED,
}


def _settings_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="reader.toml (optional)")
    parser.add_argument("--id", help="reader id (overrides the config file and environment)")
    parser.add_argument("--outbox", type=Path, help="outbox database file")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `rollcall-reader`."""
    parser = argparse.ArgumentParser(
        prog="rollcall-reader",
        description="Rollcall reader agent: reads cards and publishes taps to the server.",
        epilog="Settings also come from ROLLCALL_READER_* variables (e.g. ROLLCALL_READER_ID).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")
    noise.add_argument("-q", "--quiet", action="store_true", help="log only warnings and errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the agent until stopped")
    _settings_options(run)
    run.add_argument("--mqtt-url", help="mqtt://user:password@host:port or mqtts://…")
    run.add_argument("--source", choices=["simulated", "pcsc", "nfcpy"], help="card source")
    run.add_argument("--mode", choices=[mode.value for mode in TapMode], help="mode of taps")
    run.add_argument("--debounce", type=float, metavar="S", help="debounce window, seconds")
    simulated = run.add_argument_group("simulated source")
    simulated.add_argument(
        "--tap",
        action="extend",
        nargs="+",
        default=[],
        metavar="SPEC",
        help="tap a card: 'UID' or 'TECH UID' (repeatable)",
    )
    simulated.add_argument("--script", type=Path, help="file of taps and pauses, one per line")
    simulated.add_argument("--stdin", action="store_true", help="read taps from stdin as they come")
    simulated.add_argument("--interval", type=float, default=0.0, metavar="S", help="between taps")
    run.add_argument(
        "--exit-when-drained",
        action="store_true",
        help="exit once the source has ended and every tap is acked",
    )
    run.add_argument(
        "--drain-timeout",
        type=float,
        metavar="S",
        help="with --exit-when-drained: give up (exit 3) after S seconds of waiting for acks",
    )
    run.set_defaults(handler=_run)

    outbox = commands.add_parser("outbox", help="inspect the outbox or resend its taps now")
    _settings_options(outbox)
    outbox.add_argument(
        "action",
        nargs="?",
        choices=["list", "count", "retry"],
        default="list",
        help="list waiting taps (default), count them, or make them due for resending now",
    )
    outbox.add_argument("--limit", type=int, default=1000, help="list at most this many")
    outbox.set_defaults(handler=_outbox)

    # ---- Diagnostics: implemented in reader_agent.diagnostics (hardware sources). ----
    test_card = commands.add_parser("test-card", help="read one card and print what it sees")
    _settings_options(test_card)
    test_card.add_argument("--source", choices=["pcsc", "nfcpy"], help="card source")
    test_card.set_defaults(handler=_test_card)
    list_readers = commands.add_parser("list-readers", help="list the card readers attached")
    list_readers.add_argument("--config", type=Path, help="reader.toml, for the nfcpy device")
    list_readers.add_argument(
        "--search-tty",
        action="store_true",
        help="also probe serial ports for nfcpy readers (sends bytes to every port)",
    )
    list_readers.set_defaults(handler=_list_readers)
    # ---- end of diagnostics ----

    personalise = commands.add_parser(
        "personalise", help="write a card's strong-tier key to it (pcsc source)"
    )
    personalise.add_argument("--config", type=Path, help="reader.toml, for [pcsc] settings")
    keys = personalise.add_mutually_exclusive_group(required=True)
    keys.add_argument(
        "--key-file",
        type=Path,
        help="the file `rollcall cards personalise-key --out` wrote for this card",
    )
    keys.add_argument(
        "--key-dir",
        type=Path,
        help="a directory of key files (`rollcall cards personalise-key --reissue --out-dir`): "
        "put the cards on the reader one after another; each file is erased once written",
    )
    personalise.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="wait this long for the card (with --key-dir: for the next card)",
    )
    personalise.set_defaults(handler=_personalise)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `rollcall-reader`; returns the exit status."""
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        logging.getLogger("paho").setLevel(logging.WARNING)
    try:
        code: int = args.handler(args)
    except ReaderAgentError as exc:
        print(f"rollcall-reader: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return code


def _settings(args: argparse.Namespace, **overrides: Any) -> ReaderSettings:
    return load_settings(args.config, id=args.id, outbox_path=args.outbox, **overrides)


def _run(args: argparse.Namespace) -> int:
    settings = _settings(
        args,
        mqtt_url=args.mqtt_url,
        source=args.source,
        mode=args.mode,
        debounce_seconds=args.debounce,
    )
    inputs = SimulatedInputs(
        taps=args.tap,
        script=args.script,
        stream=sys.stdin if args.stdin else None,
        interval=args.interval,
    )
    if settings.source == "simulated" and not inputs.given:
        log.warning("the simulated source has no input (--tap, --script, --stdin): no new taps")
    with ExitStack() as cleanup:
        # Feedback first: a buzzer that cannot be claimed stops the start before anything opens.
        feedback = make_feedback(settings, stream=sys.stdout)
        cleanup.callback(close_feedback, feedback)
        source = make_source(settings, inputs)
        outbox = Outbox(settings.outbox_file)
        cleanup.callback(outbox.close)
        transport = MqttTransport(
            settings.mqtt,
            f"rollcall-reader-{settings.id}",
            tls_ca_file=settings.tls_ca_file,
            tls_cert_file=settings.tls_cert_file,
            tls_key_file=settings.tls_key_file,
            max_inflight=settings.max_inflight,
        )
        agent = Agent(
            settings,
            source,
            feedback,
            outbox=outbox,
            transport=transport,
            on_queued=_print_queued,
        )
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            log.info("%s received; stopping", signal.Signals(signum).name)
            stop.set()
            agent.wake()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        outcome = agent.run(
            stop, exit_when_drained=args.exit_when_drained, drain_timeout=args.drain_timeout
        )
    return _EXIT_CODES[outcome]


def _print_queued(tap: Tap) -> None:
    print(f"[queued] {tap.card.uid} seq={tap.seq} event={tap.event_id}", flush=True)


def _outbox(args: argparse.Namespace) -> int:
    # An explicit file needs no reader id; otherwise the settings say where it is.
    path = args.outbox if args.outbox is not None else _settings(args).outbox_file
    if not path.exists():
        raise ReaderAgentError(f"no outbox at {path}")
    outbox = Outbox(path)
    try:
        if args.action == "count":
            print(outbox.depth())
        elif args.action == "retry":
            outbox.reset_sent()
            print(f"[retry] {outbox.depth()} taps due for sending now")
        else:
            for pending in outbox.pending(limit=args.limit):
                print(_describe(pending))
    finally:
        outbox.close()
    return EXIT_OK


def _describe(pending: PendingTap) -> str:
    try:
        tap = decode_as(pending.payload, Tap)
        card = f"{tap.card.tech.value}:{tap.card.uid}"
        occurred = tap.occurred_at.isoformat()
    except MalformedMessage as exc:
        card, occurred = f"unreadable ({exc})", "?"
    last_sent = pending.last_sent_at.isoformat() if pending.last_sent_at else "never"
    return (
        f"[pending] seq={pending.seq} event={pending.event_id} card={card} "
        f"occurred={occurred} attempts={pending.attempts} last_sent={last_sent}"
    )


def _diagnostics() -> ModuleType:
    try:
        return importlib.import_module("reader_agent.diagnostics")
    except ImportError as exc:
        if exc.name == "reader_agent.diagnostics":
            raise ReaderAgentError("diagnostics are not part of this build") from exc
        raise ReaderAgentError(
            f"diagnostics need {exc.name or exc}: install the reader extra "
            "(pip install 'rollcall[reader]')"
        ) from exc


def _test_card(args: argparse.Namespace) -> int:
    # The installer checks the card reader before the terminal has a reader id.
    settings = load_diagnostic_settings(args.config)
    if args.source is not None:
        settings = settings.model_copy(update={"source": args.source})
    result = _diagnostics().test_card(settings)
    return result if isinstance(result, int) else EXIT_OK


def _list_readers(args: argparse.Namespace) -> int:
    # Settings only tell where an nfcpy reader is; without a file or variables there is none.
    settings = None
    if args.config is not None or environment_has_settings():
        settings = load_diagnostic_settings(args.config)
    result = _diagnostics().list_readers(settings, search_tty=args.search_tty)
    return result if isinstance(result, int) else EXIT_OK


def _personalise(args: argparse.Namespace) -> int:
    settings = load_diagnostic_settings(args.config)
    key_files = read_key_dir(args.key_dir) if args.key_dir else [CardKeyFile.read(args.key_file)]
    personaliser = Personaliser.from_options(key_files, settings.pcsc)
    try:
        from reader_agent.sources.pcsc import PcscSource
    except ImportError as exc:
        raise ReaderAgentError(
            f"personalising needs pyscard ({exc}): install the reader extra"
        ) from exc
    source = PcscSource(settings.pcsc, authenticator=personaliser)
    stop = threading.Event()
    timer = threading.Timer(args.timeout, stop.set)
    bulk = args.key_dir is not None
    # The keys not written yet: in a bulk session a card written is taken off, so
    # putting it on again is refused rather than erasing a file twice.
    left = personaliser.key_files
    if bulk:
        print(f"[waiting] put the cards on the reader one at a time: {len(left)} keys", flush=True)
    else:
        print(f"[waiting] put card {key_files[0].uid} on the reader", flush=True)
    timer.start()
    try:
        for _ in source.presentations(stop):
            written = personaliser.written
            if written is None:
                print(f"[refused] {personaliser.refusal or 'the card was not written'}", flush=True)
                if not bulk:
                    return EXIT_FAILED
            else:
                print(f"[personalised] {written.uid} key_version={written.key_version}", flush=True)
                del left[written.uid]
                if bulk:
                    written.erase()
            if not left:
                if bulk:
                    print("[done] every card in the directory is written", flush=True)
                return EXIT_OK
            timer.cancel()  # the next card gets the whole wait
            timer = threading.Timer(args.timeout, stop.set)
            timer.start()
    finally:
        timer.cancel()
        stop.set()
        source.close()
    print(f"[timeout] no card within {args.timeout:g} s; {len(left)} keys not written", flush=True)
    return EXIT_FAILED
