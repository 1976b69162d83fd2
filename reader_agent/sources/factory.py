"""Builds the card source the settings name; hardware backends are imported only when chosen."""

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from reader_agent.config import ReaderSettings
from reader_agent.errors import CardSourceError
from reader_agent.sources.base import CardSource
from reader_agent.sources.simulated import SimulatedSource


@dataclass(frozen=True)
class SimulatedInputs:
    """Where the simulated source takes its taps from (command line, script, stream)."""

    taps: Sequence[str] = ()
    script: Path | None = None
    stream: TextIO | None = None
    interval: float = 0.0

    @property
    def given(self) -> bool:
        """Whether any input was given at all."""
        return bool(self.taps) or self.script is not None or self.stream is not None


def make_source(settings: ReaderSettings, simulated: SimulatedInputs | None = None) -> CardSource:
    """The CardSource for `settings.source`; CardSourceError if it cannot be loaded."""
    inputs = simulated or SimulatedInputs()
    if settings.source != "simulated" and inputs.given:
        raise CardSourceError(
            f"taps from --tap, --script or --stdin need the simulated source, "
            f"but source is {settings.source!r}"
        )
    if settings.source == "pcsc":
        return _hardware("reader_agent.sources.pcsc", "PcscSource")(settings.pcsc)
    if settings.source == "nfcpy":
        return _hardware("reader_agent.sources.nfc", "NfcpySource")(settings.nfcpy)
    return SimulatedSource(inputs.taps, inputs.script, inputs.stream, interval=inputs.interval)


def _hardware(module_name: str, class_name: str) -> Callable[..., CardSource]:
    # Imported here, not at the top: a simulated-only terminal has neither
    # pyscard nor nfcpy installed (the reader-sim extra).
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CardSourceError(
            f"card source {class_name} cannot be loaded ({exc}); "
            "install the reader extra: pip install 'rollcall[reader]'"
        ) from exc
    source_class = getattr(module, class_name, None)
    if not (isinstance(source_class, type) and issubclass(source_class, CardSource)):
        raise CardSourceError(f"{module_name} has no CardSource named {class_name}")
    return source_class
