"""PhemexTradingEnv: API conformance, the rules inside a step, settings errors."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import envs  # noqa: F401  (registers PhemexTrading-v0)
from envs.trading_env import PhemexTradingEnv
from tests.envs.synthetic import constant_features, make_market, with_mark

SHORT, FLAT, LONG = 0, 1, 2


@pytest.fixture
def flat_market():
    return make_market(np.full(200, 80_000.0))


def synthetic_env(market, **kw):
    kw.setdefault("window", 4)
    kw.setdefault("episode_length", None)
    kw.setdefault("slippage_bps", 0.0)
    kw.setdefault("rebalance_band", 0.0)
    return PhemexTradingEnv(market=market, feature_matrix=constant_features(len(market)), **kw)


def test_make_with_no_arguments_runs_on_the_bundled_sample():
    env = gym.make("PhemexTrading-v0")
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == env.observation_space.shape
    assert obs.shape[0] >= 32 * 10 + 3
    for key in ("equity", "position", "price", "fees_paid", "funding_paid", "n_trades"):
        assert key in info
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert np.isfinite(obs).all() and np.isfinite(reward)
    env.close()


def test_passes_gymnasium_and_sb3_env_checkers():
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    for action in ("discrete", "continuous"):
        env = PhemexTradingEnv(action=action, timeframe="1h", episode_length=64)
        gym_check_env(env, skip_render_check=True)
        sb3_check_env(PhemexTradingEnv(action=action, timeframe="1h", episode_length=64), warn=True)


def test_keyword_overrides_every_default():
    env = gym.make(
        "PhemexTrading-v0",
        timeframe="1h",
        window=8,
        action="continuous",
        leverage=3,
        episode_length=64,
    )
    assert env.observation_space.shape[0] == 8 * len(env.unwrapped.replay.features.names) + 3
    assert isinstance(env.action_space, gym.spaces.Box)
    assert env.unwrapped.config.leverage == 3


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("taker_fee", -0.001),
        ("leverage", 150.0),
        ("window", 10**6),
        ("reward", "moon"),
        ("action", "teleport"),
        ("episode_length", 10**7),
        ("margin_usage", 1.5),
    ],
)
def test_bad_setting_fails_at_construction_naming_it(setting, value):
    with pytest.raises(ValueError, match=setting if setting != "window" else "window=1000000"):
        PhemexTradingEnv(timeframe="1h", **{setting: value})


def test_unknown_feature_and_unknown_setting_are_named():
    with pytest.raises(ValueError, match="bogus"):
        PhemexTradingEnv(timeframe="1h", features=[{"name": "bogus"}])
    with pytest.raises(TypeError, match="levrage"):
        PhemexTradingEnv(timeframe="1h", levrage=2)


def test_same_seed_same_trajectory():
    def run(seed):
        env = PhemexTradingEnv(timeframe="1h", episode_length=50)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        out = [obs]
        for _ in range(50):
            obs, reward, *_ = env.step(int(rng.integers(3)))
            out.append(obs)
            out.append(np.float32([reward]))
        return np.concatenate(out)

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_fees_are_charged_at_the_next_open_and_show_in_equity(flat_market):
    env = synthetic_env(flat_market)
    _, info = env.reset(seed=0)
    _, _, _, _, info = env.step(LONG)
    # exposure 1 at 1x: 0.95 x 10,000 / 80,000 = 0.11875 BTC, truncated to 0.118
    assert info["position"] == pytest.approx(0.118)
    fee = 0.118 * 80_000 * 0.0006
    assert info["fees_paid"] == pytest.approx(fee)
    assert info["equity"] == pytest.approx(10_000 - fee)
    _, reward, _, _, info = env.step(FLAT)
    assert info["position"] == 0.0
    assert info["equity"] == pytest.approx(10_000 - 2 * fee)
    assert reward == pytest.approx(np.log((10_000 - 2 * fee) / (10_000 - fee)))
    assert info["n_trades"] == 2


def test_fill_happens_at_next_open_with_slippage():
    close = np.array([100.0] * 6 + [110.0, 120.0, 120.0, 120.0])
    market = make_market(close * 800)
    env = synthetic_env(market, slippage_bps=10.0)
    env.reset(options={"start": 5})
    _, _, _, _, info = env.step(LONG)  # decided at close[5]=80,000, fills at open[6]=80,000+10 bp
    qty = info["position"]
    fill = 80_080.0
    assert info["equity"] == pytest.approx(10_000 - qty * fill * 0.0006 + qty * (88_000 - fill))


def test_funding_long_pays_short_receives():
    funding = np.zeros(200)
    funding[10] = 0.001
    market = make_market(np.full(200, 80_000.0), funding=funding)
    for action, sign in ((LONG, 1), (SHORT, -1)):
        env = synthetic_env(market)
        env.reset(options={"start": 8})
        _, _, _, _, info = env.step(action)  # fills at open of bar 9
        qty = info["position"]
        _, _, _, _, info = env.step(action)  # bar 10 opens with a funding settlement
        assert info["funding_paid"] == pytest.approx(qty * 80_000 * 0.001)
        assert np.sign(info["funding_paid"]) == sign


def test_liquidation_terminates_the_episode_and_costs_the_margin():
    close = np.full(100, 80_000.0)
    close[30:] = 70_000.0  # -12.5 %: past a 10x long's liquidation at about -9.5 %
    market = make_market(close)
    env = synthetic_env(market, leverage=10, rebalance_band=0.05)
    env.reset(options={"start": 20})
    terminated = False
    for _ in range(15):
        _, _, terminated, _, info = env.step(LONG)
        if terminated:
            break
    assert terminated and info["liquidated"]
    assert info["position"] == 0.0
    # 1.187 BTC (0.95 x 10,000 x 10 / 80,000, truncated to lots): the taker fee at entry
    # plus the whole initial margin (1.187 x 80,000 / 10) are gone; the rest of the wallet stays
    assert info["equity"] == pytest.approx(10_000 - 1.187 * 80_000 * (0.0006 + 0.1))
    assert np.datetime64(info["time_ms"], "ms") == np.datetime64("2025-03-07T06:00")  # bar 30


def run_long_from(market, start=20, steps=15, **kw):
    """Hold a 10x long from the open of bar ``start + 1``; the last step's info and whether it
    ended the episode."""
    env = synthetic_env(market, leverage=10, rebalance_band=0.05, **kw)
    env.reset(options={"start": start})
    for _ in range(steps):
        _, _, terminated, _, info = env.step(LONG)
        if terminated:
            break
    return info, terminated


# 1.187 BTC at 80,000 and 10x (0.95 x 10,000 x 10 / 80,000 in lots): Phemex's liquidation
# price 80,000 x (1 + 0.5 % - 1/10) = 72,400, bankruptcy price 80,000 x 0.9 = 72,000.
QTY_10X = 1.187


def test_liquidation_is_triggered_by_the_mark_price_not_the_last_price():
    low = np.full(100, 80_000.0)
    low[30] = 72_000.0
    spike = make_market(np.full(100, 80_000.0), low=low)  # a last-price wick
    # no mark series: the last price stands in (conservative) and the wick liquidates
    info, terminated = run_long_from(spike)
    assert terminated and info["liquidated"]
    # the mark stayed at 79,000: the same wick no longer liquidates
    info, terminated = run_long_from(with_mark(spike, mark_low={30: 79_000.0}))
    assert not terminated and not info["liquidated"] and info["position"] == QTY_10X
    # the mark reaching 72,400 liquidates though the last price never went below 79,000
    low[30] = 79_000.0
    calm = make_market(np.full(100, 80_000.0), low=low)
    info, terminated = run_long_from(with_mark(calm, mark_low={30: 72_400.0}))
    assert terminated and info["liquidated"]
    # closed at the bankruptcy price: the taker fee and the whole initial margin are gone
    assert info["equity"] == pytest.approx(10_000 - QTY_10X * 80_000 * (0.0006 + 0.1))


def test_equity_and_unrealised_pnl_are_marked_at_the_mark_close():
    market = with_mark(make_market(np.full(100, 80_000.0)), mark_close={21: 80_500.0})
    env = synthetic_env(market, leverage=10, rebalance_band=0.05)
    env.reset(options={"start": 20})
    obs, _, _, _, info = env.step(LONG)  # fills at the open of bar 21 (80,000)
    fee = QTY_10X * 80_000 * 0.0006
    assert info["equity"] == pytest.approx(10_000 - fee + QTY_10X * 500)
    assert obs[-2] == pytest.approx(QTY_10X * 500 / info["equity"], rel=1e-6)


def test_episode_truncates_at_its_length():
    env = PhemexTradingEnv(timeframe="1h", episode_length=10)
    env.reset(seed=1)
    for i in range(10):
        _, _, terminated, truncated, _ = env.step(FLAT)
        assert truncated == (i == 9) and not terminated


def test_whole_range_episode_covers_the_split():
    env = PhemexTradingEnv(
        timeframe="15m", episode_length=None, start="2025-03-20", end="2025-03-25"
    )
    _, info = env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, info = env.step(FLAT)
        steps += 1
        done = terminated or truncated
    assert steps == 5 * 96 - 1
    assert np.datetime64(info["time_ms"], "ms") == np.datetime64("2025-03-24T23:45")


def test_render_rgb_array_draws_price_position_and_equity():
    env = PhemexTradingEnv(timeframe="1h", episode_length=30, render_mode="rgb_array")
    env.reset(seed=0)
    for _ in range(30):
        env.step(LONG)
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8
    assert frame.std() > 0  # something was drawn
    env.close()


def test_observation_ends_with_account_state(flat_market):
    env = synthetic_env(flat_market, leverage=5)
    env.reset(options={"start": 10})
    obs, *_ = env.step(LONG)
    exposure, upnl, margin_ratio = obs[-3:]
    assert exposure == pytest.approx(1.0, abs=0.01)
    assert upnl == pytest.approx(0.0, abs=1e-6)
    assert 0 < margin_ratio < 0.1
    # the window is the last 4 feature rows, oldest first (feature value = bar index)
    np.testing.assert_array_equal(obs[:-3].reshape(4, 2)[:, 0], [8, 9, 10, 11])


def test_stepping_without_a_running_episode_is_refused():
    env = PhemexTradingEnv(timeframe="1h", episode_length=2)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(FLAT)
    env.reset(seed=0)
    env.step(FLAT)
    _, _, _, truncated, _ = env.step(FLAT)
    assert truncated
    with pytest.raises(gym.error.ResetNeeded):  # the next bar may lie past the data
        env.step(FLAT)
    env.reset()
    env.step(FLAT)


@pytest.mark.parametrize(
    ("dates", "message"),
    [
        ({"start": "notadate"}, "start='notadate' is not a time"),
        ({"end": "2025-13-45"}, "end='2025-13-45' is not a time"),
        ({"start": "2025-04-01", "end": "2025-03-20"}, "start='2025-04-01': must be before end="),
    ],
)
def test_bad_dates_are_named_before_any_data_is_loaded(dates, message):
    # data_dir points nowhere: a check made after loading would fail on the missing store
    with pytest.raises(ValueError, match=message):
        gym.make("PhemexTrading-v0", data_dir="/nonexistent", **dates)
