"""Pure display rules of the kiosk and live screens: masked names, rank bands, branches."""

from collections.abc import Sequence
from typing import Literal

NameMask = Literal["full", "mask_middle", "surname_only"]

# Rank bands shown on a kiosk, as (share of the branch at or above, label).
BANDS: tuple[tuple[float, str], ...] = ((0.10, "前10%"), (0.25, "前25%"), (0.50, "前50%"))
OTHER_BAND = "其余"


def mask_name(name: str, mask: NameMask) -> str:
    """A name as a public screen shows it: 张三明 → 张*明 (mask_middle) or 张** (surname_only)."""
    name = name.strip()
    if mask == "full" or len(name) <= 1:
        return name
    if mask == "surname_only" or len(name) == 2:
        return name[0] + "*" * (len(name) - 1)
    return name[0] + "*" * (len(name) - 2) + name[-1]


def rank_band(rank: int, members: int) -> str:
    """The band a rank falls in among `members` (rank 1 is the best; ties share a rank)."""
    if members <= 0 or rank <= 0:
        return OTHER_BAND
    share = rank / members
    for limit, label in BANDS:
        if share <= limit:
            return label
    return OTHER_BAND


def branch_of(path_to_root: Sequence[int]) -> int:
    """A member's branch (支部): the unit just below the top of their path, else the top itself.

    The organisation is 党委 → 支部 → 党小组 …; a one-level organisation is its own branch.
    """
    if not path_to_root:
        raise ValueError("an org unit path is never empty")
    return path_to_root[-2] if len(path_to_root) >= 2 else path_to_root[-1]
