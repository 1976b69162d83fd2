"""Card sources: where card presentations come from (pcsc, nfcpy, simulated)."""

from reader_agent.sources.base import CardPresentation, CardSource

__all__ = ["CardPresentation", "CardSource"]
