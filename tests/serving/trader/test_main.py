"""``python -m serving.trader``: the settings file is checked before anything is loaded."""

from __future__ import annotations

import json

import pytest

from serving.trader.__main__ import main


def write(tmp_path, doc) -> str:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_testnet_without_keys_refuses_naming_them(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("PHEMEX_API_KEY", raising=False)
    monkeypatch.setenv("PHEMEX_API_SECRET", "s")
    path = write(tmp_path, {"agent": "nothing-loaded", "trader": {"mode": "testnet"}})
    assert main([path]) == 2
    assert "mode=testnet needs exchange API keys: PHEMEX_API_KEY is missing" in caplog.text


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"agent": "a", "trader": {"mode": "paper", "acount": "x"}},
            "unknown trader setting(s) ['acount']",
        ),
        (
            {"agent": "a", "trader": {"risk": {"max_drawdown": 2}}},
            "risk.max_drawdown must be a fraction",
        ),
        ({"agent": "a", "base": "http://x"}, "unknown key(s) ['base']"),
        ({"agent": "a", "secret": "s", "trader": {"mode": "live"}}, "never from a file"),
        ({"agent": "a", "trader": {"mode": "real"}}, "mode must be one of"),
    ],
)
def test_a_bad_settings_file_is_an_error_naming_the_key(tmp_path, capsys, doc, message):
    assert main([write(tmp_path, doc)]) == 1
    assert message in capsys.readouterr().err
