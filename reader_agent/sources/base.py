"""The CardSource interface every card backend implements."""

import abc
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from protocol import CardAuth, CardTech


@dataclass(frozen=True)
class CardPresentation:
    """One card put on (or held to) a reader: what the agent saw, and when."""

    tech: CardTech
    uid: str  # upper-case hex
    source: str  # "pcsc", "nfcpy", "simulated"
    reader_name: str = ""
    atr: str | None = None  # upper-case hex, PC/SC only
    auth: CardAuth | None = None
    # The tap's event id when the source had to choose it: the strong tier's challenge is it.
    event_id: UUID | None = None
    seen_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class CardSource(abc.ABC):
    """A backend that reports card presentations.

    `presentations` blocks while it waits for cards and yields one
    CardPresentation per presentation: a card held still on the reader is one
    presentation; lifting it and presenting it again is a new one. It returns
    when `stop` is set or the source has nothing more (a finished script).
    Transient faults (reader unplugged, daemon restarted, card pulled away
    mid-read) are logged and recovered inside the source; only a fault it can
    never recover from raises CardSourceError.
    """

    name: str = "abstract"

    @abc.abstractmethod
    def presentations(self, stop: threading.Event) -> Iterator[CardPresentation]:
        """Yield card presentations until `stop` is set or the source is exhausted."""

    def close(self) -> None:  # noqa: B027 - optional hook, most sources hold nothing
        """Release the hardware; safe to call more than once."""
