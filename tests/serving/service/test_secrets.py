"""Keys and the control token: only from the environment or a secret directory, named when
missing, never shown."""

from __future__ import annotations

import pytest

from serving.service.config import compose_serving
from serving.service.runtime import preflight
from serving.service.secrets import StartRefused, control_token, redact, redact_url
from serving.trader.client import MissingCredentials, exchange_credentials

KEY, SECRET, TOKEN = "PHEMEX_API_KEY", "PHEMEX_API_SECRET", "PHEMEX_RL_CONTROL_TOKEN"


@pytest.fixture(autouse=True)
def _no_secrets_in_the_environment(monkeypatch):
    for name in (KEY, SECRET, TOKEN):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("mode", ["testnet", "live"])
def test_testnet_and_live_refuse_without_keys_naming_both(mode):
    with pytest.raises(MissingCredentials, match=f"{KEY} and {SECRET} are missing"):
        exchange_credentials(mode, None)


def test_a_single_missing_key_is_named(monkeypatch):
    monkeypatch.setenv(KEY, "abc")
    with pytest.raises(MissingCredentials, match=f"{SECRET} is missing") as err:
        exchange_credentials("testnet", None)
    assert "abc" not in str(err.value)


def test_keys_come_from_a_mounted_secret_directory(tmp_path, monkeypatch):
    (tmp_path / KEY).write_text("file-key\n")
    (tmp_path / SECRET).write_text("file-secret\n")
    creds = exchange_credentials("live", tmp_path)
    assert (creds.api_key, creds.secret) == ("file-key", "file-secret")
    assert "file-key" not in repr(creds) and "file-secret" not in repr(creds)
    monkeypatch.setenv(KEY, "env-key")  # the environment wins
    assert exchange_credentials("live", tmp_path).api_key == "env-key"


def test_live_needs_the_confirmation_setting(monkeypatch):
    monkeypatch.setenv(KEY, "k")
    monkeypatch.setenv(SECRET, "s")
    with pytest.raises(StartRefused, match="live_confirmed=true"):
        preflight(compose_serving(["mode=live"]))
    checks = preflight(compose_serving(["mode=live", "live_confirmed=true"]))
    assert checks.control_token is None  # no token: control disabled


def test_live_refuses_a_short_control_token(monkeypatch):
    monkeypatch.setenv(TOKEN, "x" * 31)
    with pytest.raises(StartRefused, match="31 characters; mode=live needs at least 32"):
        control_token("live", None, 32)
    assert control_token("paper", None, 32) == "x" * 31  # only live insists
    monkeypatch.setenv(TOKEN, "y" * 32)
    assert control_token("live", None, 32) == "y" * 32


def test_paper_without_keys_uses_the_loopback_account():
    checks = preflight(compose_serving([]))
    assert checks.credentials.api_key == "paper-key"


def test_redaction_hides_secret_fields_urls_and_loaded_values():
    doc = {
        "journal_url": "postgresql+psycopg://trader:hunter2@db/journal",
        "secrets_dir": "/run/secrets",
        "api_key": "AK",
        "nested": [{"password": "pw", "note": "uses tok-123 inside"}],
        "server": {"min_live_token_length": 32},
    }
    out = redact(doc, secrets=("tok-123",))
    assert out["journal_url"] == "postgresql+psycopg://trader:***@db/journal"
    assert out["secrets_dir"] == "/run/secrets"
    assert out["api_key"] == "***"
    assert out["nested"] == [{"password": "***", "note": "***"}]
    assert out["server"] == {"min_live_token_length": 32}
    assert redact_url("sqlite:///state/journal.sqlite") == "sqlite:///state/journal.sqlite"
