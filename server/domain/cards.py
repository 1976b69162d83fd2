"""Card states and which of them may be used to check in."""

from enum import StrEnum


class CardStatus(StrEnum):
    """Lifecycle of a card; only an active card identifies its holder."""

    ACTIVE = "active"
    LOST = "lost"
    REVOKED = "revoked"
    REPLACED = "replaced"
