"""The ``phemex-rl`` command: ``data list/info/download`` and a fast, helpful ``--help``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from envs.data.store import load_market_data, read_candles, sample_data_dir, write_candles
from serving.cli import main
from serving.exchange.market import ReplayMarket
from serving.exchange.server import ExchangeServer

SYMBOL = "BTC/USDT:USDT"


def test_data_list_on_the_sample(capsys):
    assert main(["data", "list", "--sample"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()[1:]
    assert header.startswith("EXCHANGE") and header.endswith("FUNDING")
    assert [row.split()[:4] for row in rows] == [
        ["binance_usdm", SYMBOL, "5m", "10,906"],
        ["binance_usdm", SYMBOL, "15m", "3,635"],
        ["binance_usdm", SYMBOL, "1h", "908"],
    ]


def test_data_info_on_the_sample(capsys):
    assert main(["data", "info", "--symbol", SYMBOL, "--timeframe", "5m", "--sample"]) == 0
    out = capsys.readouterr().out
    assert "rows:     10,906" in out
    assert "range:    2025-03-06T10:30:00Z .. 2025-04-13T07:15:00Z" in out
    assert "gaps:     none" in out
    assert "funding:  113 rates" in out


def test_data_info_lists_gaps(tmp_path, capsys):
    df = read_candles(sample_data_dir(), "binance_usdm", SYMBOL, "1h").iloc[:50]
    write_candles(df.drop(index=[10, 11, 30]), tmp_path, "phemex", SYMBOL, "1h")
    assert main(["data", "info", "--timeframe", "1h", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gaps:     2 (3 bars missing)" in out
    assert "2025-03-06T21:00:00Z .. 2025-03-06T22:00:00Z  2 bars" in out


def test_errors_are_one_line_messages(capsys):
    assert main(["data", "info", "--timeframe", "7m", "--sample"]) == 1
    assert capsys.readouterr().err.strip() == (
        "phemex-rl: error: unknown timeframe '7m'; expected one of "
        "['1m', '3m', '5m', '15m', '30m', '1h', '2h', '3h', '4h', '6h', '12h', '1d']"
    )


def test_data_download_against_the_loopback_exchange(tmp_path, capsys):
    market = load_market_data(SYMBOL, "1h").slice(0, 48)
    with ExchangeServer(ReplayMarket(market)) as server:
        argv = [
            "data",
            "download",
            "--timeframe",
            "1h",
            "--since",
            "2025-03-06",
            "--data-dir",
            str(tmp_path),
            "--base-url",
            server.base_url,
            "--no-rate-limit",
            "--no-progress",
        ]
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "+48 bars" in out and "0 gaps" in out
    stored = read_candles(tmp_path, "phemex", SYMBOL, "1h")
    assert stored["timestamp"].tolist() == market.timestamp.tolist()


@pytest.mark.parametrize("argv", [["--help"], ["data", "--help"], ["data", "download", "--help"]])
def test_help_is_fast_and_imports_nothing_heavy(argv):
    code = (
        "import sys\n"
        "from serving.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "heavy = {'torch', 'wandb', 'bentoml', 'ccxt', 'pandas', 'aiohttp'} & set(sys.modules)\n"
        "print('HEAVY', sorted(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert "HEAVY []" in result.stdout
    assert "examples:" in result.stdout and "usage: phemex-rl" in result.stdout


def test_data_list_shows_an_unreadable_file_as_invalid_and_goes_on(tmp_path, capsys):
    df = read_candles(sample_data_dir(), "binance_usdm", SYMBOL, "1h").iloc[:24]
    write_candles(df, tmp_path, "phemex", SYMBOL, "1h")
    broken = tmp_path / "phemex" / "BTC_USDT_USDT" / "5m.parquet"
    broken.write_bytes(b"PAR1 this is not a parquet file")
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert rows[0].split()[:3] == ["phemex", SYMBOL, "5m"]
    assert f"invalid: {broken}: breaks rule 'a readable Parquet file'" in rows[0]
    assert rows[1].split()[:4] == ["phemex", SYMBOL, "1h", "24"]  # listed after it
