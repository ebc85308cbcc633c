"""The live environment: the same observations, rewards and account as the replay environment
when both see the same bars - on a live stream from the loopback exchange, and on a replay."""

from __future__ import annotations

import numpy as np
import pytest

from envs.client import make_phemex_client
from envs.config import EnvConfig
from envs.data.store import load_market_data, read_funding, sample_data_dir
from envs.features import FeaturePipeline
from envs.live_env import LiveTradingEnv
from envs.market import BTCUSDT
from envs.streams import ReplayBarStream
from envs.streams.live import CcxtBarStream
from envs.trading_env import PhemexTradingEnv
from serving.exchange.clock import ReplayClock
from serving.exchange.market import ReplayMarket
from serving.exchange.server import ExchangeServer
from serving.exchange.ws import WS_FEED

SYMBOL = "BTC/USDT:USDT"
START = 3000
ACTIONS = [2, 2, 1, 0, 0, 2]
CONFIG = EnvConfig(episode_length=None, leverage=3.0, window=16)


@pytest.fixture(scope="module")
def data():
    return load_market_data(SYMBOL, "5m")


@pytest.fixture(scope="module")
def replay_run(data):
    """Observations, rewards and infos of the replay env from bar START on."""
    env = PhemexTradingEnv(market=data, config=CONFIG)
    obs, info = env.reset(options={"start": START})
    run = [(obs, 0.0, info)]
    for action in ACTIONS:
        obs, reward, _, _, info = env.step(action)
        run.append((obs, reward, info))
    return run


def assert_same_run(live: list, replay: list) -> None:
    assert len(live) == len(replay)
    for (obs, reward, info), (r_obs, r_reward, r_info) in zip(live, replay, strict=True):
        # Features on the rolling buffer equal the full-history ones to float32 rounding.
        np.testing.assert_allclose(obs, r_obs, rtol=1e-6, atol=1e-6)
        assert reward == pytest.approx(r_reward, rel=1e-12, abs=1e-15)
        for key in ("equity", "position", "price", "time_ms", "fees_paid", "funding_paid"):
            assert info[key] == pytest.approx(r_info[key], rel=1e-12), key
        assert info["n_trades"] == r_info["n_trades"]


def run_live(env: LiveTradingEnv, before_step=lambda: None) -> list:
    obs, info = env.reset()
    run = [(obs, 0.0, info)]
    for action in ACTIONS:
        before_step()
        obs, reward, terminated, truncated, info = env.step(action)
        assert not (terminated or truncated)
        run.append((obs, reward, info))
    return run


def test_live_env_on_the_loopback_exchange_matches_the_replay_env(data, replay_run):
    funding = read_funding(sample_data_dir(), "binance_usdm", SYMBOL)
    tf = data.timeframe_ms
    clock = ReplayClock(int(data.timestamp[START]) + tf, tf)
    with ExchangeServer(ReplayMarket(data, funding, clock=clock)) as server:
        client = make_phemex_client(base_url=server.base_url, pro=True, rate_limit=False)
        # On this stepped clock a bar closes only when the test says so: a socket update
        # lost on the way would be recovered by the stream's REST backfill after 5 s of
        # quiet, as it would be live, instead of after a whole bar (300 s); a step that
        # still gets nothing fails in a minute instead of hanging. (One was lost once, to
        # the stream starting its wait a loop iteration late; see
        # test_an_update_handled_as_the_stream_starts_waiting_wakes_it.)
        stream = CcxtBarStream(client, SYMBOL, "5m", idle_timeout_s=5.0)
        env = LiveTradingEnv(stream, config=CONFIG, step_timeout_s=60.0)
        try:
            assert (
                env.observation_space
                == PhemexTradingEnv(market=data, config=CONFIG).observation_space
            )

            def close_next_bar() -> None:
                clock.step()
                server.app[WS_FEED].wake()

            live = run_live(env, close_next_bar)
            # The first bar after the history comes from REST (the stream backfills what
            # closed before it subscribed); every later one must come over the socket. A
            # lost socket update is recovered by REST and counted here.
            assert stream.stats.rest_bars == 1, stream.stats
            env.step_timeout_s = 0.3  # the clock stands still: no bar closes
            with pytest.raises(TimeoutError, match="0.3 s"):
                env.step(1)
        finally:
            env.close()
    assert [info["time_ms"] for _, _, info in live] == data.timestamp[START : START + 7].tolist()
    assert live[-1][2]["n_trades"] >= 2
    assert_same_run(live, replay_run)


def test_live_env_on_a_replay_stream_matches_and_ends_with_the_stream(data, replay_run):
    stream = ReplayBarStream(data, start=START + 1, stop=START + 1 + len(ACTIONS))
    env = LiveTradingEnv(stream, FeaturePipeline(), config=CONFIG)
    try:
        assert_same_run(run_live(env), replay_run)
        obs, reward, terminated, truncated, info = env.step(1)
        assert (reward, terminated, truncated, env.stream_ended) == (0.0, False, True, True)
    finally:
        env.close()


def test_too_short_a_history_is_reported(data):
    env = LiveTradingEnv(ReplayBarStream(data, start=100), config=CONFIG)
    with pytest.raises(ValueError, match="history"):
        env.reset()
    env.close()


async def test_a_stream_settling_funding_on_another_interval_than_the_contract_is_refused():
    client = make_phemex_client(base_url="http://127.0.0.1:9", pro=True, rate_limit=False)
    stream = CcxtBarStream(client, SYMBOL, "5m", funding_interval_ms=4 * 3_600_000)
    try:
        with pytest.raises(ValueError, match="every 14400000 ms.*every 28800000 ms"):
            LiveTradingEnv(stream, config=CONFIG, contract=BTCUSDT)
    finally:
        await client.close()
