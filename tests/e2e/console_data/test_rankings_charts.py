"""The rankings page in Chromium: ECharts, served from /static, draws the trend and the branches."""

from typing import Any

import pytest

from tests.e2e.console_data.conftest import Console

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_charts_draw_from_the_scoped_data(scored_page: Any, scored_console: Console) -> None:
    # The package's server with the March scores (conftest.seed_scores): E1 +3, E2 +2, E3 absent.
    page, console = scored_page, scored_console
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{console.base_url}/admin/rankings?unit=C&month=2025-03")

    page.wait_for_selector("#trend-chart[data-ready='1'] canvas")
    page.wait_for_selector("#branch-chart[data-ready='1'] canvas")
    assert page.evaluate("typeof echarts") == "object"
    series = page.evaluate(
        "echarts.getInstanceByDom(document.getElementById('branch-chart'))"
        ".getOption().xAxis[0].data"
    )
    # In benchmark order: the second branch attended fully, the first only half.
    assert series == ["第二党支部", "第一党支部"]
    assert "张三" in page.inner_text("[data-test=star]")
    assert errors == []
