"""``phemex-rl journal``: lists and explains the decisions a trader journaled."""

from __future__ import annotations

import json
import time

from serving.cli import main

from .conftest import LONG, SHORT, run_stepped, scripted, trader_settings


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + " UTC"


async def test_journal_lists_and_explains_decisions(venue, agent, sample_5m, tmp_path, capsys):
    settings = trader_settings(tmp_path, max_bars=4)
    trader = await run_stepped(venue, scripted(agent, [LONG, SHORT] * 2), settings, 4, sample_5m)
    trader.close()
    path = str(tmp_path / "journal.sqlite")
    times = sample_5m.timestamp[venue.start : venue.start + 4].tolist()

    assert main(["journal", "list", "--journal", path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].startswith(iso(times[-1]))  # newest first
    assert all(" ok " in line and "orders prl" in line for line in lines)

    assert main(["journal", "show", iso(times[1])[:16].replace(" ", "T"), "--journal", path]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"bar {iso(times[1])}")
    assert "action [0] -> target exposure -1.000" in text  # SHORT
    assert "risk verdict: ok" in text and "order: prl" in text and "fill:  " in text
    assert f"model {agent.tag}" in text and f"config {settings.config_hash}" in text

    assert main(["journal", "show", str(times[0]), "--journal", path, "--json"]) == 0
    entry = json.loads(capsys.readouterr().out)
    assert entry["bar_ms"] == times[0] and entry["action"] == [LONG] and entry["target"] == 1.0
    assert entry["order_rows"][0]["side"] == "buy" and entry["fills"][0]["side"] == "buy"
    assert set(entry["features"]) == set(agent.pipeline.columns)

    for view in ("orders", "fills", "risk", "reconciliations"):
        assert main(["journal", view, "--journal", path]) == 0
    out = capsys.readouterr().out
    assert "rebalance" in out and "trade" in out and "ok" in out


def test_journal_errors_name_the_problem(tmp_path, capsys):
    assert main(["journal", "list", "--journal", str(tmp_path / "missing.sqlite")]) == 1
    assert "no journal at" in capsys.readouterr().err
    from serving.trader.journal import Journal

    url = f"sqlite:///{tmp_path / 'two.sqlite'}"
    journal = Journal(url)
    journal.add_event("alpha", "status", 1, {})
    journal.add_event("beta", "status", 1, {})
    assert main(["journal", "list", "--journal", url]) == 1
    assert "['alpha', 'beta']" in capsys.readouterr().err
    assert main(["journal", "list", "--journal", url, "--account", "gamma"]) == 1
    assert "not in the journal" in capsys.readouterr().err
    assert main(["journal", "show", "yesterday", "--journal", url, "--account", "alpha"]) == 1
    assert "neither ms" in capsys.readouterr().err
