"""The account model against hand-computed examples, one rule at a time."""

import dataclasses

import pytest

from envs.account import FillResult, OrderRefused, PerpAccount, SlippageModel
from envs.market import BTCUSDT, ContractSpec

NO_SLIP = SlippageModel(kind="fixed", bps=0.0)


def account(balance=10_000.0, leverage=1.0, slippage=NO_SLIP, spec=BTCUSDT):
    return PerpAccount(spec, balance=balance, leverage=leverage, slippage=slippage)


def test_taker_fee_is_notional_times_rate():
    a = account()
    fill = a.fill(0.1, 80_000.0, "taker")
    assert fill.fee == pytest.approx(4.8)  # 0.1 x 80,000 x 0.06 %
    assert a.wallet_balance == pytest.approx(9_995.2)
    assert a.fees_paid == pytest.approx(4.8)


def test_maker_fee_is_notional_times_rate():
    a = account()
    assert a.fill(-0.1, 80_000.0, "maker").fee == pytest.approx(0.8)  # 0.01 %


def test_adding_averages_entry_and_reducing_realises():
    a = account(balance=50_000.0)
    a.fill(0.1, 80_000.0)
    a.fill(0.1, 82_000.0)
    assert a.entry_price == pytest.approx(81_000.0)
    fill = a.fill(-0.1, 83_000.0)
    assert fill.realised_pnl == pytest.approx(200.0)  # 0.1 x (83,000 - 81,000)
    assert a.qty == pytest.approx(0.1)
    assert a.entry_price == pytest.approx(81_000.0)  # a partial close keeps the entry


def test_flip_realises_the_old_side_and_opens_the_new_at_the_fill():
    a = account(balance=50_000.0)
    a.fill(0.1, 80_000.0)
    fill = a.fill(-0.3, 79_000.0)
    assert fill.realised_pnl == pytest.approx(-100.0)
    assert a.qty == pytest.approx(-0.2)
    assert a.entry_price == pytest.approx(79_000.0)


def test_short_profits_when_price_falls():
    a = account()
    a.fill(-0.1, 80_000.0)
    assert a.unrealised_pnl(78_000.0) == pytest.approx(200.0)
    assert a.equity(78_000.0) == pytest.approx(10_000 - 4.8 + 200)


@pytest.mark.parametrize(
    ("qty", "rate", "paid"),
    [(0.1, 0.0001, 0.8), (-0.1, 0.0001, -0.8), (0.1, -0.0002, -1.6), (-0.1, -0.0002, 1.6)],
)
def test_funding_sign_longs_pay_positive_rates(qty, rate, paid):
    a = account()
    a.fill(qty, 80_000.0)
    before = a.wallet_balance
    assert a.settle_funding(rate, mark=80_000.0) == pytest.approx(paid)
    assert a.wallet_balance == pytest.approx(before - paid)
    assert a.funding_paid == pytest.approx(paid)


def test_liquidation_price_long_and_short():
    long_ = account(leverage=10)
    long_.fill(0.1, 80_000.0)
    # entry x (1 - 1/L) / (1 - mmr) = 80,000 x 0.9 / 0.995
    assert long_.liquidation_price == pytest.approx(72_361.809045, rel=1e-9)
    short = account(leverage=10)
    short.fill(-0.1, 80_000.0)
    # entry x (1 + 1/L) / (1 + mmr) = 80,000 x 1.1 / 1.005
    assert short.liquidation_price == pytest.approx(87_562.189055, rel=1e-9)
    # at the liquidation price the position's equity is exactly the maintenance margin
    liq = long_.liquidation_price
    assert long_.position_margin + long_.unrealised_pnl(liq) == pytest.approx(0.005 * 0.1 * liq)


def test_liquidation_loses_the_position_margin():
    a = account(leverage=10)
    a.fill(0.1, 80_000.0)
    wallet = a.wallet_balance
    assert a.check_liquidation(low=72_400.0, high=81_000.0) is None  # above 72,361.8: survives
    fill = a.check_liquidation(low=72_000.0, high=81_000.0)
    assert fill is not None and fill.liquidity == "liquidation"
    assert fill.price == pytest.approx(72_361.809045)
    assert a.qty == 0.0
    assert a.wallet_balance == pytest.approx(wallet - 800.0)  # margin 0.1 x 80,000 / 10
    assert a.margin_ratio(72_000.0) == 0.0


def test_margin_ratio_reaches_one_at_the_liquidation_price():
    a = account(leverage=10)
    a.fill(0.1, 80_000.0)
    assert a.margin_ratio(80_000.0) == pytest.approx(0.005 * 8000 / 800)
    assert a.margin_ratio(a.liquidation_price) == pytest.approx(1.0)


def test_order_margin_cannot_cover_is_refused_and_changes_nothing():
    a = account(balance=1_000.0, leverage=1)
    with pytest.raises(OrderRefused) as refused:
        a.fill(0.02, 80_000.0)  # needs 1,600 USDT of margin
    assert refused.value.result == FillResult.REFUSED_MARGIN
    assert (a.qty, a.wallet_balance, a.n_trades) == (0.0, 1_000.0, 0)
    assert a.state[8] == 1  # REFUSED counter
    a.fill(0.012, 80_000.0)  # 960 USDT margin + 0.576 fee fits
    assert a.qty == pytest.approx(0.012)


def test_reducing_is_always_accepted_even_when_under_water():
    a = account(balance=1_000.0, leverage=1)
    a.fill(0.012, 80_000.0)
    a.fill(-0.012, 60_000.0)  # a 240 USDT loss, still allowed to close
    assert a.qty == 0.0
    assert a.wallet_balance == pytest.approx(1_000 - 0.576 - 240 - 0.432)


def test_reduce_only_never_opens_and_is_clamped_to_the_position():
    a = account()
    with pytest.raises(OrderRefused) as refused:
        a.fill(0.1, 80_000.0, reduce_only=True)
    assert refused.value.result == FillResult.REFUSED_REDUCE_ONLY
    a.fill(0.1, 80_000.0)
    with pytest.raises(OrderRefused):
        a.fill(0.1, 80_000.0, reduce_only=True)  # would grow the long
    fill = a.fill(-0.3, 80_000.0, reduce_only=True)
    assert fill.qty == pytest.approx(-0.1)
    assert a.qty == 0.0


def test_size_limits():
    a = account()
    with pytest.raises(OrderRefused) as refused:
        a.fill(0.0005, 80_000.0)
    assert refused.value.result == FillResult.REFUSED_MIN_QTY
    cheap = dataclasses.replace(BTCUSDT, min_notional=100.0)
    with pytest.raises(OrderRefused) as refused:
        account(spec=cheap).fill(0.001, 80_000.0)  # 80 USDT < 100
    assert refused.value.result == FillResult.REFUSED_MIN_NOTIONAL
    with pytest.raises(OrderRefused) as refused:
        account(balance=1e9).fill(1001.0, 80_000.0)
    assert refused.value.result == FillResult.REFUSED_MAX_QTY


def test_market_price_rounds_to_tick_against_the_trader():
    a = account()
    assert a.market_fill_price(80_000.03, 0.1) == pytest.approx(80_000.1)
    assert a.market_fill_price(80_000.03, -0.1) == pytest.approx(80_000.0)


def test_fixed_slippage_in_basis_points():
    a = account(slippage=SlippageModel(kind="fixed", bps=2.0))
    assert a.market_fill_price(80_000.0, 0.1) == pytest.approx(80_016.0)
    assert a.market_fill_price(80_000.0, -0.1) == pytest.approx(79_984.0)


def test_spread_plus_square_root_impact():
    a = account(slippage=SlippageModel(kind="spread_impact", spread_bps=2.0, impact_coef=0.1))
    # half spread 1 bp + 0.1 x sqrt(1 / 100) = 0.0101
    assert a.market_fill_price(80_000.0, 1.0, bar_volume=100.0) == pytest.approx(80_808.0)


def test_market_order_truncates_to_lot():
    a = account()
    fill = a.market_order(0.0129, ref_price=80_000.0)
    assert fill.qty == pytest.approx(0.012)
    assert BTCUSDT.round_qty(-0.0129) == pytest.approx(-0.012)
    assert BTCUSDT.round_price(20_000.05, side=1) == pytest.approx(20_000.1)


def test_bad_settings_name_the_value():
    with pytest.raises(ValueError, match="leverage.*150"):
        account(leverage=150)
    with pytest.raises(ValueError, match="taker_fee.*-0.1"):
        ContractSpec(taker_fee=-0.1)
    with pytest.raises(ValueError, match="kind.*'magic'"):
        SlippageModel(kind="magic")
    with pytest.raises(ValueError, match="balance"):
        account(balance=0.0)
