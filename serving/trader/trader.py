"""The trading loop of one exported agent on one account.

Each closed bar goes through the agent's own pipeline and the environment's own rules::

    bar -> settle orders in flight, journal new fills -> read the account (wallet, position)
        -> equity at the bar's close -> equity limits (daily loss, drawdown)
        -> features (the bundle's fitted pipeline on a rolling buffer) -> observation
           (envs.replay.write_observation, as the env builds it) -> policy (deterministic)
        -> target exposure -> envs.replay.rebalance_order (the env's sizing rule)
        -> risk checks -> market order through ccxt (envs.client) -> journal + events

Start-up takes the account's lease in the journal (one loop per account) and reconciles the
journal with the exchange before the first order; a trader that cannot reconcile does not
trade (:class:`TraderRefused`). See :mod:`serving.trader.execution` for how orders survive
crashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import hashlib
import logging
import os
import socket
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any

import ccxt
import numpy as np

from envs import account as acc
from envs import replay
from envs.bar import Bar
from envs.data.market_data import timeframe_to_ms
from envs.streams.base import BarStream, bars_to_market
from envs.trading_env import EnvLayout
from serving.trader.balance import BalanceMark, expect_balance
from serving.trader.drift import DriftMonitor
from serving.trader.events import EventLog, json_safe
from serving.trader.execution import AccountSnapshot, Executor, gather_all
from serving.trader.journal import IN_FLIGHT, Journal, LeaseHeld, bar_row, now_ms
from serving.trader.metrics import TraderMetrics
from serving.trader.ratelimit import RATE_LIMIT_ERRORS
from serving.trader.risk import HALTED, KILLED, PAUSED, RUNNING, RiskManager, RiskState, Trigger
from serving.trader.settings import TraderSettings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from agents.bundle import LoadedAgent

log = logging.getLogger(__name__)

STATUSES = ("starting", "reconciling", RUNNING, PAUSED, HALTED, KILLED, "stopped", "refused")
STARTUP_SETTLE_TRIES = 5
"""Start-up queries of orders whose outcome is unknown before refusing to trade."""
STARTUP_RATE_LIMIT_TRIES = 5
"""Start-up reconciliations retried after the exchange's rate limit before refusing."""
RECONCILE_RETRY_S = 1.0
"""Shortest wait before a reconciliation the rate limit stopped is tried again."""
RATE_LIMITED_PREFIX = "rate limited: "


CHECKPOINT_EVERY_BARS = 50
"""Bars between journal checkpoints (a bar writes about 15 WAL pages)."""
REQUEST_SEND_YIELDS = 10
"""Event-loop turns given to the bar's exchange reads before the features are computed (CPU,
blocking the loop), so that the exchange answers while they are: ccxt and aiohttp take
several turns to write a request. Measured (ccxt 4.5.90): after 3 turns the reads still
waited 6.6 ms after the features, after 8 turns 0.4 ms. Too few only loses the overlap; a
worker thread for the features did worse (13 ms instead of 6.5: the GIL)."""


def freeze_heap() -> None:
    """Move every object alive now out of the garbage collector's sight (``gc.freeze``).

    By the first bar the process holds what it keeps for its life: torch and the policy,
    pandas, ccxt with its markets, BentoML in the service. A full (generation 2) collection
    walks all of it, and one ran every few dozen bars, mid-bar: 0.2-0.6 s measured in the
    service worker, the whole p99 of bar -> order. Frozen, those objects are still freed by
    reference counting; only cycles among them are never collected, which is what
    start-up state is for.
    """
    gc.collect()
    gc.freeze()


class TraderRefused(RuntimeError):
    """The trader must not trade (lease held elsewhere, reconciliation failed, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ControlRefused(RuntimeError):
    """A control request that cannot be honoured now (e.g. resume during the cooldown)."""


def _drop(task: asyncio.Future) -> None:
    """Forget a read the bar did not need: cancel it if still running, else take its
    exception (a failed read nobody awaited is not an error, and asyncio would log it)."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


def _holder_is_dead(holder: str) -> bool:
    """True when ``holder`` (``host/pid<N>/nonce``) is a process of this host that is gone."""
    try:
        host, pid_text, _ = holder.split("/")
        pid = int(pid_text.removeprefix("pid"))
    except ValueError:
        return False
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Trader:
    """Trades one exported agent on one account (see the module doc).

    Args:
        settings: account, market, journal, limits.
        agent: the exported agent (:func:`agents.bundle.load_agent`).
        client: async ccxt Phemex client (``make_phemex_client(pro=True, ...)``), built and
            owned (closed) by the caller; its markets must be loaded.
        stream: closed bars; None follows the exchange with a
            :class:`~envs.streams.live.CcxtBarStream` on ``client``.

    Attributes:
        events: the event log (resumable by id).
        metrics: the Prometheus registry of this trader.
        journal: the journal.
    """

    def __init__(
        self,
        settings: TraderSettings,
        agent: LoadedAgent,
        client: Any,
        stream: BarStream | None = None,
    ) -> None:
        self.settings = settings
        self.agent = agent
        self.client = client
        self.symbol = settings.symbol or agent.manifest.get("symbol") or agent.env_config.symbol
        self.timeframe = (
            settings.timeframe or agent.manifest.get("timeframe") or agent.env_config.timeframe
        )
        self.timeframe_ms = timeframe_to_ms(self.timeframe)
        self.bar_interval_s = settings.bar_interval_s or self.timeframe_ms / 1000
        self.layout = EnvLayout(agent.env_config, agent.contract)
        self.layout.set_features(agent.pipeline.columns)
        self.contract = self.layout.contract
        self.account = settings.account
        self.journal = Journal(settings.journal_url)
        self.events = EventLog(self.journal, self.account)
        self._metrics = TraderMetrics()
        self.metrics: CollectorRegistry = self._metrics.registry
        self.holder = f"{socket.gethostname()}/pid{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.executor = Executor(
            client,
            self.journal,
            self.events,
            self._metrics,
            account=self.account,
            agent=agent.tag,
            symbol=self.symbol,
            contract=self.contract,
            order_timeout_s=settings.order_timeout_s,
            settle_grace_s=settings.settle_grace_s,
            rate_limit_wait_s=settings.rate_limit_wait_s,
            rate_limit_max_pause_s=settings.rate_limit_max_pause_s,
        )
        self.risk_manager = RiskManager(
            settings.risk,
            RiskState.from_dict(self.journal.get_state(self.account, "risk")),
            self.contract.lot_size,
        )
        self.drift_monitor = DriftMonitor(
            agent.feature_stats, agent.pipeline.columns, settings.risk.drift_window_bars
        )
        self.buffer_bars = agent.pipeline.warmup_bars(self.timeframe) + agent.env_config.window - 1
        self._stream = stream
        self._bars: deque[Bar] = deque(maxlen=self.buffer_bars)
        self._status = "starting"
        self._reason = ""
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._reconciled = False
        self._holding_lease = False
        self._lease_renewed = 0.0
        self._last_reconcile = 0.0
        self._last_bar_wall: float | None = None
        self._loop_started: float | None = None
        self._snapshot: AccountSnapshot | None = None
        self._equity: float | None = None
        self._bars_seen = 0
        self._drift_alarm = False
        self._error_bars = 0
        self._persisted_risk: dict[str, Any] | None = None
        self._policy_state: Any = None
        self._recorded_bar_ms: int | None = None
        self._checkpointing: asyncio.Future[None] | None = None
        self._started_ms = now_ms()
        self._obs = np.zeros(self.layout.obs_size, dtype=np.float32)

    # ------------------------------------------------------------------ running
    async def run(self) -> None:
        """Lease -> reconcile -> loop; returns after :meth:`stop` or ``max_bars`` bars.

        Raises:
            TraderRefused: it must not trade (lease held by another instance, the
                exchange unreachable at start-up, a journal/exchange difference it cannot
                resolve); :meth:`status` gives the reason too.
        """
        try:
            self._acquire_lease()
            if self.settings.set_leverage:
                await self._set_leverage()
            log.info("lease on account %r taken by %s", self.account, self.holder)
            self._set_status("reconciling", "")
            ok, reason = await self.reconcile(startup=True)
            for _ in range(STARTUP_RATE_LIMIT_TRIES):
                if ok or not reason.startswith(RATE_LIMITED_PREFIX):
                    break
                await asyncio.sleep(max(self.executor.pause.remaining(), RECONCILE_RETRY_S))
                ok, reason = await self.reconcile(startup=True)
            if not ok:
                raise TraderRefused(f"reconciliation failed: {reason}")
            log.info("reconciled with the exchange")
            self._reconciled = True
            stream = self._stream
            if stream is None:
                from envs.streams.live import CcxtBarStream

                stream = CcxtBarStream(self.client, self.symbol, self.timeframe)
            self._bars.extend(await stream.history(self.buffer_bars))
            log.info("warm-up: %d bars of history; trading", len(self._bars))
            self._warm_up()
            freeze_heap()
            self._set_status(self.risk_manager.state.state, self.risk_manager.state.reason)
            await self._loop(stream)
        except TraderRefused as exc:
            self._set_status("refused", exc.reason)
            raise
        finally:
            if self._holding_lease:
                with contextlib.suppress(Exception):
                    self.journal.release_lease(self.account, self.holder)
                self._holding_lease = False
            if self._status != "refused":
                self._set_status("stopped", self._reason)

    def _warm_up(self) -> None:
        """Run the decision path once on the history, trading nothing, so that the first bar
        does not pay for first calls: lazy imports, numba kernels loaded from their cache,
        torch's first forward pass (0.3-0.4 s together in the service, measured on the
        first bar's order before this)."""
        snap = self._snapshot
        if snap is None or not self._bars:
            return
        state = self._account_vector(snap)
        equity = float(acc.equity(state, self._bars[-1].close))
        observed = self._observe(self._feature_matrix(), state, equity)
        if observed is None:
            return
        # the model itself: no policy state (recurrent agents) or call count is touched
        self.agent.model.predict(observed[1], deterministic=True)
        replay.rebalance_order(
            equity,
            state[acc.LEVERAGE],
            self.layout.settings[replay.C_MARGIN_USAGE],
            self.layout.settings[replay.C_REBALANCE_BAND],
            self.contract.lot_size,
            self._bars[-1].close,
            snap.qty,
            0.0,
        )

    async def _set_leverage(self) -> None:
        """Put the exchange on the agent's leverage (sizing and margin assume it)."""
        leverage = self.agent.env_config.leverage
        try:
            snap = await self.executor.snapshot()
            if snap.leverage is not None and abs(snap.leverage - leverage) < 1e-9:
                return
            await self.executor.call("set_leverage", leverage, self.symbol)
        except Exception as exc:
            raise TraderRefused(
                f"could not set the agent's leverage {leverage:g} on the exchange: {exc}"
            ) from exc

    async def stop(self) -> None:
        """Ask the loop to stop after the bar it is handling; :meth:`run` then returns."""
        self._stop.set()

    async def _loop(self, stream: BarStream) -> None:
        self._loop_started = time.monotonic()
        self._last_reconcile = time.monotonic()
        pending_bar: asyncio.Future | None = None
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                if self.settings.max_bars is not None and self._bars_seen >= self.settings.max_bars:
                    break
                if pending_bar is None:
                    pending_bar = asyncio.ensure_future(anext(stream))
                timeout = max(
                    min(self._next_reconcile_in(), self._next_renewal_in()),
                    0.0,
                )
                done, _ = await asyncio.wait(
                    {pending_bar, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                self._renew_lease_if_due()
                if pending_bar in done:
                    task, pending_bar = pending_bar, None
                    try:
                        bar = task.result()
                    except StopAsyncIteration:
                        break
                    await self._on_bar(bar, time.perf_counter())
                    if self._bars_seen % CHECKPOINT_EVERY_BARS == 0:
                        self._checkpoint_soon()
                if self._stop.is_set():
                    break
                if self._next_reconcile_in() <= 0:
                    await self._periodic_reconcile()
        finally:
            stopping.cancel()
            if pending_bar is not None:
                pending_bar.cancel()
                with contextlib.suppress(BaseException):
                    await pending_bar
            if self._checkpointing is not None:
                with contextlib.suppress(Exception):
                    await self._checkpointing

    def _checkpoint_soon(self) -> None:
        """Checkpoint the journal in a worker thread while the loop waits for the next bar
        (one at a time; a failure is logged: SQLite checkpoints again at the next open)."""
        if self._checkpointing is not None and not self._checkpointing.done():
            return

        async def checkpoint() -> None:
            try:
                await asyncio.to_thread(self.journal.checkpoint)
            except Exception as exc:
                log.warning("journal checkpoint failed: %s", exc)

        self._checkpointing = asyncio.ensure_future(checkpoint())

    # ------------------------------------------------------------------ one bar
    async def _on_bar(self, bar: Bar, arrived: float | None = None) -> None:
        """Handle one closed bar; ``arrived`` (``perf_counter``): when the stream gave it, so
        that the latencies include waiting for the lock (a control request, a
        reconciliation)."""
        async with self._lock:
            started = time.perf_counter() if arrived is None else arrived
            phase = self._metrics.phases
            phase.start_bar()
            phase.add("lock_wait", time.perf_counter() - started)
            self._last_bar_wall = time.monotonic()
            self._bars_seen += 1
            self._bars.append(bar)
            self.risk_manager.on_bar()
            self._metrics.bars.inc()
            try:
                decision = await self._decide_and_trade(bar, started)
                with phase("fills"):  # the order's fills, funding, external trades
                    await self._sync_fills()
                self._error_bars = 0
            except RATE_LIMIT_ERRORS as exc:  # rate limited: backing off, not failing
                decision = await self._failed_bar(bar, exc, rate_limited=True)
            except (ccxt.NetworkError, ccxt.ExchangeError) as exc:
                decision = await self._failed_bar(bar, exc)
            with phase("journal_after"), self.journal.batch():
                self._persist_risk()
                latency = time.perf_counter() - started
                self._metrics.loop_latency.observe(latency)
                self.journal.update_decision(
                    self.account,
                    bar.open_ms,
                    latency_ms=latency * 1000,
                    orders=decision["orders"],
                )
                decision["latency_ms"] = latency * 1000
                self.events.emit("decision", _brief(decision))
            phase.end_bar()

    def _record_bar(self, bar: Bar) -> None:
        """Journal the bar and announce it (once per bar, inside the bar's first batch)."""
        if self._recorded_bar_ms == bar.open_ms:
            return
        self.journal.record_bar(self.account, bar)
        self.events.emit("bar", bar_row(bar))
        self._recorded_bar_ms = bar.open_ms

    async def _decide_and_trade(self, bar: Bar, started: float) -> dict[str, Any]:
        ex = self.executor
        phase = self._metrics.phases
        with phase("settle"):
            pending = await ex.settle_all()
        unknown = [p for p in pending if p["status"] in ("sent", "unknown")]
        if unknown:
            # An order the exchange may not have received: wait out the grace period once so
            # that a "not found" answer is final, rather than deciding blind.
            sent = max(p["sent_ms"] or p["created_ms"] for p in unknown)
            wait_s = self.settings.settle_grace_s - (now_ms() - sent) / 1000
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            pending = await ex.settle_all()
        # Before the order only the account is read (wallet and position at once). The new
        # fills are journaled after it (_on_bar), except when a funding settlement falls on
        # this bar's close: the equity below needs it. Meanwhile the features, which need
        # only the bars, are computed (CPU) once the requests are on their way.
        funding_now = bar.close_ms % self.contract.funding_interval_ms == 0
        reads = [ex.snapshot(), *([self._sync_fills()] if funding_now else [])]
        reading = asyncio.ensure_future(gather_all(*reads))
        # The last price (the fat-finger band) is read beside them, so that a bar with an
        # order does not wait for one more round trip; only that bar awaits it.
        pricing = None
        if self.settings.risk.price_band is not None:
            pricing = asyncio.ensure_future(self._last_price())
        try:
            return await self._decide_on(bar, started, pending, reading, pricing)
        finally:
            if pricing is not None:
                _drop(pricing)

    async def _decide_on(
        self,
        bar: Bar,
        started: float,
        pending: list[dict[str, Any]],
        reading: asyncio.Future,
        pricing: asyncio.Future | None,
    ) -> dict[str, Any]:
        ex = self.executor
        phase = self._metrics.phases
        with phase("send_reads"):
            for _ in range(REQUEST_SEND_YIELDS):
                await asyncio.sleep(0)
        with phase("features"):
            matrix = self._feature_matrix()
        with phase("exchange_reads"):
            snap = (await reading)[0]
        self._snapshot = snap
        # Equity at the bar's close, as the env marks it: a funding settlement at that very
        # instant (the next bar's open) belongs to the next step, so it is added back.
        # The bar and its equity are journaled with the decision (and the order's intent): one
        # commit before the order instead of two. Deferred, they still go first into whatever
        # the journal writes or reads next (a risk event, a flatten, a failed bar).
        with phase("equity"):
            wallet = snap.wallet + ex.funding_since(bar.close_ms)
            state = self._account_vector(dataclasses.replace(snap, wallet=wallet))
            equity = float(acc.equity(state, bar.close))
            self._equity = equity
            self._metrics.equity.set(equity)
            self._metrics.position.set(snap.qty)
            equity_row = {
                "account": self.account,
                "bar_ms": bar.open_ms,
                "time_ms": now_ms(),
                "equity": equity,
                "wallet": wallet,
                "upnl": equity - wallet,
                "position": snap.qty,
                "entry": snap.entry,
                "price": bar.close,
            }

            def journal_bar() -> None:
                self._record_bar(bar)
                self.journal.record_equity(equity_row)

            self.journal.defer(journal_bar)
        for trigger in self.risk_manager.on_equity(bar.open_ms, equity):
            await self._trigger(trigger, bar)
        if self.risk_manager.state.flatten_pending and not pending:
            if snap.qty:
                await self._flatten()  # a halt's earlier flatten did not complete: again
            else:
                self._flattened()  # the earlier flatten's order filled after it was followed

        decision: dict[str, Any] = {
            "account": self.account,
            "bar_ms": bar.open_ms,
            "time_ms": now_ms(),
            "model_tag": self.agent.tag,
            "config_hash": self.settings.config_hash,
            "position": snap.qty,
            "equity": equity,
            "price": bar.close,
            "verdict": "",
            "reason": "",
            "orders": [],
        }
        with phase("observation"):
            observed = self._observe(matrix, state, equity)
        if observed is None:
            decision.update(verdict="warmup", reason=f"{len(self._bars)} bars: features not ready")
            self.journal.record_decision(decision)
            return decision
        features, obs = observed
        with phase("policy"):
            action, self._policy_state = self.agent.predict(
                obs, state=self._policy_state, deterministic=True
            )
        target = float(self.layout.target_exposure(action))
        target_qty, trade = replay.rebalance_order(
            equity,
            state[acc.LEVERAGE],
            self.layout.settings[replay.C_MARGIN_USAGE],
            self.layout.settings[replay.C_REBALANCE_BAND],
            self.contract.lot_size,
            bar.close,
            snap.qty,
            target,
        )
        target_qty = float(target_qty)
        decision.update(
            obs_hash=hashlib.sha256(obs.tobytes()).hexdigest()[:16],
            features=json_safe(
                dict(zip(self.agent.pipeline.columns, features.tolist(), strict=True))
            ),
            action=json_safe(np.asarray(action).reshape(-1).tolist()),
            target=target,
            target_qty=target_qty,
        )
        with phase("drift"):
            await self._check_drift(features, bar)

        risk_state = self.risk_manager.state
        order_qty: float | None = None
        if risk_state.state != RUNNING:
            decision.update(verdict=risk_state.state, reason=risk_state.reason)
        elif pending:
            oldest = min(p["bar_ms"] or bar.open_ms for p in pending)
            decision.update(
                verdict="held",
                reason=f"order {pending[0]['client_id']} ({pending[0]['status']}) still in flight",
            )
            if (bar.open_ms - oldest) / self.timeframe_ms >= self.settings.risk.max_unsettled_bars:
                await self._trigger(
                    Trigger(
                        "unsettled_order",
                        f"order {pending[0]['client_id']} unsettled for "
                        f"{(bar.open_ms - oldest) // self.timeframe_ms} bars",
                        halt=True,
                    ),
                    bar,
                    flatten=False,
                )
        elif not trade:
            decision.update(verdict="no_trade")
        else:
            with phase("last_price"):
                last_price = None if pricing is None else await pricing
            verdict = self.risk_manager.check_order(
                target_qty=target_qty,
                qty=snap.qty,
                price=bar.close,
                equity=equity,
                orders_last_minute=self._orders_last_minute(),
                stale_reason=self._stale_reason(bar),
                last_price=last_price,
            )
            decision.update(verdict=verdict.verdict, reason=verdict.reason)
            if verdict.verdict == "refused":
                self._metrics.rejects.labels("risk").inc()
                self.events.emit(
                    "risk",
                    {"kind": "order_refused", "reason": verdict.reason, "bar_ms": bar.open_ms},
                )
            else:
                order_qty = verdict.target_qty
        delta = 0.0 if order_qty is None else ex.round_qty(order_qty - snap.qty)
        intent = None
        with phase("journal_decision"), self.journal.batch():
            # the bar, its equity, the decision and the order's intent, committed together
            # before the order is sent
            if delta != 0:
                assert order_qty is not None
                reduces = abs(order_qty) <= abs(snap.qty) and order_qty * snap.qty >= 0
                intent = ex.intend(bar.open_ms, "rebalance", delta, reduce_only=reduces)
                decision["orders"] = [intent.row["client_id"]]
            self.journal.record_decision(decision)
        if intent is not None:
            await ex.send(intent, bar_arrived=started)
        return decision

    async def _failed_bar(
        self, bar: Bar, exc: Exception, rate_limited: bool = False
    ) -> dict[str, Any]:
        """Journal a bar the exchange did not let us handle; halt after too many in a row.

        A bar lost to the rate limit (``rate_limited``) is journaled with verdict
        ``rate_limited`` and does not count toward ``max_error_bars``: the trader is
        backing off as the exchange asked, which is not the exchange failing.
        """
        if rate_limited:
            reason = f"rate limited: {type(exc).__name__}: {exc}"[:500]
        else:
            self._error_bars += 1
            reason = f"exchange error: {type(exc).__name__}: {exc}"[:500]
        log.warning("bar %s: %s", bar.open_ms, reason)
        decision = {
            "account": self.account,
            "bar_ms": bar.open_ms,
            "time_ms": now_ms(),
            "model_tag": self.agent.tag,
            "config_hash": self.settings.config_hash,
            "price": bar.close,
            "verdict": "rate_limited" if rate_limited else "error",
            "reason": reason,
            "orders": [],
        }
        existing = self.journal.decision(self.account, bar.open_ms)
        with self.journal.batch():
            self._record_bar(bar)
            if existing is not None:  # the decision was journaled before the failure: keep it
                self.journal.update_decision(
                    self.account, bar.open_ms, reason=(existing["reason"] + "; " + reason)[:2000]
                )
                decision = {**existing, "reason": existing["reason"] + "; " + reason}
            else:
                self.journal.record_decision(decision)
        limit = self.settings.max_error_bars
        if self._error_bars >= limit and self.risk_manager.trading:
            await self._trigger(
                Trigger(
                    "exchange_errors",
                    f"{self._error_bars} bars in a row failed; last: {reason}",
                    halt=True,
                ),
                bar,
                flatten=False,
            )
        return decision

    def _account_vector(self, snap: AccountSnapshot) -> np.ndarray:
        """The account as the env's kernels see it (wallet, position, entry, leverage)."""
        state = acc.new_account_state(snap.wallet, self.agent.env_config.leverage)
        state[acc.QTY] = snap.qty
        state[acc.ENTRY] = snap.entry if snap.qty else 0.0
        return state

    def _feature_matrix(self) -> Any:
        """The fitted pipeline on the bar buffer (a :class:`envs.features.FeatureMatrix`)."""
        market = bars_to_market(list(self._bars), self.symbol, self.timeframe, source="stream")
        return market, self.agent.pipeline.transform(market)

    def _observe(
        self, features: Any, state: np.ndarray, equity: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(latest feature row, observation) as the env builds them from
        :meth:`_feature_matrix`; None while warming up."""
        market, matrix = features
        n = len(self._bars)
        if n == 0 or matrix.valid_from > n - self.agent.env_config.window:
            return None
        episode = np.zeros(replay.EPISODE_STATE_SIZE, dtype=np.float64)
        episode[replay.EP_T] = n - 1
        episode[replay.EP_EQUITY] = equity
        replay.write_observation(
            np.ascontiguousarray(matrix.values, dtype=np.float32).reshape(-1),
            replay.pack_bars(market),
            self.layout.params,
            self.layout.settings,
            state,
            episode,
            self._obs,
        )
        return matrix.values[-1].astype(np.float64), self._obs.copy()

    async def _check_drift(self, features: np.ndarray, bar: Bar) -> None:
        score = self.drift_monitor.update(features)
        if score is None:
            return
        self._metrics.drift.set(score if np.isfinite(score) else 1e9)
        if self.drift_monitor.scores is not None:
            for name, value in zip(
                self.drift_monitor.names, self.drift_monitor.scores, strict=True
            ):
                self._metrics.feature_drift.labels(name).set(value if np.isfinite(value) else 1e9)
        limits = self.settings.risk
        above = limits.drift_threshold is not None and score > limits.drift_threshold
        if above and not self._drift_alarm:
            worst = self.drift_monitor.report()["features"][0]
            await self._trigger(
                Trigger(
                    "drift",
                    f"feature drift {score:.2f} (worst: {worst['name']}, live mean "
                    f"{worst['live_mean']:.3g} vs training {worst['train_mean']:.3g} ± "
                    f"{worst['train_std']:.3g}); drift_threshold is {limits.drift_threshold}",
                    halt=limits.drift_action == "halt",
                ),
                bar,
            )
        self._drift_alarm = above

    # ------------------------------------------------------------------ risk actions
    async def _trigger(self, trigger: Trigger, bar: Bar | None, flatten: bool = True) -> None:
        """Journal and emit a risk trigger; halt (and flatten) when it says so."""
        self._metrics.risk_events.labels(trigger.kind).inc()
        self.events.emit(
            "risk",
            {
                "kind": trigger.kind,
                "reason": trigger.reason,
                "halt": trigger.halt,
                "bar_ms": bar.open_ms if bar else None,
            },
        )
        log.warning("risk %s: %s", trigger.kind, trigger.reason)
        if trigger.halt and self.risk_manager.state.state not in (HALTED, KILLED):
            self.risk_manager.halt(HALTED, f"{trigger.kind}: {trigger.reason}")
            self._set_status(HALTED, self.risk_manager.state.reason)
            self._persist_risk()
            if flatten:
                self.risk_manager.state.flatten_pending = True
                self._persist_risk()
                await self._flatten()

    async def _flatten(self) -> dict[str, Any] | None:
        """Cancel our open orders and close the position with a reduce-only market order."""
        ex = self.executor
        for row in ex.in_flight():
            await ex.cancel(row)
        snap = await ex.snapshot()
        self._snapshot = snap
        if snap.qty == 0:
            self._flattened()
            return None
        flattens = int(self.journal.get_state(self.account, "flattens", 0)) + 1
        self.journal.set_state(self.account, "flattens", flattens)
        bar_ms = self._bars[-1].open_ms if self._bars else 0
        row = await ex.place(bar_ms, f"flatten{flattens}", -snap.qty, reduce_only=True)
        await self._sync_fills()
        if row["status"] == "filled" and row["filled"] >= abs(snap.qty):
            self._flattened()
        return row

    def _flattened(self) -> None:
        if self.risk_manager.state.flatten_pending:
            self.risk_manager.state.flatten_pending = False
            self._persist_risk()

    # ------------------------------------------------------------------ reconciliation
    async def reconcile(self, startup: bool = False) -> tuple[bool, str]:
        """Compare the journal with the exchange (orders in flight, open orders, fills,
        position, balance), resolve what can be, journal the result; (ok, reason)."""
        mismatches: list[dict[str, Any]] = []
        summary: dict[str, Any] = {"startup": startup}
        ok, reason = True, ""
        ex = self.executor
        try:
            ex.reload()
            before = {r["client_id"]: r["status"] for r in ex.in_flight()}
            pending = await ex.settle_all()
            tries = 1
            while startup and any(p["status"] in ("sent", "unknown") for p in pending):
                if tries >= STARTUP_SETTLE_TRIES:
                    break
                await asyncio.sleep(self.settings.settle_grace_s / (STARTUP_SETTLE_TRIES - 1))
                pending = await ex.settle_all()
                tries += 1
            for cid, status in before.items():
                row = self.journal.order(self.account, cid)
                if row and row["status"] != status:
                    mismatches.append(
                        {
                            "kind": "order_settled",
                            "client_id": cid,
                            "was": status,
                            "now": row["status"],
                        }
                    )
            unknown = [p for p in pending if p["status"] in ("sent", "unknown")]
            if unknown:
                ok = False
                reason = (
                    f"order {unknown[0]['client_id']} has an unknown outcome and the exchange "
                    "cannot be asked about it"
                )
            open_orders = await ex.call("fetch_open_orders", self.symbol)
            for order in open_orders:
                cid = order.get("clientOrderId") or ""
                if cid and self.journal.order(self.account, cid) is not None:
                    continue
                key = cid or f"ext-{order.get('id')}"
                inserted = self.journal.insert_order(
                    {
                        "account": self.account,
                        "client_id": key[:64],
                        "bar_ms": None,
                        "intent": "external",
                        "symbol": self.symbol,
                        "side": order.get("side") or "",
                        "qty": float(order.get("amount") or 0.0),
                        "ord_type": order.get("type") or "",
                        "reduce_only": bool(order.get("reduceOnly")),
                        "status": "open",
                        "exchange_id": str(order.get("id")),
                        "filled": float(order.get("filled") or 0.0),
                        "reason": "placed outside this trader: left alone",
                        "sends": 0,
                        "external": True,
                        "created_ms": now_ms(),
                        "updated_ms": now_ms(),
                    }
                )
                if inserted:
                    mismatches.append(
                        {"kind": "external_order", "client_id": key, "id": order.get("id")}
                    )
                    self.events.emit(
                        "risk",
                        {
                            "kind": "external_order",
                            "reason": f"order {order.get('id')} ({cid or 'no client id'}) was not placed by this trader; left alone",
                        },
                    )
            new_fills = await self._sync_fills()
            if new_fills and not startup:
                mismatches.append({"kind": "fills_imported", "count": len(new_fills)})
            snap = await ex.snapshot()
            self._snapshot = snap
            journal_qty = self.journal.fill_position(self.account)
            baseline = self.journal.get_state(self.account, "baseline_qty")
            if baseline is None:
                baseline = round(snap.qty - journal_qty, 12)
                self.journal.set_state(self.account, "baseline_qty", baseline)
                if baseline:
                    mismatches.append({"kind": "position_adopted", "qty": baseline})
            expected = ex.round_qty(baseline + journal_qty)
            summary.update(
                exchange_position=snap.qty,
                journal_position=expected,
                wallet=snap.wallet,
                open_orders=len(open_orders),
                in_flight=len(pending),
            )
            if abs(expected - snap.qty) > self.contract.lot_size / 2:
                ok = False
                reason = (
                    f"position on the exchange is {snap.qty}, the journal's fills give {expected}"
                )
                mismatches.append({"kind": "position", "exchange": snap.qty, "journal": expected})
            balance = self._check_balance(snap, summary)
            if balance is not None:
                mismatches.append(balance)
                if self.settings.halt_on_balance_mismatch and ok:
                    ok = False
                    reason = (
                        f"wallet balance on the exchange is {snap.wallet:.6f} USDT, the journal "
                        f"expects {balance['journal']:.6f} (halt_on_balance_mismatch is set)"
                    )
        except RATE_LIMIT_ERRORS as exc:
            ok = False
            reason = f"{RATE_LIMITED_PREFIX}{type(exc).__name__}: {exc}"[:500]
        except Exception as exc:
            ok = False
            reason = f"exchange unreachable: {type(exc).__name__}: {exc}"[:500]
        for m in mismatches:
            self._metrics.reconciliation_mismatches.labels(m["kind"]).inc()
        self._metrics.reconciliations.labels(str(ok).lower()).inc()
        self.journal.record_reconciliation(
            self.account, ok, json_safe(mismatches), json_safe(summary)
        )
        self.events.emit(
            "status",
            {"kind": "reconciliation", "ok": ok, "reason": reason, "mismatches": mismatches},
        )
        self._last_reconcile = time.monotonic()
        return ok, reason

    def _check_balance(
        self, snap: AccountSnapshot, summary: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Compare the exchange's wallet with the journal's expectation (see
        :mod:`serving.trader.balance`) and adopt the exchange's figure as the next
        reconciliation's start; the ``balance`` mismatch when they differ by more than
        ``balance_tolerance``, else None."""
        mark = BalanceMark.from_dict(self.journal.get_state(self.account, "balance"))
        start = mark or BalanceMark(snap.wallet, snap.qty, snap.entry)
        fills = self.journal.fills_since(self.account, start.through_ms)
        expected = expect_balance(start, fills, self.contract.lot_size)
        adopted = BalanceMark(
            snap.wallet, snap.qty, snap.entry, expected.through_ms, expected.through_ids
        )
        self.journal.set_state(self.account, "balance", adopted.to_dict())
        if mark is None:  # the first reconciliation: the exchange's figure is the start
            return None
        difference = snap.wallet - expected.wallet
        summary.update(expected_wallet=expected.wallet, balance_difference=difference)
        if abs(difference) <= self.settings.balance_tolerance:
            return None
        text = (
            f"wallet balance on the exchange is {snap.wallet:.6f} USDT, the journal expects "
            f"{expected.wallet:.6f} (last reconciled {mark.wallet:.6f}, realised "
            f"{expected.realised:+.6f}, fees {-expected.fees:+.6f}, funding "
            f"{-expected.funding:+.6f} over {expected.fills} fills): {difference:+.6f} "
            "unexplained; the exchange's figure is adopted"
        )
        log.warning("reconciliation: %s", text)
        self.events.emit(
            "risk",
            {
                "kind": "balance_mismatch",
                "reason": text,
                "halt": self.settings.halt_on_balance_mismatch,
            },
        )
        return {
            "kind": "balance",
            "exchange": snap.wallet,
            "journal": expected.wallet,
            "difference": difference,
        }

    async def _periodic_reconcile(self) -> None:
        async with self._lock:
            ok, reason = await self.reconcile()
            if not ok and reason.startswith(RATE_LIMITED_PREFIX):
                # Not a difference: the exchange asked us to slow down. Again once its
                # pause is over, rather than halting.
                retry_in = max(self.executor.pause.remaining(), RECONCILE_RETRY_S)
                self._last_reconcile = time.monotonic() - self.settings.reconcile_every_s + retry_in
                log.warning("reconciliation put off by %.1f s: %s", retry_in, reason)
                return
            if not ok:
                await self._trigger(
                    Trigger("reconciliation", reason, halt=True), None, flatten=False
                )

    async def _sync_fills(self) -> list[dict[str, Any]]:
        return await self.executor.sync_fills(self.journal.last_fill_ms(self.account))

    # ------------------------------------------------------------------ lease
    def _acquire_lease(self) -> None:
        try:
            self.journal.acquire_lease(
                self.account, self.holder, self.settings.lease_ttl_s, is_dead=_holder_is_dead
            )
        except LeaseHeld as exc:
            raise TraderRefused(str(exc)) from exc
        self._holding_lease = True
        self._lease_renewed = time.monotonic()

    def _next_renewal_in(self) -> float:
        return self._lease_renewed + self.settings.lease_ttl_s / 3 - time.monotonic()

    def _renew_lease_if_due(self) -> None:
        if self._next_renewal_in() > 0:
            return
        try:
            self._acquire_lease()
        except TraderRefused as exc:
            self._holding_lease = False
            self.risk_manager.halt(HALTED, f"lost the lease: {exc.reason}")
            self._stop.set()
            self._reason = exc.reason
            self.events.emit("risk", {"kind": "lease_lost", "reason": exc.reason, "halt": True})

    def _next_reconcile_in(self) -> float:
        return self._last_reconcile + self.settings.reconcile_every_s - time.monotonic()

    # ------------------------------------------------------------------ helpers
    def _orders_last_minute(self) -> int:
        cutoff = time.monotonic() - 60.0
        times = self.executor.sent_times
        while times and times[0] < cutoff:
            times.pop(0)
        return len(times)

    def _stale_reason(self, bar: Bar) -> str:
        """Why ``bar`` is too old to add risk on ("" when fresh); real-time markets only (a
        replay's market time is not the machine's)."""
        if self.settings.bar_interval_s is not None:
            return ""
        age_ms = now_ms() - bar.close_ms
        limit = self.settings.risk.stale_after_bars * self.timeframe_ms
        if age_ms > limit:
            return f"bar {bar.open_ms} closed {age_ms / 1000:.0f} s ago; stale_after_bars is {self.settings.risk.stale_after_bars}"
        return ""

    async def _last_price(self) -> float | None:
        ticker = await self.executor.call("fetch_ticker", self.symbol)
        return float(ticker["last"]) if ticker.get("last") is not None else None

    def _persist_risk(self) -> None:
        state = self.risk_manager.state.to_dict()
        # One write per change rather than per bar: the bar count matters only for the
        # cooldown, i.e. while halted or killed.
        compared = state if state["state"] in (HALTED, KILLED) else {**state, "bars_total": None}
        if compared != self._persisted_risk:
            self.journal.set_state(self.account, "risk", state)
            self._persisted_risk = compared
        self._metrics.halted.set(0 if self.risk_manager.trading else 1)

    def _set_status(self, status: str, reason: str) -> None:
        if status == self._status and reason == self._reason:
            return
        self._status, self._reason = status, reason
        self.events.emit("status", {"state": status, "reason": reason})
        self._metrics.halted.set(0 if status == RUNNING else 1)

    # ------------------------------------------------------------------ control
    async def pause(self, reason: str) -> None:
        """Stop placing orders (the position is kept) until :meth:`resume`."""
        async with self._lock:
            if self.risk_manager.state.state != RUNNING:
                raise ControlRefused(f"cannot pause: the trader is {self.risk_manager.state.state}")
            self.risk_manager.state.state = PAUSED
            self.risk_manager.state.reason = reason or "paused by the operator"
            self._persist_risk()
            self.events.emit("risk", {"kind": "pause", "reason": self.risk_manager.state.reason})
            self._set_status(PAUSED, self.risk_manager.state.reason)

    async def resume(self) -> None:
        """Trade again after a pause, a halt (once the cooldown has passed) or a kill.

        Raises:
            ControlRefused: the cooldown after a halt has not passed yet.
        """
        async with self._lock:
            left = self.risk_manager.cooldown_left()
            if left:
                raise ControlRefused(f"cooldown: {left} more bar(s) before trading may resume")
            was = self.risk_manager.state.state
            self.risk_manager.resume()
            self._persist_risk()
            self.events.emit("risk", {"kind": "resume", "reason": f"resumed from {was}"})
            self._set_status(RUNNING, "")

    async def kill(self, reason: str) -> str | None:
        """Kill switch: halt until :meth:`resume`, cancel our open orders and flatten the
        position with a reduce-only market order.

        The halt is journaled before the exchange is called, so it holds whatever the
        exchange answers. When the flatten cannot complete now (a timeout, a rate limit, an
        outage, an order not filled yet) it stays pending and is tried again at every bar.

        Returns:
            None once the position is flat, else why the flatten is still pending.
        """
        async with self._lock:
            reason = reason or "kill switch"
            self.risk_manager.halt(KILLED, reason)
            self.risk_manager.state.flatten_pending = True
            self._persist_risk()
            self._metrics.risk_events.labels("kill").inc()
            self.events.emit("risk", {"kind": "kill", "reason": reason, "halt": True})
            self._set_status(KILLED, reason)
            try:
                await self._flatten()
            except (ccxt.NetworkError, ccxt.ExchangeError) as exc:
                why = f"flatten failed ({type(exc).__name__}: {exc})"[:300]
                log.warning("kill switch: %s; tried again at every bar", why)
                self._metrics.risk_events.labels("flatten_failed").inc()
                self.events.emit("risk", {"kind": "flatten_failed", "reason": why, "halt": True})
                return why
            if self.risk_manager.state.flatten_pending:
                return "the reduce-only order has not filled yet"
            return None

    # ------------------------------------------------------------------ health
    def live(self) -> bool:
        """False once the trader has stopped or refused to trade."""
        return self._status not in ("stopped", "refused")

    def ready(self) -> tuple[bool, str]:
        """True only after reconciliation and while bars are fresh."""
        if not self._reconciled:
            return (
                False,
                f"not reconciled yet ({self._status}{': ' + self._reason if self._reason else ''})",
            )
        if self._status in ("stopped", "refused"):
            return False, f"{self._status}: {self._reason}"
        since = self._last_bar_wall or self._loop_started
        if since is None:
            return False, "waiting for the first bar"
        age = time.monotonic() - since
        limit = self.settings.risk.stale_after_bars * self.bar_interval_s
        if age > limit:
            return False, f"no bar for {age:.1f} s (stale after {limit:.1f} s)"
        return True, ""

    # ------------------------------------------------------------------ read model
    def status(self) -> dict[str, Any]:
        ready, why = self.ready()
        last = self._bars[-1].open_ms if self._bars else None
        return json_safe(
            {
                "state": self._status,
                "reason": self._reason,
                "mode": self.settings.mode,
                "account": self.account,
                "symbol": self.symbol,
                "timeframe": self.timeframe,
                "model_tag": self.agent.tag,
                "config_hash": self.settings.config_hash,
                "last_bar_ms": last,
                "bars_seen": self._bars_seen,
                "bars_total": self.risk_manager.state.bars_total,
                "equity": self._equity,
                "position": self._snapshot.qty if self._snapshot else None,
                "reconciled": self._reconciled,
                "ready": ready,
                "ready_reason": why,
                "lease_holder": self.holder if self._holding_lease else None,
                "started_ms": self._started_ms,
                "drift": self.drift_monitor.score,
                "flatten_pending": self.risk_manager.state.flatten_pending,
            }
        )

    def position(self) -> dict[str, Any]:
        snap = self._snapshot
        if snap is None:
            return {"qty": None}
        mark = self._bars[-1].close if self._bars else snap.mark
        state = self._account_vector(snap)
        leverage = self.agent.env_config.leverage
        return json_safe(
            {
                "symbol": self.symbol,
                "qty": snap.qty,
                "side": "long" if snap.qty > 0 else "short" if snap.qty < 0 else "flat",
                "entry": snap.entry if snap.qty else None,
                "mark": mark,
                "upnl": float(acc.unrealised_pnl(state, mark)) if mark else snap.upnl,
                "wallet": snap.wallet,
                "leverage": leverage,
                "margin_ratio": float(acc.margin_ratio(state, self.layout.params, mark))
                if mark
                else None,
                "liquidation_price": snap.liquidation_price
                or (
                    float(acc.liquidation_price(self.layout.params, snap.qty, snap.entry, leverage))
                    if snap.qty
                    else None
                ),
            }
        )

    def open_orders(self) -> list[dict[str, Any]]:
        rows = self.journal.orders(self.account, statuses=IN_FLIGHT, external=None)
        return [_public(r) for r in rows]

    def orders(self, limit: int = 100) -> list[dict[str, Any]]:
        return [_public(r) for r in self.journal.orders(self.account, limit=limit, external=None)]

    def fills(self, limit: int = 100) -> list[dict[str, Any]]:
        return [_public(r) for r in self.journal.fills(self.account, limit)]

    def decisions(self, limit: int = 100, before_ms: int | None = None) -> list[dict[str, Any]]:
        return [_public(r) for r in self.journal.decisions(self.account, limit, before_ms)]

    def decision(self, bar_ms: int) -> dict[str, Any] | None:
        return explain_decision(self.journal, self.account, bar_ms)

    def equity(self, limit: int = 1000) -> list[dict[str, Any]]:
        return [_public(r) for r in self.journal.equity(self.account, limit)]

    def risk(self) -> dict[str, Any]:
        state = self.risk_manager.state
        return json_safe(
            {
                "limits": self.settings.risk.__dict__,
                "state": state.state,
                "reason": state.reason,
                "cooldown_bars_left": self.risk_manager.cooldown_left(),
                "day": state.day,
                "day_start_equity": state.day_start_equity,
                "peak_equity": state.peak_equity,
                "orders_last_minute": self._orders_last_minute(),
                "events": [
                    {"id": e["id"], "time_ms": e["time_ms"], **e["data"]}
                    for e in self.journal.events(self.account, ["risk"], limit=50)
                ],
            }
        )

    def drift(self) -> dict[str, Any]:
        return json_safe(
            {
                **self.drift_monitor.report(),
                "threshold": self.settings.risk.drift_threshold,
                "action": self.settings.risk.drift_action,
            }
        )

    def bars(self, limit: int = 500) -> list[dict[str, Any]]:
        return [_public(r) for r in self.journal.bars(self.account, limit)]

    def config(self) -> dict[str, Any]:
        from sqlalchemy.engine import make_url

        values = self.settings.to_dict()
        values["journal_url"] = make_url(self.settings.journal_url).render_as_string(
            hide_password=True
        )
        return json_safe(
            {
                "trader": values,
                "agent": {
                    "tag": self.agent.tag,
                    "algo": self.agent.manifest.get("algo"),
                    "symbol": self.symbol,
                    "timeframe": self.timeframe,
                    "window": self.agent.env_config.window,
                    "leverage": self.agent.env_config.leverage,
                    "config_hash": self.agent.manifest.get("config_hash"),
                },
            }
        )

    def close(self) -> None:
        """Release the journal's connections (the client is the caller's)."""
        self.journal.close()


def explain_decision(journal: Journal, account: str, bar_ms: int) -> dict[str, Any] | None:
    """The whole journal entry of one bar: what the agent saw, did and what followed."""
    row = journal.decision(account, bar_ms)
    if row is None:
        return None
    orders = journal.orders(account, bar_ms=bar_ms)
    fills = [f for o in orders for f in journal.fills_of(account, o["client_id"])]
    bar = journal.bar(account, bar_ms)
    return json_safe(
        {
            **_public(row),
            "bar": _public(bar) if bar else None,
            "order_rows": [_public(o) for o in orders],
            "fills": [_public(f) for f in fills],
        }
    )


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return json_safe({k: v for k, v in row.items() if k != "account"})


def _brief(decision: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "bar_ms",
        "verdict",
        "reason",
        "target",
        "target_qty",
        "position",
        "equity",
        "price",
        "orders",
        "latency_ms",
        "action",
        "obs_hash",
    )
    return {k: decision.get(k) for k in keep}
