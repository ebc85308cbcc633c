"""The monitoring page in a real browser (Debian's Chromium through Playwright) against the
real trading service trading a tiny agent on the loopback paper exchange.

The tests share one service and run in file order: the page loads and draws, follows the
live stream, explains a fill, refuses a wrong token, kills with the right one, and rides out
a restart of the service.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from tests.frontend.conftest import CONTROL_TOKEN, ConsoleLog, get_json

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]

WAIT_MS = 180_000
"""Longest wait for something the trading loop must do (a bar, a fill) on a loaded machine."""


@pytest.fixture(scope="module")
def page(browser, service):
    """One tab on the page, kept across the tests (the stream stays open)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1400}, color_scheme="light")
    tab = context.new_page()
    console = ConsoleLog(tab)
    tab.goto(service.url + "/")
    tab.wait_for_function("window.__monitor && window.__monitor.candleCount() > 0", timeout=WAIT_MS)
    yield tab, console
    context.close()


def monitor(tab, expression: str):
    return tab.evaluate(f"(() => {{ const m = window.__monitor; return {expression}; }})()")


def coloured_pixels(png: bytes, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    """Pixels of a PNG within ``tolerance`` of ``rgb`` (each channel)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    r0, g0, b0 = rgb
    return sum(
        1
        for r, g, b in image.get_flattened_data()
        if abs(r - r0) <= tolerance and abs(g - g0) <= tolerance and abs(b - b0) <= tolerance
    )


def css_rgb(tab, variable: str) -> tuple[int, int, int]:
    value = tab.evaluate(
        f"getComputedStyle(document.documentElement).getPropertyValue('{variable}').trim()"
    )
    value = value.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def test_page_loads_without_errors_and_draws_candles_and_fill_markers(page, service):
    tab, console = page
    status = service.status()
    assert tab.inner_text("#mode").strip().lower() == status["mode"] == "paper"
    assert tab.inner_text("#model") == status["model_tag"]
    assert tab.inner_text("#config-hash") == status["config_hash"]
    # every bar the page holds is a candle on the chart
    tab.wait_for_function(
        "window.__monitor.candleCount() === window.__monitor.model.bars.length", timeout=WAIT_MS
    )
    # the agent trades: a fill marker appears on the chart (an arrow on the bar it executed in)
    tab.wait_for_function(
        "window.__monitor.markerIds().some(id => id.startsWith('f:'))", timeout=WAIT_MS
    )
    bars = get_json(f"{service.url}/bars?limit=5")
    candles = monitor(tab, "m.model.bars.map(b => b.bar_ms)")
    assert set(b["bar_ms"] for b in bars[:-1]) <= set(candles)  # the page has the service's bars
    # the canvas really shows up and down candles in the theme's colours
    shot = tab.locator("#price-chart").screenshot()
    assert coloured_pixels(shot, css_rgb(tab, "--up")) > 50
    assert coloured_pixels(shot, css_rgb(tab, "--down")) > 50
    assert tab.get_attribute("#link", "data-state") == "live"
    assert console.errors == []


def test_a_new_bar_and_a_fill_appear_live(page, service):
    tab, console = page
    tab.evaluate("window.__notReloaded = true")
    last_bar = monitor(tab, "m.model.bars[m.model.bars.length - 1].bar_ms")
    fills = monitor(tab, "m.model.fills.size")
    tab.wait_for_function(
        f"window.__monitor.model.bars[window.__monitor.model.bars.length - 1].bar_ms > {last_bar}",
        timeout=WAIT_MS,
    )
    tab.wait_for_function(f"window.__monitor.model.fills.size > {fills}", timeout=WAIT_MS)
    newest = monitor(tab, "m.model.latestFills(1)[0].exec_id")
    tab.wait_for_selector(f'#fills tr[data-fill="{newest}"]', timeout=10_000)
    assert tab.evaluate("window.__notReloaded") is True  # live, not a reload
    # the fill came through the stream exactly once, as the service journaled it
    served = {f["exec_id"]: f for f in get_json(f"{service.url}/fills?limit=1000")}
    page_fills = monitor(tab, "[...m.model.fills.values()]")
    assert {f["exec_id"] for f in page_fills} <= set(served)
    assert len(page_fills) == len({f["exec_id"] for f in page_fills})
    assert monitor(tab, "m.model.lastEventId") > 0
    assert console.errors == []


def test_clicking_a_fill_on_the_chart_shows_its_decision(page, service):
    tab, console = page
    fill_id = monitor(tab, "m.markerIds().filter(id => id.startsWith('f:')).pop()")
    exec_id = fill_id[2:]
    fill = monitor(tab, f"m.model.fills.get({exec_id!r})")
    point = monitor(tab, f"m.markerPoint({fill_id!r})")
    assert point is not None, "the fill marker is not on the chart"
    tab.locator("#price-chart").click(position={"x": point["x"], "y": point["y"]})
    dialog = tab.locator("#journal")
    dialog.wait_for(state="visible", timeout=10_000)
    # the journal entry of the bar whose decision placed the order that filled
    tab.wait_for_function(
        "!document.getElementById('journal-body').innerText.includes('loading')", timeout=30_000
    )
    body = tab.inner_text("#journal-body")
    assert fill["client_id"] and fill["client_id"] in body
    order_bar = next(
        d["bar_ms"]
        for d in get_json(f"{service.url}/decisions?limit=1000")
        if fill["client_id"] in (d.get("orders") or [])
    )
    entry = get_json(f"{service.url}/decisions/{order_bar}")
    assert entry["verdict"] in body and "Features the agent saw" in body
    assert time.strftime("%Y-%m-%d %H:%M", time.gmtime(order_bar / 1000)) in tab.inner_text(
        "#journal-title"
    )
    tab.click("#journal-close")
    assert console.errors == []
    target = os.environ.get("PHEMEX_RL_PAGE_SCREENSHOT")
    if target:  # docs/monitoring-page.png is made this way (see docs/monitoring.md)
        tab.screenshot(path=target, full_page=True)


def _kill_from_the_page(tab, token: str) -> str:
    tab.evaluate("document.getElementById('control-result').textContent = ''")  # a fresh answer
    tab.fill("#token", token)
    tab.click("#btn-kill")
    tab.locator("#kill-dialog").wait_for(state="visible")
    tab.click("#kill-confirm")
    tab.wait_for_function(
        "!['', 'kill: sending…'].includes(document.getElementById('control-result').innerText)",
        timeout=90_000,
    )
    return tab.inner_text("#control-result")


def test_the_kill_switch_with_a_wrong_token_does_nothing(page, service):
    tab, console = page
    result = _kill_from_the_page(tab, "not-the-token")
    assert "wrong control token" in result
    assert tab.get_attribute("#token", "aria-invalid") == "true"
    assert service.status()["state"] == "running"
    # the browser logs the refused request itself; nothing else went wrong
    assert console.errors == [
        "console.error: Failed to load resource: the server responded with a status of 403 "
        "(Forbidden)"
    ]
    console.errors.clear()


def test_the_kill_switch_with_the_right_token_halts_and_flattens(page, service):
    tab, console = page
    service.wait_until(lambda s: s.get("position"), "a position to flatten")
    result = _kill_from_the_page(tab, CONTROL_TOKEN)
    # halted at once; flat at once, or (the exchange busy, say rate limited) at a later bar
    assert result == "kill: done" or result.startswith(
        "kill: trading halted; the position is not flat yet"
    ), f"{result}\n{service.tail(40)}"
    assert service.status()["state"] == "killed"
    # the reduce-only market order fills at the paper exchange's next price: wait for it
    deadline = time.monotonic() + 120
    while get_json(f"{service.url}/positions")["qty"] != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert get_json(f"{service.url}/positions")["qty"] == 0
    assert get_json(f"{service.url}/orders") == []
    assert service.status()["state"] == "killed"  # and it stays halted
    tab.wait_for_function(
        "document.getElementById('banner').dataset.health === 'killed'", timeout=30_000
    )
    tab.wait_for_function(
        "document.querySelector('[data-field=\"Side\"]').innerText === 'flat'", timeout=30_000
    )
    assert tab.evaluate("sessionStorage.getItem('phemex-rl.control-token')") == CONTROL_TOKEN
    assert tab.evaluate("localStorage.length") == 0  # the token is kept for the tab only
    assert console.errors == []


def test_disconnected_while_the_service_is_down_and_caught_up_when_back(page, service):
    tab, _ = page
    before = monitor(tab, "m.model.lastEventId")
    service.stop()
    tab.wait_for_function(
        "document.getElementById('banner').dataset.health === 'down'", timeout=60_000
    )
    assert tab.get_attribute("#link", "data-state") in ("reconnecting", "down")
    assert "unreachable" in tab.inner_text("#banner").lower()
    # back without a control token: the page says control is disabled
    service.start(token=None)
    service.wait_until(lambda s: s.get("reconciled"), "the restarted service reconciled")
    tab.wait_for_function(
        "document.getElementById('link').dataset.state === 'live' && "
        "document.getElementById('banner').dataset.health !== 'down'",
        timeout=120_000,
    )
    assert tab.is_visible("#control-disabled")
    assert tab.is_disabled("#btn-kill")
    # caught up: every event journaled while away arrived, none twice
    events = monitor(tab, "m.model.lastEventId")
    assert events >= before
    risk = get_json(f"{service.url}/risk")["events"]
    page_risk = monitor(tab, "[...m.model.riskEvents.keys()]")
    assert {e["id"] for e in risk if e["id"] <= events} <= set(page_risk)
    decisions = get_json(f"{service.url}/decisions?limit=50")
    page_decisions = set(monitor(tab, "[...m.model.decisions.keys()]"))
    known = [
        d["bar_ms"] for d in decisions if d["bar_ms"] <= monitor(tab, "m.model.bars.at(-1).bar_ms")
    ]
    assert set(known) <= page_decisions
    bars = monitor(tab, "m.model.bars.map(b => b.bar_ms)")
    assert bars == sorted(set(bars))


def test_phone_width_and_dark_theme(browser, service, tmp_path: Path):
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, color_scheme="dark", is_mobile=True
    )
    tab = context.new_page()
    console = ConsoleLog(tab)
    tab.goto(service.url + "/")
    tab.wait_for_function("window.__monitor.candleCount() > 0", timeout=WAIT_MS)
    # nothing wider than the screen: no sideways scrolling of the page itself
    assert tab.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    background = tab.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    red, green, blue = (int(c) for c in background[background.index("(") + 1 : -1].split(",")[:3])
    assert red + green + blue < 150, f"dark scheme, yet the page background is {background}"
    text = tab.evaluate("getComputedStyle(document.documentElement).color")
    assert sum(int(c) for c in text[text.index("(") + 1 : -1].split(",")[:3]) > 500
    assert console.errors == []
    context.close()
