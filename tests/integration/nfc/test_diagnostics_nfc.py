"""`test-card` and `list-readers` with nfcpy's udp driver and an emulated tag."""

import io
from dataclasses import dataclass, field

import pytest

from reader_agent import diagnostics
from reader_agent.sources.options import NfcpyOptions, PcscOptions
from tests.integration.nfc.conftest import TagFactory

pytestmark = pytest.mark.integration


@dataclass
class Settings:
    """The three settings the diagnostics read, as ReaderSettings has them."""

    nfcpy: NfcpyOptions
    source: str = "nfcpy"
    pcsc: PcscOptions = field(default_factory=PcscOptions)


def test_test_card_reads_an_nfc_tag(emulated_tag: TagFactory) -> None:
    tag = emulated_tag("tt3", "0116040042AB12CD")
    tag.present()
    out = io.StringIO()
    code = diagnostics.test_card(Settings(NfcpyOptions(device=tag.device)), timeout=15, out=out)
    lines = out.getvalue().splitlines()
    assert code == diagnostics.EXIT_OK
    assert "source:     nfcpy" in lines
    assert "technology: felica" in lines
    assert "uid:        0116040042AB12CD" in lines
    assert "atr:        (none: nfcpy talks to tags directly)" in lines


def test_list_readers_opens_the_configured_udp_device(emulated_tag: TagFactory) -> None:
    tag = emulated_tag("tt2", "04A1B2C3D4E5F6")
    out = io.StringIO()
    diagnostics.list_readers(Settings(NfcpyOptions(device=tag.device)), out=out)
    assert f"{tag.device}: Linux IP-Stack on udp:127.0.0.1:{tag.port}" in out.getvalue()
