"""`rollcall-reader`: outbox inspection, errors, diagnostics hooks, feedback and source set-up."""

import sys
import types
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from protocol import CardId, CardTech, Tap, encode
from reader_agent.cli import EXIT_FAILED, EXIT_OK, main
from reader_agent.config import ReaderSettings, load_settings
from reader_agent.errors import CardSourceError
from reader_agent.outbox import Outbox
from reader_agent.sources.factory import SimulatedInputs, make_source
from reader_agent.sources.simulated import SimulatedSource

T0 = datetime(2024, 11, 21, 8, 30, tzinfo=UTC)


def fill_outbox(path: Path, count: int) -> list[Tap]:
    outbox = Outbox(path)
    taps = []
    try:
        for seq in range(1, count + 1):
            tap = Tap(
                event_id=uuid.uuid4(),
                reader_id="door-1",
                boot_id=uuid.uuid4(),
                seq=seq,
                card=CardId(tech=CardTech.ISO14443A, uid=f"{seq:08X}"),
                occurred_at=T0,
                clock_synced=True,
            )
            outbox.append(tap, encode(tap))
            taps.append(tap)
        outbox.mark_sent([taps[0].event_id], at=T0)
    finally:
        outbox.close()
    return taps


def test_outbox_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "outbox.sqlite3"
    fill_outbox(path, 3)
    assert main(["outbox", "--outbox", str(path), "count"]) == EXIT_OK
    assert capsys.readouterr().out == "3\n"


def test_outbox_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "outbox.sqlite3"
    taps = fill_outbox(path, 2)
    assert main(["outbox", "--outbox", str(path)]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"[pending] seq=1 event={taps[0].event_id} card=iso14443a:00000001")
    assert "attempts=1 last_sent=2024-11-21T08:30:00+00:00" in lines[0]
    assert lines[1].endswith("attempts=0 last_sent=never")


def test_outbox_retry_makes_taps_due(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "outbox.sqlite3"
    fill_outbox(path, 2)
    assert main(["outbox", "--outbox", str(path), "retry"]) == EXIT_OK
    assert capsys.readouterr().out == "[retry] 2 taps due for sending now\n"
    outbox = Outbox(path)
    try:
        assert all(p.last_sent_at is None for p in outbox.pending(limit=10))
    finally:
        outbox.close()


def test_outbox_found_through_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fill_outbox(tmp_path / "rollcall-outbox-door-7.sqlite3", 1)
    monkeypatch.setenv("ROLLCALL_READER_DATA_DIR", str(tmp_path))
    assert main(["outbox", "--id", "door-7", "count"]) == EXIT_OK
    assert capsys.readouterr().out == "1\n"


def test_missing_outbox_is_an_error_not_a_new_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nope.sqlite3"
    assert main(["outbox", "--outbox", str(path), "count"]) == EXIT_FAILED
    assert f"no outbox at {path}" in capsys.readouterr().err
    assert not path.exists()


def test_config_error_names_the_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--id", "door 1", "--tap", "04A1B2C3"]) == EXIT_FAILED
    assert "invalid setting 'id'" in capsys.readouterr().err


def test_taps_on_the_command_line_need_the_simulated_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outbox = tmp_path / "outbox.sqlite3"
    code = main(
        ["run", "--id", "door-1", "--source", "pcsc", "--tap", "04A1B2C3", "--outbox", str(outbox)]
    )
    assert code == EXIT_FAILED
    assert "need the simulated source" in capsys.readouterr().err


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run", "--source", "usb"])
    assert caught.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["list-readers"], ["test-card", "--id", "door-1"]])
def test_diagnostics_missing_from_the_build_is_a_clear_error(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # None in sys.modules makes the import fail, as if the module were not installed.
    monkeypatch.setitem(sys.modules, "reader_agent.diagnostics", None)
    assert main(command) == EXIT_FAILED
    assert "diagnostics are not part of this build" in capsys.readouterr().err


def test_factory_builds_the_simulated_source() -> None:
    source = make_source(
        load_settings(None, id="door-1"), SimulatedInputs(taps=["04A1B2C3"], interval=0.5)
    )
    assert isinstance(source, SimulatedSource)
    assert source.name == "simulated"


@pytest.mark.parametrize(
    ("source", "module"),
    [("pcsc", "reader_agent.sources.pcsc"), ("nfcpy", "reader_agent.sources.nfc")],
)
def test_factory_explains_a_hardware_source_that_cannot_load(
    source: str, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(CardSourceError, match=r"rollcall\[reader\]"):
        make_source(load_settings(None, id="door-1", source=source))


class FakeDiagnostics(types.ModuleType):
    """Stands in for reader_agent.diagnostics and records how list-readers was called."""

    def __init__(self, code: int = 0) -> None:
        super().__init__("reader_agent.diagnostics")
        self.calls: list[tuple[ReaderSettings | None, bool]] = []
        self._code = code

    def list_readers(self, settings: ReaderSettings | None, *, search_tty: bool = False) -> int:
        self.calls.append((settings, search_tty))
        return self._code

    def test_card(self, settings: ReaderSettings) -> int:
        self.calls.append((settings, False))
        return self._code


@pytest.fixture
def diagnostics(monkeypatch: pytest.MonkeyPatch) -> FakeDiagnostics:
    fake = FakeDiagnostics()
    monkeypatch.setitem(sys.modules, "reader_agent.diagnostics", fake)
    return fake


def test_list_readers_needs_no_config_at_all(diagnostics: FakeDiagnostics) -> None:
    assert main(["list-readers"]) == EXIT_OK
    assert diagnostics.calls == [(None, False)]


def test_list_readers_search_tty_flag(diagnostics: FakeDiagnostics) -> None:
    assert main(["list-readers", "--search-tty"]) == EXIT_OK
    assert diagnostics.calls == [(None, True)]


def test_list_readers_passes_the_config_file_even_without_an_id(
    tmp_path: Path, diagnostics: FakeDiagnostics
) -> None:
    config = tmp_path / "reader.toml"
    config.write_text('source = "nfcpy"\n[nfcpy]\ndevice = "tty:AMA0:pn532"\n', encoding="utf-8")
    assert main(["list-readers", "--config", str(config), "--search-tty"]) == EXIT_OK
    [(settings, search_tty)] = diagnostics.calls
    assert settings is not None
    assert settings.nfcpy.device == "tty:AMA0:pn532"
    assert search_tty


def test_list_readers_passes_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, diagnostics: FakeDiagnostics
) -> None:
    monkeypatch.setenv("ROLLCALL_READER_NFCPY__DEVICE", "udp:127.0.0.1:54321")
    assert main(["list-readers"]) == EXIT_OK
    [(settings, _search_tty)] = diagnostics.calls
    assert settings is not None
    assert settings.nfcpy.device == "udp:127.0.0.1:54321"


def test_list_readers_returns_the_diagnostics_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "reader_agent.diagnostics", FakeDiagnostics(code=1))
    assert main(["list-readers"]) == 1


def test_list_readers_with_a_bad_config_is_a_clear_error(
    tmp_path: Path, diagnostics: FakeDiagnostics, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "reader.toml"
    config.write_text('[nfcpy]\ndevice = ""\n', encoding="utf-8")
    assert main(["list-readers", "--config", str(config)]) == EXIT_FAILED
    assert "invalid setting 'nfcpy.device'" in capsys.readouterr().err
    assert diagnostics.calls == []


def test_run_stops_at_start_when_the_buzzer_cannot_be_claimed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROLLCALL_READER_FEEDBACK", "gpio")
    monkeypatch.setenv("ROLLCALL_READER_GPIO__BUZZER_PIN", "529")
    monkeypatch.setenv("ROLLCALL_READER_GPIO__SYSFS_ROOT", str(tmp_path / "no-gpio"))
    outbox = tmp_path / "outbox.sqlite3"
    code = main(["run", "--id", "door-1", "--tap", "04A1B2C3", "--outbox", str(outbox)])
    assert code == EXIT_FAILED
    err = capsys.readouterr().err
    assert "rollcall-reader: error: feedback = 'gpio', gpio.buzzer_pin = 529: no GPIO" in err
    assert "Traceback" not in err
    assert not outbox.exists()  # nothing was opened before the feedback


def test_run_with_gpio_feedback_but_no_pin_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROLLCALL_READER_FEEDBACK", "gpio")
    assert main(["run", "--id", "door-1", "--tap", "04A1B2C3"]) == EXIT_FAILED
    assert "ROLLCALL_READER_GPIO__BUZZER_PIN" in capsys.readouterr().err


def test_test_card_works_before_the_terminal_has_a_reader_id(
    diagnostics: FakeDiagnostics,
) -> None:
    assert main(["test-card", "--source", "nfcpy"]) == EXIT_OK
    [(settings, _)] = diagnostics.calls
    assert settings is not None
    assert settings.source == "nfcpy"
