"""``POST /act``: the exported policy over HTTP, and every way a request can be wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.service.api import create_app
from serving.service.config import compose_serving
from serving.service.runtime import ServiceRuntime

MAX_BODY = 256 * 1024


@pytest.fixture(scope="module")
def runtime(exported_agent) -> ServiceRuntime:
    return ServiceRuntime(compose_serving([f"agent={exported_agent.tag}"]))


@pytest.fixture(scope="module")
def client(runtime):
    app = create_app(lambda: runtime, max_body_bytes=MAX_BODY, manage_runtime=False)
    with TestClient(app) as c:
        yield c


def _bars(market, stop: int, n: int) -> list[dict]:
    return [
        {
            "timestamp": int(market.timestamp[i]),
            "open": float(market.open[i]),
            "high": float(market.high[i]),
            "low": float(market.low[i]),
            "close": float(market.close[i]),
            "volume": float(market.volume[i]),
            "funding_rate": float(market.funding_rate[i]),
        }
        for i in range(stop - n, stop)
    ]


def test_act_answers_what_the_policy_itself_answers(client, loaded_agent):
    rng = np.random.default_rng(0)
    size = loaded_agent.observation_space.shape[0]
    batch = rng.normal(size=(16, size)).astype(np.float32)
    expected = [int(loaded_agent.model.predict(o, deterministic=True)[0]) for o in batch]
    one = client.post("/act", json={"observation": batch[0].tolist()})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["action"] == expected[0]
    # the agent is discrete with 3 levels: actions 0, 1, 2 are exposures -1, 0, 1
    assert body["target_exposure"] == [-1.0, 0.0, 1.0][expected[0]]
    assert body["model"] == loaded_agent.tag and body["observation_size"] == size
    many = client.post("/act", json={"observation": batch.tolist()}).json()
    assert many["action"] == expected
    assert many["target_exposure"] == [[-1.0, 0.0, 1.0][a] for a in expected]


def test_act_on_bars_sees_what_the_backtest_env_sees(client, loaded_agent, runtime, sample_5m):
    """The observation built from recent bars equals the replay env's at the same bar
    (flat account), so the API answers what the backtest would have done."""
    env = loaded_agent.make_env(sample_5m)
    t = 2000
    env_obs, _ = env.reset(options={"start": t})
    built = runtime.policy.observation_from_bars(
        [_bar_model(b) for b in _bars(sample_5m, t + 1, runtime.policy.min_bars)], _flat()
    )
    np.testing.assert_allclose(built, env_obs, rtol=0, atol=1e-4)
    response = client.post("/act", json={"bars": _bars(sample_5m, t + 1, runtime.policy.min_bars)})
    assert response.status_code == 200, response.text
    assert response.json()["action"] == int(
        loaded_agent.model.predict(env_obs, deterministic=True)[0]
    )


def _bar_model(bar):
    from serving.service.act import BarIn

    return BarIn(**bar)


def _flat():
    from serving.service.act import AccountIn

    return AccountIn()


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ({"observation": [0.0, 1.0]}, "observation has 2 values"),
        ({"observation": "NaN"}, "observation"),
        ({"observation": [[0.0]] * 2}, "observation has 1 values"),
        ({"observation": None, "bars": None}, "exactly one of 'observation' or 'bars'"),
        ({}, "exactly one of"),
        ({"obs": [1.0]}, "obs"),
        ({"observation": [True, False]}, "observation"),
        ({"observation": ["1.0", "2.0"]}, "observation"),
        ({"bars": [{"timestamp": 1, "open": 1.0}]}, "high"),
        ({"bars": []}, "got 0 bars"),
    ],
)
def test_wrong_requests_get_a_4xx_naming_the_problem(client, payload, named):
    response = client.post("/act", json=payload)
    assert response.status_code == 422, response.text
    assert named in response.text


def test_nan_and_infinity_are_refused_with_their_position(client, runtime):
    size = runtime.policy.obs_size
    values = ["0"] * size
    values[5] = "NaN"
    body = '{"observation": [' + ",".join(values) + "]}"
    response = client.post("/act", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "observation[5] is nan" in response.text
    values[5], values[7] = "0", "Infinity"
    body = '{"observation": [[' + ",".join(values) + "]]}"
    response = client.post("/act", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422 and "observation[0][7] is inf" in response.text


def test_bad_bars_are_named(client, runtime, sample_5m):
    bars = _bars(sample_5m, 2001, runtime.policy.min_bars)
    cases = [
        (lambda b: b[3].update(close=-1.0), "bars[3]: prices must be > 0"),
        (lambda b: b[4].update(timestamp=b[3]["timestamp"]), "bars[4].timestamp"),
        (lambda b: b[2].update(high=b[2]["low"] - 1), "bars[2]: high/low"),
    ]
    for spoil, named in cases:
        broken = json.loads(json.dumps(bars))
        spoil(broken)
        response = client.post("/act", json={"bars": broken})
        assert response.status_code == 422 and named in response.text, response.text
    short = client.post("/act", json={"bars": bars[-10:]})
    assert short.status_code == 422
    assert f"at least {runtime.policy.min_bars} closed bars" in short.text


def test_malformed_json_and_wrong_content_get_4xx(client):
    response = client.post(
        "/act", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    response = client.post(
        "/act", content=b"\xff\xfe\x00", headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500
    assert client.get("/act").status_code == 405


def test_oversize_bodies_are_refused_before_they_are_read(client):
    big = b'{"observation": [' + b"0," * MAX_BODY + b"0]}"
    response = client.post("/act", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert str(MAX_BODY) in response.text

    def chunks():  # no Content-Length: counted as it streams
        for _ in range(64):
            yield b"0," * 4096

    response = client.post("/act", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
