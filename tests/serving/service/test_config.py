"""The serving configs: one file per mode, typed, typos named; secrets never in them."""

from __future__ import annotations

import json

import pytest

from serving.service.config import (
    CONF_DIR,
    Mode,
    compose_serving,
    config_hash,
    journal_url,
    overrides_from_env,
)


@pytest.mark.parametrize("mode", ["paper", "testnet", "live"])
def test_every_mode_has_a_config_that_says_its_mode(mode):
    cfg = compose_serving([f"mode={mode}"])
    assert cfg.mode == Mode(mode)
    assert cfg.server.host == "127.0.0.1"  # bound to loopback unless told otherwise
    assert list(cfg.server.cors_origins) == []  # CORS closed unless configured


def test_paper_is_the_default_and_live_is_unconfirmed_and_tighter():
    paper, live = compose_serving([]), compose_serving(["mode=live"])
    assert paper.mode == Mode.paper and paper.exchange.url is None
    assert live.live_confirmed is False
    assert live.risk.max_leverage < paper.risk.max_leverage
    assert live.risk.max_position_notional < paper.risk.max_position_notional


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("risk.max_levrage=2", "max_levrage"),
        ("agnt=phemex-ppo", "agnt"),
        ("server.port=many", "many"),
        ("exchange.speed=fast", "fast"),
        ("max_bars=ten", "ten"),
    ],
)
def test_a_typo_or_a_wrong_type_fails_naming_it(override, named):
    with pytest.raises(ValueError, match=named):
        compose_serving([override])


def test_an_unknown_mode_is_named_with_the_choices():
    with pytest.raises(ValueError, match=r"mode='prod' is not one of paper, testnet, live"):
        compose_serving(["mode=prod"])


def test_no_config_file_holds_a_secret():
    for path in sorted((CONF_DIR / "serving").glob("*.yaml")):
        text = path.read_text().lower()
        for word in ("api_key:", "secret:", "token:", "password"):
            assert word not in text, f"{path.name} holds {word!r}"


def test_the_config_hash_follows_the_settings():
    a, b = compose_serving([]), compose_serving(["risk.max_leverage=2"])
    assert config_hash(a) == config_hash(compose_serving([]))
    assert config_hash(a) != config_hash(b)


def test_the_journal_defaults_to_sqlite_in_the_state_dir(tmp_path):
    cfg = compose_serving([f"state_dir={tmp_path}"])
    assert journal_url(cfg) == f"sqlite:///{tmp_path}/journal.sqlite"
    url = "postgresql+psycopg://trader:pw@db:5432/journal"
    assert journal_url(compose_serving([f"journal_url='{url}'"])) == url


def test_overrides_from_the_environment(monkeypatch):
    monkeypatch.setenv("PHEMEX_RL_SERVE_OVERRIDES", json.dumps(["mode=testnet", "agent=x:1"]))
    assert overrides_from_env() == ["mode=testnet", "agent=x:1"]
    monkeypatch.setenv("PHEMEX_RL_SERVE_OVERRIDES", "mode=testnet")
    with pytest.raises(ValueError, match="not JSON"):
        overrides_from_env()
    monkeypatch.setenv("PHEMEX_RL_SERVE_OVERRIDES", '{"mode": "testnet"}')
    with pytest.raises(ValueError, match="list of strings"):
        overrides_from_env()
