/**
 * The page's data, kept outside the DOM: every view of the service merged by key, so that a
 * snapshot and the event stream may overlap (a reconnect's catch-up, an event racing a
 * fetch) without a duplicate, and a stream resumed after its last event id leaves no gap.
 */
import type {
  Bar,
  Decision,
  EquityPoint,
  Fill,
  MonitorEvent,
  Order,
  RiskEvent,
} from "./types";

/** Where a bar went in a time-ordered list. */
export type BarChange = "append" | "replace" | "insert" | "none";

/** Insert or replace `bar` in `bars` (ordered by `bar_ms`, unique). O(1) at the end. */
export function upsertBar(bars: Bar[], bar: Bar): BarChange {
  const n = bars.length;
  if (n === 0 || bar.bar_ms > bars[n - 1].bar_ms) {
    bars.push(bar);
    return "append";
  }
  const i = lowerBound(bars, bar.bar_ms, (b) => b.bar_ms);
  if (i < n && bars[i].bar_ms === bar.bar_ms) {
    if (sameBar(bars[i], bar)) return "none";
    bars[i] = bar;
    return "replace";
  }
  bars.splice(i, 0, bar);
  return "insert";
}

function sameBar(a: Bar, b: Bar): boolean {
  return (
    a.open === b.open && a.high === b.high && a.low === b.low && a.close === b.close &&
    a.volume === b.volume
  );
}

/** First index whose key is >= `key` in an array sorted by `keyOf`. */
export function lowerBound<T>(items: readonly T[], key: number, keyOf: (t: T) => number): number {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keyOf(items[mid]) < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Milliseconds of a ccxt timeframe such as "1m", "5m", "1h", "1d". */
export function timeframeMs(timeframe: string): number {
  const match = /^(\d+)([smhdw])$/.exec(timeframe.trim());
  if (!match) throw new Error(`timeframe ${JSON.stringify(timeframe)} is not like "5m" or "1h"`);
  const unit = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 }[match[2] as "s"];
  return Number(match[1]) * unit;
}

/** Opening time of the bar of length `tfMs` that contains `timeMs`. */
export function barOf(timeMs: number, tfMs: number): number {
  return Math.floor(timeMs / tfMs) * tfMs;
}

/** Drawdown per point: equity / running peak - 1 (a fraction, 0 at a new peak). */
export function drawdowns(equity: readonly EquityPoint[]): number[] {
  let peak = -Infinity;
  return equity.map((p) => {
    peak = Math.max(peak, p.equity);
    return peak > 0 ? p.equity / peak - 1 : 0;
  });
}

/** Fill kinds that are trades on the chart (funding is a payment, not a trade). */
const TRADE_KINDS = new Set(["trade", "liquidation", "adl"]);

/** Target exposures closer than this are the same target. */
const TARGET_EPS = 1e-9;

/**
 * Everything the page shows that accumulates: bars, fills, decisions, orders, equity and risk
 * events, each merged by its key; plus the id of the last event applied.
 */
export class MonitorModel {
  bars: Bar[] = [];
  equity: EquityPoint[] = [];
  readonly fills = new Map<string, Fill>();
  /** The same fills ordered by (time, exec id): the chart's and tables' order. */
  readonly fillList: Fill[] = [];
  readonly decisions = new Map<number, Decision>();
  /** The same decisions ordered by bar. */
  readonly decisionList: Decision[] = [];
  readonly openOrders = new Map<string, Order>();
  readonly riskEvents = new Map<number, RiskEvent>();
  /** The decision bar of each of our orders, by client id (from decisions and order events). */
  readonly orderBar = new Map<string, number>();
  /** Id of the last event applied; the stream resumes after it. */
  lastEventId = 0;
  /** Wall time the service recorded the newest bar (event or decision time), ms. */
  lastBarWallMs: number | null = null;
  /** What the last applied bar event did to the bar list. */
  lastBarChange: BarChange = "none";
  /** Bumped when fills or decisions change, so the chart redraws markers only then. */
  markersVersion = 0;

  constructor(public timeframeMs: number) {}

  setBars(rows: readonly Bar[]): void {
    for (const bar of [...rows].sort((a, b) => a.bar_ms - b.bar_ms)) upsertBar(this.bars, bar);
  }

  setEquity(rows: readonly EquityPoint[]): void {
    for (const p of rows) this.upsertEquity(p);
  }

  upsertEquity(point: EquityPoint): void {
    const slim = { bar_ms: point.bar_ms, equity: point.equity };
    const n = this.equity.length;
    if (n === 0 || slim.bar_ms > this.equity[n - 1].bar_ms) {
      this.equity.push(slim);
      return;
    }
    const i = lowerBound(this.equity, slim.bar_ms, (p) => p.bar_ms);
    if (i < n && this.equity[i].bar_ms === slim.bar_ms) this.equity[i] = slim;
    else this.equity.splice(i, 0, slim);
  }

  addFill(fill: Fill): boolean {
    const known = this.fills.get(fill.exec_id);
    const merged = { ...known, ...fill };
    this.fills.set(fill.exec_id, merged);
    const list = this.fillList;
    if (known) {
      list[list.indexOf(known)] = merged;
      return false;
    }
    const n = list.length;
    if (n === 0 || fillAfter(merged, list[n - 1])) list.push(merged);
    else {
      let i = lowerBound(list, merged.time_ms, (f) => f.time_ms);
      while (i < n && list[i].time_ms === merged.time_ms && list[i].exec_id < merged.exec_id) i++;
      list.splice(i, 0, merged);
    }
    this.markersVersion++;
    return true;
  }

  addDecision(decision: Decision): boolean {
    const known = this.decisions.get(decision.bar_ms);
    const merged = { ...known, ...decision };
    this.decisions.set(decision.bar_ms, merged);
    const list = this.decisionList;
    const n = list.length;
    if (n === 0 || merged.bar_ms > list[n - 1].bar_ms) list.push(merged);
    else {
      const i = lowerBound(list, merged.bar_ms, (d) => d.bar_ms);
      if (list[i]?.bar_ms === merged.bar_ms) list[i] = merged;
      else list.splice(i, 0, merged);
    }
    for (const id of merged.orders ?? []) this.orderBar.set(id, decision.bar_ms);
    if (!known || known.target !== merged.target || !sameOrders(known, merged)) {
      this.markersVersion++;
    }
    if (merged.time_ms != null && (this.bars.length === 0 ||
        decision.bar_ms >= this.bars[this.bars.length - 1].bar_ms)) {
      this.lastBarWallMs = Math.max(this.lastBarWallMs ?? 0, merged.time_ms);
    }
    return !known;
  }

  /** An order row: kept while in flight, dropped once final; its decision bar remembered. */
  addOrder(order: Order): void {
    if (order.bar_ms != null && !order.external) this.orderBar.set(order.client_id, order.bar_ms);
    if (IN_FLIGHT.has(order.status)) this.openOrders.set(order.client_id, order);
    else this.openOrders.delete(order.client_id);
  }

  setOpenOrders(rows: readonly Order[]): void {
    this.openOrders.clear();
    for (const o of rows) this.addOrder(o);
  }

  addRiskEvent(event: RiskEvent): void {
    this.riskEvents.set(event.id, event);
  }

  /**
   * Apply one stream event; returns false for an event already applied (id at or below the
   * last one), which a resumed stream may repeat.
   */
  apply(event: MonitorEvent): boolean {
    if (event.id <= this.lastEventId) return false;
    this.lastEventId = event.id;
    const data = event.data;
    switch (event.kind) {
      case "bar": {
        this.lastBarChange = upsertBar(this.bars, data as unknown as Bar);
        this.lastBarWallMs = Math.max(this.lastBarWallMs ?? 0, event.time_ms);
        break;
      }
      case "decision": {
        const d = data as unknown as Decision;
        this.addDecision({ ...d, time_ms: d.time_ms ?? event.time_ms });
        if (typeof d.equity === "number") this.upsertEquity({ bar_ms: d.bar_ms, equity: d.equity });
        break;
      }
      case "order":
        this.addOrder(data as unknown as Order);
        break;
      case "fill":
        this.addFill(data as unknown as Fill);
        break;
      case "risk":
        this.addRiskEvent({ ...(data as unknown as RiskEvent), id: event.id, time_ms: event.time_ms });
        break;
      default:
        break; // "status": the caller refreshes the status view
    }
    return true;
  }

  /** Fills newest first (at most `limit`). */
  latestFills(limit: number): Fill[] {
    return this.fillList.slice(-limit).reverse();
  }

  /** Decisions newest first (at most `limit`). */
  latestDecisions(limit: number): Decision[] {
    return this.decisionList.slice(-limit).reverse();
  }

  /** Risk events newest first (at most `limit`). */
  latestRiskEvents(limit: number): RiskEvent[] {
    return [...this.riskEvents.values()].sort((a, b) => b.id - a.id).slice(0, limit);
  }

  /** The bar a fill belongs to on the chart: the bar its execution time falls in. */
  fillBar(fill: Fill): number {
    return barOf(fill.time_ms, this.timeframeMs);
  }

  /**
   * The bar whose decision led to `fill` (its journal entry explains it): the bar of the order
   * the fill executed; for a fill of no known order, the last bar closed before it.
   */
  decisionBarOfFill(fill: Fill): number {
    const known = fill.client_id ? this.orderBar.get(fill.client_id) : undefined;
    return known ?? this.fillBar(fill) - this.timeframeMs;
  }

  /** Trade fills executed in [fromMs, toMs), oldest first (funding payments are not trades). */
  tradeFills(fromMs = -Infinity, toMs = Infinity): Fill[] {
    const list = this.fillList;
    const out: Fill[] = [];
    for (let i = lowerBound(list, fromMs, (f) => f.time_ms); i < list.length; i++) {
      const f = list[i];
      if (f.time_ms >= toMs) break;
      if (TRADE_KINDS.has(f.kind) && f.qty > 0) out.push(f);
    }
    return out;
  }

  /**
   * Decisions of bars in [fromMs, toMs] that changed the target exposure without an order:
   * what the agent wanted but did not trade (refused by risk, within the rebalance band,
   * paused...). Oldest first.
   */
  untradedTargetChanges(fromMs = -Infinity, toMs = Infinity): Decision[] {
    const list = this.decisionList;
    const start = lowerBound(list, fromMs, (d) => d.bar_ms);
    let previous: number | null = null;
    for (let k = start - 1; k >= 0 && previous === null; k--) previous = list[k].target ?? null;
    const out: Decision[] = [];
    for (let i = start; i < list.length && list[i].bar_ms <= toMs; i++) {
      const d = list[i];
      if (d.target == null) continue;
      const changed = previous === null || Math.abs(d.target - previous) > TARGET_EPS;
      if (changed && !(d.orders && d.orders.length)) out.push(d);
      previous = d.target;
    }
    return out;
  }
}

function fillAfter(a: Fill, b: Fill): boolean {
  return a.time_ms > b.time_ms || (a.time_ms === b.time_ms && a.exec_id > b.exec_id);
}

function sameOrders(a: Decision, b: Decision): boolean {
  const x = a.orders ?? [];
  const y = b.orders ?? [];
  return x.length === y.length && x.every((id, i) => id === y[i]);
}

/** Order states in flight (serving/trader/journal.py IN_FLIGHT). */
export const IN_FLIGHT = new Set(["intent", "sent", "unknown", "open"]);
