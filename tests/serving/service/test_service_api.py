"""The monitoring and control API on a real trading loop: the service's runtime trading the
exported agent on the loopback exchange it starts itself (accelerated paper replay)."""

from __future__ import annotations

import os
import time

import pytest
from fastapi.testclient import TestClient

from serving.service.api import create_app
from serving.service.config import compose_serving
from serving.service.runtime import ServiceRuntime

pytestmark = pytest.mark.slow

TOKEN = "test-control-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _wait(predicate, client, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get("/status").json()
        if predicate(status):
            return status
        time.sleep(0.2)
    raise TimeoutError(f"status never matched: {status}")


@pytest.fixture(scope="module")
def service(exported_agent, tmp_path_factory):
    os.environ["PHEMEX_RL_CONTROL_TOKEN"] = TOKEN
    try:
        state = tmp_path_factory.mktemp("service-state")
        cfg = compose_serving(
            [
                f"agent={exported_agent.tag}",
                f"state_dir={state}",
                "exchange.speed=1200",  # a 5m bar every 0.25 s
                "risk.max_orders_per_minute=1000",
                "risk.cooldown_bars=0",
            ]
        )
        runtime = ServiceRuntime(cfg)
    finally:
        del os.environ["PHEMEX_RL_CONTROL_TOKEN"]
    app = create_app(lambda: runtime, max_body_bytes=65536)
    with TestClient(app) as client:
        _wait(lambda s: s.get("bars_seen", 0) >= 3 and s.get("state") == "running", client)
        yield client, runtime


def test_the_loop_trades_and_every_view_answers(service):
    client, runtime = service
    status = client.get("/status").json()
    assert status["mode"] == "paper" and status["model_tag"] == runtime.agent.tag
    assert status["reconciled"] is True and status["exchange_url"].startswith("http://127.0.0.1:")
    assert runtime.ready() == (True, "")
    decisions = client.get("/decisions", params={"limit": 5}).json()
    assert decisions, "no decision journaled"
    bar_ms = decisions[0]["bar_ms"]
    entry = client.get(f"/decisions/{bar_ms}").json()
    assert entry["bar_ms"] == bar_ms and entry["model_tag"] == runtime.agent.tag
    assert client.get("/decisions/1").status_code == 404
    assert isinstance(client.get("/orders").json(), list)
    assert isinstance(client.get("/fills").json(), list)
    assert client.get("/equity").json()
    assert client.get("/bars", params={"limit": 3}).json()
    assert client.get("/positions").json()["symbol"] == "BTC/USDT:USDT"
    assert "limits" in client.get("/risk").json()
    assert "threshold" in client.get("/drift").json()
    assert client.get("/fills", params={"limit": 0}).status_code == 422
    assert client.get("/decisions", params={"before_ms": "yesterday"}).status_code == 422


def test_config_is_shown_with_every_secret_redacted(service):
    client, runtime = service
    response = client.get("/config")
    assert response.status_code == 200
    text = response.text
    assert TOKEN not in text and "paper-secret" not in text
    doc = response.json()
    assert doc["config_hash"] == runtime.config_hash
    assert doc["serving"]["mode"] == "paper"
    assert doc["trader"]["trader"]["config_hash"] == runtime.config_hash


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
        ({"Authorization": "Bearer"}, 401),
        ({"Authorization": "Bearer wrong-token"}, 403),
        ({"Authorization": f"Bearer {TOKEN}x"}, 403),
        ({"Authorization": f"Bearer {TOKEN[:-1]}"}, 403),
    ],
)
def test_control_needs_the_bearer_token(service, headers, status):
    client, _ = service
    for action in ("pause", "resume", "kill"):
        response = client.post(f"/control/{action}", headers=headers)
        assert response.status_code == status, (action, response.text)
    assert client.get("/status").json()["state"] == "running"  # nothing happened


def test_pause_resume_and_kill(service):
    client, _ = service
    paused = client.post("/control/pause", headers=AUTH, json={"reason": "lunch"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "paused" and paused.json()["reason"] == "lunch"
    again = client.post("/control/pause", headers=AUTH)
    assert again.status_code == 409  # the trader refuses: it is not running
    assert client.post("/control/pause", headers=AUTH, json={"reason": 5}).status_code == 422
    assert client.post("/control/pause", headers=AUTH, json={"why": "x"}).status_code == 422
    resumed = client.post("/control/resume", headers=AUTH)
    assert resumed.status_code == 200 and resumed.json()["state"] == "running"
    killed = client.post("/control/kill", headers=AUTH, json={"reason": "drill"})
    assert killed.status_code == 200 and killed.json()["state"] == "killed"
    assert client.get("/orders").json() == []
    risk_kinds = [e.get("kind") for e in client.get("/risk").json()["events"]]
    assert "kill" in risk_kinds and "pause" in risk_kinds
    resumed = client.post("/control/resume", headers=AUTH)
    assert resumed.status_code == 200 and resumed.json()["state"] == "running"


def test_a_kill_the_exchange_cannot_flatten_now_still_halts_and_says_so(service):
    client, runtime = service
    faults = runtime.exchange.faults
    faults.error_5xx_rate = 1.0  # an outage: every request answered 503
    try:
        killed = client.post("/control/kill", headers=AUTH, json={"reason": "outage drill"})
    finally:
        faults.error_5xx_rate = 0.0
    assert killed.status_code == 200, killed.text
    body = killed.json()
    assert body["state"] == "killed" and body["flatten_pending"] is True
    assert "flatten failed" in body["flatten_detail"] and "503" in body["flatten_detail"]
    # the exchange is back: a later bar completes the flatten; it stays halted
    status = _wait(lambda s: not s["flatten_pending"], client)
    assert status["state"] == "killed" and status["position"] == 0
    assert "flatten_failed" in [e.get("kind") for e in client.get("/risk").json()["events"]]
    assert client.post("/control/resume", headers=AUTH).status_code == 200


def test_without_a_token_control_is_disabled_not_open(exported_agent, monkeypatch):
    monkeypatch.delenv("PHEMEX_RL_CONTROL_TOKEN", raising=False)
    runtime = ServiceRuntime(compose_serving([f"agent={exported_agent.tag}"]))
    app = create_app(lambda: runtime, max_body_bytes=65536, manage_runtime=False)
    with TestClient(app) as client:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
            response = client.post("/control/kill", headers=headers)
            assert response.status_code == 403 and "disabled" in response.text


def test_cors_is_closed_unless_configured(service, exported_agent):
    client, _ = service
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    response = client.options("/control/kill", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    response = client.get("/status", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers
    runtime = ServiceRuntime(compose_serving([f"agent={exported_agent.tag}"]))
    app = create_app(
        lambda: runtime,
        max_body_bytes=65536,
        cors_origins=["http://localhost:5173"],
        manage_runtime=False,
    )
    with TestClient(app) as open_client:
        ok = open_client.get("/status", headers={"Origin": "http://localhost:5173"})
        assert ok.headers["access-control-allow-origin"] == "http://localhost:5173"
        other = open_client.get("/status", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_a_second_instance_on_the_same_account_refuses_and_names_the_holder(service):
    client, first = service
    holder = first.trader.status()["lease_holder"]
    cfg = compose_serving(
        [
            f"agent={first.agent.tag}",
            f"state_dir={first.cfg.state_dir}",  # the same journal, the same account
            f"exchange.url={first.exchange_url}",
            "exchange.speed=1200",
        ]
    )
    second = ServiceRuntime(cfg)
    app = create_app(lambda: second, max_body_bytes=65536)
    with TestClient(app) as other:
        status = _wait(lambda s: not s.get("loop_running", True), other, timeout=60)
        assert status["state"] == "refused" and holder in status["reason"]
        assert second.ready()[0] is False and second.live() is True  # up, showing why
        assert other.get("/orders").status_code == 200  # the journal is still readable
    assert client.get("/status").json()["state"] == "running"  # the first one trades on
