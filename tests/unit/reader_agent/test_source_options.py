"""Validation of the [pcsc] and [nfcpy] settings."""

import pytest
from pydantic import ValidationError

from reader_agent.sources.options import NfcpyOptions, PcscOptions


def test_pcsc_defaults() -> None:
    options = PcscOptions()
    assert (options.reader, options.apdus, options.id_encoding) == ("", [], "hex")


def test_pcsc_apdus_are_parsed_once_valid() -> None:
    options = PcscOptions(apdus=["00A4040002F001", "00 B0 00 00 08"])
    assert options.command_apdus() == [bytes.fromhex("00A4040002F001"), bytes.fromhex("00B0000008")]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("apdus", ["00A4040007F001"], "Lc says 7"),
        ("apdus", ["zz"], "hex digits"),
        ("id_encoding", "base64", "'hex' or 'ascii'"),
        ("poll_seconds", 0, "greater than 0"),
    ],
)
def test_pcsc_bad_settings_are_refused_with_a_reason(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        PcscOptions.model_validate({field: value})


def test_nfcpy_targets_must_be_bitrate_and_type() -> None:
    assert NfcpyOptions(targets=["106A", "212F", "424F"]).targets == ["106A", "212F", "424F"]
    with pytest.raises(ValidationError, match="not a bitrate and type"):
        NfcpyOptions(targets=["106A", "felica"])
    with pytest.raises(ValidationError, match="at least 1 item"):
        NfcpyOptions(targets=[])
