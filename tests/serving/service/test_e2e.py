"""End to end through the real service process: ``phemex-rl serve`` runs ``bentoml serve``
on the exported agent in paper mode, which starts the loopback exchange and trades it; the
test reads it over HTTP like an operator (health, metrics, events, the policy) and the
command ends by itself after ``--max-bars`` bars."""

from __future__ import annotations

import http.client
import json
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.serving.service.conftest import REPO, free_port, service_env, wait_for

pytestmark = pytest.mark.slow

TOKEN = "e2e-control-token-0123456789abcdefgh"
MAX_BARS = 100
"""Long enough (50 s at 600x) for every check to run while the loop trades."""


def _lines(process: subprocess.Popen) -> queue.Queue:
    out: queue.Queue = queue.Queue()

    def pump():
        for line in process.stdout:
            out.put(line)
        out.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return out


def _read_events(url: str, n: int, last_event_id: str | None, timeout: float = 60.0) -> list:
    """The first ``n`` server-sent events (id, kind, data) after ``last_event_id``."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    request = urllib.request.Request(f"{url}/events", headers=headers)
    events, current = [], {}
    deadline = time.monotonic() + timeout
    with urllib.request.urlopen(request, timeout=timeout) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for raw in response:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("id:"):
                current["id"] = int(line[3:].strip())
            elif line.startswith("event:"):
                current["kind"] = line[6:].strip()
            elif line.startswith("data:"):
                current["data"] = json.loads(line[5:].strip())
            elif not line and "id" in current:
                events.append(current)
                current = {}
                if len(events) >= n:
                    break
            if time.monotonic() > deadline:
                break
    return events


def _flood_event_streams(port: int) -> None:
    """Event streams are capped: one more than the cap gets 503, and closing frees them."""
    from serving.service.api import MAX_EVENT_STREAMS

    held = []
    try:
        for _ in range(MAX_EVENT_STREAMS):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/events")
            response = conn.getresponse()
            assert response.status == 200
            response.fp.readline()  # the stream has started: it counts
            held.append(conn)
        extra = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        extra.request("GET", "/events")
        response = extra.getresponse()
        assert response.status == 503 and b"event streams are open" in response.read()
        extra.close()
    finally:
        for conn in held:
            conn.close()
    deadline = time.monotonic() + 30  # the server notices the closed streams
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/events")
        status = conn.getresponse().status
        conn.close()
        if status == 200:
            return
        time.sleep(0.5)
    raise AssertionError("closed event streams were never released")


def _post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_serve_trades_the_agent_on_the_loopback_exchange_end_to_end(
    exported_agent, loaded_agent, tmp_path
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = service_env(exported_agent, PHEMEX_RL_CONTROL_TOKEN=TOKEN)
    command = [
        sys.executable, "-m", "serving.cli", "serve",
        f"agent={exported_agent.tag}", f"state_dir={tmp_path / 'state'}",
        "risk.max_orders_per_minute=1000",
        "--speed", "600", "--port", str(port), "--max-bars", str(MAX_BARS),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    lines = _lines(process)
    try:
        printed = []
        deadline = time.monotonic() + 120
        while not any("Ctrl-C to stop" in line for line in printed):
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            assert line is not None, "".join(printed)
            printed.append(line)
        banner = "".join(printed)
        assert f"{url}/status" in banner and f"{url}/events" in banner and "600x" in banner

        wait_for(f"{url}/readyz", timeout=60, process=process)  # reconciled, bars fresh
        with urllib.request.urlopen(f"{url}/livez", timeout=5) as response:
            assert response.status == 200

        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert "bentoml_service_request_total" in metrics  # BentoML's own
        assert "phemex_rl_trader_loop_latency_seconds_bucket" in metrics  # the Trader's
        assert "phemex_rl_trader_bars_total" in metrics

        first = _read_events(url, 6, "0")
        ids = [e["id"] for e in first]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert {e["kind"] for e in first} <= {"bar", "decision", "order", "fill", "risk", "status"}
        resumed = _read_events(url, 3, str(ids[2]))
        assert [e["id"] for e in resumed] == ids[3:6]  # resumes right after Last-Event-ID
        _flood_event_streams(port)
        bad = urllib.request.Request(f"{url}/events", headers={"Last-Event-ID": "abc"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=5)
        assert err.value.code == 400

        size = loaded_agent.observation_space.shape[0]
        obs = [0.01 * i for i in range(size)]
        answer = _post_json(f"{url}/act", {"observation": obs})
        expected = int(
            loaded_agent.model.predict(np.asarray(obs, np.float32), deterministic=True)[0]
        )
        assert answer["action"] == expected and answer["model"] == exported_agent.tag
        with pytest.raises(urllib.error.HTTPError) as err:
            _post_json(f"{url}/act", {"observation": obs[:5]})
        assert err.value.code == 422
        assert f"observation has 5 values; {exported_agent.tag} expects {size}" in (
            err.value.read().decode()
        )

        unauthorised = urllib.request.Request(f"{url}/control/kill", method="POST", data=b"")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(unauthorised, timeout=5)
        assert err.value.code == 401

        assert process.wait(timeout=120) == 0  # ends by itself after MAX_BARS bars
        rest = []
        while (line := lines.get(timeout=5)) is not None:
            rest.append(line)
        assert f"stopped after {MAX_BARS} bars" in "".join(rest)
        # BentoML's access log (on stdout) shows the API calls, not the polled endpoints
        logged = "".join(printed + rest)
        assert "path=/act," in logged
        for path in ("/status", "/livez", "/readyz", "/metrics"):
            assert f"path={path}," not in logged, path
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)
    with pytest.raises(OSError):  # nothing left listening
        urllib.request.urlopen(f"{url}/livez", timeout=2)
