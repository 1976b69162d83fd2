"""Kiosk display rules: masked names, rank bands, which unit is a member's branch."""

import pytest

from server.kiosk.names import branch_of, mask_name, rank_band


@pytest.mark.parametrize(
    ("name", "mask", "shown"),
    [
        ("张三明", "mask_middle", "张*明"),
        ("欧阳小明", "mask_middle", "欧**明"),
        ("张三", "mask_middle", "张*"),
        ("李", "mask_middle", "李"),
        ("张三明", "surname_only", "张**"),
        ("张三明", "full", "张三明"),
        (" 王五 ", "mask_middle", "王*"),
    ],
)
def test_mask_name(name: str, mask: str, shown: str) -> None:
    assert mask_name(name, mask) == shown  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rank", "members", "band"),
    [
        (1, 10, "前10%"),
        (2, 10, "前25%"),
        (3, 10, "前50%"),
        (5, 10, "前50%"),
        (6, 10, "其余"),
        (1, 1, "其余"),
        (1, 100, "前10%"),
        (0, 0, "其余"),
    ],
)
def test_rank_band(rank: int, members: int, band: str) -> None:
    assert rank_band(rank, members) == band


def test_branch_of_is_the_unit_below_the_top() -> None:
    assert branch_of((30, 20, 10)) == 20  # 党小组 → 支部 → 党委
    assert branch_of((20, 10)) == 20
    assert branch_of((10,)) == 10
