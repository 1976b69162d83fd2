"""Reader settings: TOML file, environment and overrides, with errors that name the setting."""

from pathlib import Path

import pytest

from protocol import TapMode
from reader_agent.config import (
    DIAGNOSTIC_ID,
    GpioOptions,
    MqttTarget,
    ReaderSettings,
    environment_has_settings,
    load_diagnostic_settings,
    load_settings,
    parse_mqtt_url,
)
from reader_agent.errors import ConfigError

KEY = "00112233445566778899aabbccddeeff"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "reader.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_with_only_an_id() -> None:
    settings = load_settings(None, id="door-1")
    assert settings.mqtt == MqttTarget(host="127.0.0.1", port=1883)
    assert settings.source == "simulated"
    assert settings.mode is TapMode.CHECKIN
    assert settings.debounce_seconds == 3.0
    assert settings.resend_after_seconds == 20.0
    assert settings.status_interval_seconds == 30.0
    assert settings.clock_synced == "auto"
    assert settings.max_inflight == 100
    assert settings.outbox_file == Path("rollcall-outbox-door-1.sqlite3")
    assert settings.sign_key_bytes() is None
    assert settings.feedback == "console"
    assert settings.gpio == GpioOptions()
    assert settings.gpio.sysfs_root == Path("/sys/class/gpio")


def test_toml_file_with_nested_source_tables(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """
id = "room-301"
mqtt_url = "mqtts://reader:s3cret@broker.example.com"
source = "pcsc"
mode = "kiosk"
debounce_seconds = 1.5
clock_synced = true
data_dir = "/var/lib/rollcall"

[pcsc]
reader = "ACS ACR122U"

[nfcpy]
device = "tty:AMA0:pn532"
""",
    )
    settings = load_settings(config)
    assert settings.id == "room-301"
    assert settings.mqtt == MqttTarget(
        host="broker.example.com", port=8883, username="reader", password="s3cret", tls=True
    )
    assert settings.source == "pcsc"
    assert settings.mode is TapMode.KIOSK
    assert settings.debounce_seconds == 1.5
    assert settings.clock_synced is True
    assert settings.pcsc.reader == "ACS ACR122U"
    assert settings.nfcpy.device == "tty:AMA0:pn532"
    assert settings.outbox_file == Path("/var/lib/rollcall/rollcall-outbox-room-301.sqlite3")


def test_environment_beats_the_file_and_overrides_beat_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path, 'id = "from-file"\ndebounce_seconds = 1.0\n[pcsc]\nreader = "ACS"\n')
    monkeypatch.setenv("ROLLCALL_READER_ID", "from-env")
    monkeypatch.setenv("ROLLCALL_READER_DEBOUNCE_SECONDS", "2.5")
    monkeypatch.setenv("ROLLCALL_READER_PCSC__POLL_SECONDS", "0.5")
    settings = load_settings(config, id="from-cli", outbox_path=None)
    assert settings.id == "from-cli"
    assert settings.debounce_seconds == 2.5
    # A nested variable adds to the file's table instead of replacing it.
    assert settings.pcsc.reader == "ACS"
    assert settings.pcsc.poll_seconds == 0.5


def test_environment_alone_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLCALL_READER_ID", "door-2")
    monkeypatch.setenv("ROLLCALL_READER_CLOCK_SYNCED", "false")
    monkeypatch.setenv("ROLLCALL_READER_SIGN_KEY", KEY)
    settings = load_settings(None)
    assert settings.id == "door-2"
    assert settings.clock_synced is False
    assert settings.sign_key_bytes() == bytes.fromhex(KEY)


def test_secrets_stay_out_of_the_repr() -> None:
    settings = load_settings(None, id="door-1", mqtt_url="mqtt://u:hunter2@h", sign_key=KEY)
    assert "hunter2" not in repr(settings)
    assert KEY not in repr(settings)
    assert "hunter2" not in repr(settings.mqtt)
    assert settings.mqtt.redacted() == "mqtt://u:***@h:1883"


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"id": "door 1"}, "'id'"),
        ({"id": "x" * 65}, "'id'"),
        ({"debounce_seconds": -1}, "'debounce_seconds'"),
        ({"resend_after_seconds": 0}, "'resend_after_seconds'"),
        ({"max_inflight": 0}, "'max_inflight'"),
        ({"source": "usb"}, "'source'"),
        ({"mode": "lunch"}, "'mode'"),
        ({"clock_synced": "maybe"}, "'clock_synced'"),
        ({"mqtt_url": "http://broker"}, "'mqtt_url'"),
        ({"sign_key": "not hex"}, "'sign_key'"),
        ({"sign_key": "00ff"}, "'sign_key'"),
        ({"pcsc": {"poll_seconds": 0}}, "'pcsc.poll_seconds'"),
        ({"feedback": "buzzer"}, "'feedback'"),
        ({"gpio": {"buzzer_pin": -1}}, "'gpio.buzzer_pin'"),
        ({"gpio": {"active_low": "maybe"}}, "'gpio.active_low'"),
        ({"gpio": {"buzzer": 17}}, "unknown setting 'gpio.buzzer'"),
        ({"gpio": {"buzzer_pin": 17, "led_pin": 17}}, "the same GPIO line"),
    ],
)
def test_bad_values_name_the_setting(overrides: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(None, **{"id": "door-1", **overrides})


def test_error_says_where_the_value_may_come_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLCALL_READER_DEBOUNCE_SECONDS", "soon")
    with pytest.raises(ConfigError, match="ROLLCALL_READER_DEBOUNCE_SECONDS") as caught:
        load_settings(None, id="door-1")
    assert "'debounce_seconds'" in str(caught.value)


def test_gpio_feedback_from_the_file_with_the_environment_on_top(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path,
        """
id = "door-1"
feedback = "gpio"

[gpio]
buzzer_pin = 529
active_low = true
sysfs_root = "/tmp/gpio"
""",
    )
    monkeypatch.setenv("ROLLCALL_READER_GPIO__LED_PIN", "539")
    settings = load_settings(config)
    assert settings.feedback == "gpio"
    assert settings.gpio == GpioOptions(
        buzzer_pin=529, led_pin=539, active_low=True, sysfs_root=Path("/tmp/gpio")
    )


def test_gpio_feedback_needs_a_buzzer_pin() -> None:
    with pytest.raises(
        ConfigError, match=r"buzzer_pin in \[gpio\] or ROLLCALL_READER_GPIO__BUZZER"
    ):
        load_settings(None, id="door-1", feedback="gpio")


def test_gpio_pins_without_gpio_feedback_are_kept_but_unused() -> None:
    settings = load_settings(None, id="door-1", gpio={"buzzer_pin": 17})
    assert settings.feedback == "console"
    assert settings.gpio.buzzer_pin == 17


def test_diagnostic_settings_need_no_id_but_keep_one_that_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_diagnostic_settings(None).id == DIAGNOSTIC_ID
    assert load_diagnostic_settings(write(tmp_path, 'id = "door-2"')).id == "door-2"
    monkeypatch.setenv("ROLLCALL_READER_ID", "door-3")
    assert load_diagnostic_settings(write(tmp_path, 'id = "door-2"')).id == "door-3"


def test_diagnostic_settings_still_check_the_other_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid setting 'nfcpy\.device'"):
        load_diagnostic_settings(write(tmp_path, '[nfcpy]\ndevice = ""'))


def test_environment_has_settings_looks_only_at_the_prefix() -> None:
    assert not environment_has_settings({"PATH": "/usr/bin", "ROLLCALL_ID": "x"})
    assert environment_has_settings({"ROLLCALL_READER_NFCPY__DEVICE": "tty:AMA0:pn532"})
    assert not environment_has_settings()  # the conftest clears the developer's variables


def test_missing_id_says_how_to_set_it() -> None:
    with pytest.raises(ConfigError, match=r"'id' is required.*ROLLCALL_READER_ID"):
        load_settings(None)


def test_secret_values_are_not_echoed_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, id="door-1", sign_key="zz-my-secret-zz")
    assert "my-secret" not in str(caught.value)


def test_unknown_key_in_the_file_is_an_error(tmp_path: Path) -> None:
    config = write(tmp_path, 'id = "door-1"\ndebounce = 2\n')
    with pytest.raises(ConfigError, match="unknown setting 'debounce'"):
        load_settings(config)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", id="door-1")


def test_invalid_toml_is_an_error_with_the_line(tmp_path: Path) -> None:
    config = write(tmp_path, 'id = "door-1"\nmode = \n')
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 2"):
        load_settings(config)


def test_tls_files_need_mqtts() -> None:
    with pytest.raises(ConfigError, match="mqtts"):
        load_settings(None, id="door-1", tls_ca_file="/etc/ssl/ca.pem")
    settings = load_settings(
        None, id="door-1", mqtt_url="mqtts://broker", tls_ca_file="/etc/ssl/ca.pem"
    )
    assert settings.tls_ca_file == Path("/etc/ssl/ca.pem")


def test_explicit_outbox_path_wins_over_data_dir() -> None:
    settings = load_settings(None, id="door-1", data_dir="/data", outbox_path="/tmp/o.sqlite3")
    assert settings.outbox_file == Path("/tmp/o.sqlite3")


def test_settings_are_immutable() -> None:
    settings = load_settings(None, id="door-1")
    with pytest.raises(ValueError, match="frozen"):
        settings.id = "door-2"  # type: ignore[misc]


def test_loading_a_file_does_not_leak_into_later_loads(tmp_path: Path) -> None:
    load_settings(write(tmp_path, 'id = "from-file"\nmode = "kiosk"\n'))
    assert ReaderSettings(id="door-1").mode is TapMode.CHECKIN


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("mqtt://127.0.0.1:1883", MqttTarget("127.0.0.1", 1883)),
        ("mqtt://broker", MqttTarget("broker", 1883)),
        ("mqtts://broker", MqttTarget("broker", 8883, tls=True)),
        ("MQTTS://broker:9999/", MqttTarget("broker", 9999, tls=True)),
        (
            "mqtt://door-1:p%40ss%3Aword@broker:1884",
            MqttTarget("broker", 1884, "door-1", "p@ss:word"),
        ),
        ("mqtt://door-1@broker", MqttTarget("broker", 1883, username="door-1")),
        ("mqtt://[::1]:1883", MqttTarget("::1", 1883)),
    ],
)
def test_mqtt_urls(url: str, target: MqttTarget) -> None:
    assert parse_mqtt_url(url) == target


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("tcp://broker", "unsupported scheme"),
        ("broker:1883", "unsupported scheme"),
        ("mqtt://", "no broker host"),
        ("mqtt://broker:99999", "bad port"),
        ("mqtt://broker:http", "bad port"),
        ("mqtt://broker/rollcall", "no path"),
    ],
)
def test_bad_mqtt_urls(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_mqtt_url(url)


def test_redacted_url_brackets_ipv6() -> None:
    assert parse_mqtt_url("mqtts://[::1]").redacted() == "mqtts://[::1]:8883"
