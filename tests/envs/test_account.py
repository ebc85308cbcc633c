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


# Phemex help centre, "How are Liquidation Prices calculated?" (phemex.com/help-center/
# liquidation-price), linear contracts, isolated margin (initial margin = open value / L):
#   long:  liquidation value = open value + open value x MMR - open value / leverage
#   short: liquidation value = open value - open value x MMR + open value / leverage
#   liquidation price = liquidation value / quantity
# and "Why is the fill price (bankruptcy price) different from the liquidation price?": the
# position is closed at the bankruptcy price, where the whole initial margin is lost.


def test_liquidation_price_is_phemex_linear_formula_long_and_short():
    long_ = account(leverage=10)
    long_.fill(0.1, 80_000.0)
    # open value 8,000: (8,000 + 8,000 x 0.005 - 8,000 / 10) / 0.1 = 72,400
    assert long_.liquidation_price == 72_400.0
    short = account(leverage=10)
    short.fill(-0.1, 80_000.0)
    # (8,000 - 8,000 x 0.005 + 8,000 / 10) / 0.1 = 87,600
    assert short.liquidation_price == 87_600.0
    # (the old entry x (1 - 1/L) / (1 - MMR) gave 72,361.8: about 5 bp apart at 10x ...)
    two = account(leverage=2)
    two.fill(0.1, 80_000.0)
    # (... and 25 bp at 2x): (8,000 + 40 - 4,000) / 0.1 = 40,400 against 40,201.0
    assert two.liquidation_price == 40_400.0
    # at the liquidation price the position keeps exactly its maintenance margin (on open value)
    assert long_.position_margin + long_.unrealised_pnl(72_400.0) == pytest.approx(0.005 * 8_000)


def test_liquidation_closes_at_the_bankruptcy_price_losing_the_initial_margin():
    a = account(leverage=10)
    a.fill(0.1, 80_000.0)
    wallet = a.wallet_balance
    assert a.bankruptcy_price == 72_000.0  # 80,000 x (1 - 1/10)
    assert a.check_liquidation(low=72_400.1, high=81_000.0) is None  # mark above 72,400
    fill = a.check_liquidation(low=72_400.0, high=81_000.0)
    assert fill is not None and fill.liquidity == "liquidation"
    assert fill.price == 72_000.0
    assert fill.realised_pnl == pytest.approx(-800.0)  # 0.1 x (72,000 - 80,000)
    assert fill.fee == 0.0  # the maintenance margin leaves with the position, not as a fee
    assert a.qty == 0.0
    assert a.wallet_balance == pytest.approx(wallet - 800.0)  # margin 0.1 x 80,000 / 10
    assert a.margin_ratio(72_000.0) == 0.0


def test_short_bankruptcy_and_a_mark_gap_far_past_it_still_closes_there():
    a = account(leverage=4)
    a.fill(-0.1, 80_000.0)
    # liquidation (8,000 - 40 + 2,000) / 0.1 = 99,600; bankruptcy 80,000 x 1.25 = 100,000
    assert a.liquidation_price == 99_600.0
    wallet = a.wallet_balance
    fill = a.check_liquidation(low=120_000.0, high=120_000.0)
    assert fill is not None and fill.price == 100_000.0
    assert a.wallet_balance == pytest.approx(wallet - 2_000.0)


def test_a_long_at_1x_liquidates_only_at_the_maintenance_margin_of_its_value():
    a = account(leverage=1)
    a.fill(0.1, 80_000.0)
    # (8,000 + 40 - 8,000) / 0.1 = 400
    assert a.liquidation_price == 400.0
    assert a.check_liquidation(low=401.0, high=80_000.0) is None


def test_margin_ratio_reaches_one_at_the_liquidation_price():
    a = account(leverage=10)
    a.fill(0.1, 80_000.0)
    assert a.margin_ratio(80_000.0) == pytest.approx(0.005 * 8000 / 800)
    assert a.margin_ratio(a.liquidation_price) == pytest.approx(1.0)


def test_maintenance_margin_by_risk_tier_is_phemex_worked_example():
    # Phemex help centre, "Leverage & Margin of USDT-M contracts" (help-center/
    # legerage-IM-MM-USDTM): for BTCUSDT, a position value of 3,000,000 has 2,000,000 in
    # tier 1 and 1,000,000 in tier 2: 2,000,000 x 0.50 % + 1,000,000 x 0.75 % = 17,500.
    assert BTCUSDT.maintenance_margin(3_000_000.0) == pytest.approx(17_500.0)
    # the same as notional x MMR - maintenance amount: 3,000,000 x 0.75 % - 5,000
    assert BTCUSDT.maintenance_amount(1) == pytest.approx(5_000.0)
    assert BTCUSDT.maintenance_margin(1_000_000.0) == pytest.approx(5_000.0)
    a = account(balance=200_000.0, leverage=50)
    a.fill(37.5, 80_000.0)  # open value 3,000,000
    assert a.maintenance_margin == pytest.approx(17_500.0)
    assert a.maintenance_margin_rate == 0.0075
    # liquidation value = 3,000,000 + 17,500 - 3,000,000 / 50 = 2,957,500; / 37.5 =
    # 78,866.666..., rounded up to the tick (a long triggers no later)
    assert a.liquidation_price == 78_866.7


def test_an_order_above_its_risk_tiers_leverage_is_refused_naming_the_tier():
    a = account(balance=100_000.0, leverage=100)
    a.fill(25.0, 80_000.0)  # 2,000,000: the top of tier 1, 100x allowed
    with pytest.raises(OrderRefused) as refused:
        a.fill(0.001, 80_000.0)  # 2,000,080: tier 2 allows 66.67x
    assert refused.value.result == FillResult.REFUSED_RISK_LIMIT
    assert "risk tier 2" in str(refused.value) and "66.6667x" in str(refused.value)
    assert a.qty == 25.0
    a.fill(-1.0, 80_000.0)  # reducing is always accepted
    big = account(balance=10_000_000.0, leverage=1)
    with pytest.raises(OrderRefused, match="above the last risk tier 3") as refused:
        big.fill(75.001, 80_000.0)  # 6,000,080 USDT: beyond every tier
    assert refused.value.result == FillResult.REFUSED_RISK_LIMIT
    big.fill(75.0, 80_000.0)


def test_a_flat_tier_table_when_margin_rate_or_max_leverage_change():
    custom = BTCUSDT.with_changes(maintenance_margin_rate=0.004)
    assert len(custom.risk_tiers) == 1 and custom.risk_tiers[0].maintenance_margin_rate == 0.004
    assert ContractSpec(**custom.to_dict()) == custom
    assert ContractSpec(**BTCUSDT.to_dict()) == BTCUSDT  # tiers survive a JSON round trip
    with pytest.raises(ValueError, match="risk_tiers\\[0\\].*0.005.*0.004"):
        dataclasses.replace(BTCUSDT, maintenance_margin_rate=0.004)


def test_prices_are_exact_multiples_of_the_tick():
    a = account()
    # 854,784 ticks of 0.1: 854784 * 0.1 is 85478.40000000001 in binary floating point
    assert a.market_fill_price(85_478.4, 0.1) == 85_478.4
    assert repr(BTCUSDT.round_price(85_478.43, side=-1)) == "85478.4"
    for entry in (85_478.4, 81_234.5, 79_999.9, 12_345.6):
        for qty in (0.1, -0.1):
            b = account(leverage=7)
            b.fill(qty, entry)
            for price in (b.liquidation_price, b.bankruptcy_price):
                assert price == float(f"{price:.1f}")  # the float of the decimal itself


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
