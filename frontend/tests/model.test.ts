// The page's data handling: merging by key, resuming the stream without a gap or duplicate,
// placing fills and decisions, drawdown. Expected values are worked out by hand here.
import { describe, expect, it } from "vitest";
import { barOf, drawdowns, MonitorModel, timeframeMs, upsertBar } from "../src/model";
import type { Bar, Decision, Fill, MonitorEvent } from "../src/types";

const TF = 5 * 60_000;
const T0 = 1_741_467_600_000; // 2025-03-08 21:00 UTC, a 5m boundary

function bar(i: number, close = 100 + i): Bar {
  return { bar_ms: T0 + i * TF, open: close - 1, high: close + 2, low: close - 2, close, volume: 1 };
}

function fill(id: string, timeMs: number, side = "buy", clientId: string | null = null, kind = "trade"): Fill {
  return { exec_id: id, kind, side, qty: 0.1, price: 100, fee: 0.01, time_ms: timeMs, client_id: clientId };
}

function event(id: number, kind: string, data: object, timeMs = 1_000): MonitorEvent {
  return { id, kind, time_ms: timeMs, data: data as Record<string, unknown> };
}

describe("upsertBar", () => {
  it("appends, replaces and inserts keeping one bar per time, in order", () => {
    const bars: Bar[] = [];
    expect(upsertBar(bars, bar(0))).toBe("append");
    expect(upsertBar(bars, bar(2))).toBe("append");
    expect(upsertBar(bars, bar(1))).toBe("insert");
    expect(upsertBar(bars, bar(1))).toBe("none");
    expect(upsertBar(bars, bar(2, 500))).toBe("replace");
    expect(bars.map((b) => b.bar_ms)).toEqual([T0, T0 + TF, T0 + 2 * TF]);
    expect(bars[2].close).toBe(500);
  });
});

describe("timeframes", () => {
  it("reads ccxt timeframes and floors times to their bar", () => {
    expect(timeframeMs("5m")).toBe(300_000);
    expect(timeframeMs("1h")).toBe(3_600_000);
    expect(timeframeMs("1d")).toBe(86_400_000);
    expect(() => timeframeMs("5 minutes")).toThrow(/5 minutes/);
    expect(barOf(T0 + TF + 1, TF)).toBe(T0 + TF);
    expect(barOf(T0 + TF, TF)).toBe(T0 + TF);
  });
});

describe("drawdowns", () => {
  it("is equity over the running peak minus one", () => {
    const eq = [100, 110, 99, 121, 108.9].map((equity, i) => ({ bar_ms: i, equity }));
    const dd = drawdowns(eq);
    // peaks 100, 110, 110, 121, 121: 0, 0, 99/110-1 = -0.1, 0, 108.9/121-1 = -0.1
    expect(dd[0]).toBe(0);
    expect(dd[1]).toBe(0);
    expect(dd[2]).toBeCloseTo(-0.1, 12);
    expect(dd[3]).toBe(0);
    expect(dd[4]).toBeCloseTo(-0.1, 12);
  });
});

describe("the event stream", () => {
  it("applies each event id once: a resumed stream repeating ids adds nothing", () => {
    const m = new MonitorModel(TF);
    const events = [
      event(1, "bar", bar(0)),
      event(2, "decision", { bar_ms: T0, verdict: "ok", target: 0.5, orders: ["c1"], equity: 1000 }),
      event(3, "order", { client_id: "c1", bar_ms: T0, side: "buy", qty: 0.1, status: "open" }),
      event(4, "fill", fill("x1", T0 + TF, "buy", "c1")),
      event(5, "order", { client_id: "c1", bar_ms: T0, side: "buy", qty: 0.1, status: "filled" }),
    ];
    for (const e of events) expect(m.apply(e)).toBe(true);
    // a reconnect resuming after id 3 replays 4 and 5, then 6 is new
    const replay = [events[3], events[4], event(6, "bar", bar(1))];
    expect(replay.map((e) => m.apply(e))).toEqual([false, false, true]);
    expect(m.lastEventId).toBe(6);
    expect(m.fills.size).toBe(1);
    expect(m.fillList.map((f) => f.exec_id)).toEqual(["x1"]);
    expect(m.bars.map((b) => b.bar_ms)).toEqual([T0, T0 + TF]);
    expect(m.openOrders.size).toBe(0); // filled: no longer open
    expect(m.equity).toEqual([{ bar_ms: T0, equity: 1000 }]);
  });

  it("merges a snapshot that overlaps the stream by key, without duplicates", () => {
    const m = new MonitorModel(TF);
    m.apply(event(10, "fill", fill("a", T0 + TF)));
    m.apply(event(11, "bar", bar(1)));
    // the snapshot (fetched while the stream was opening) holds the same rows and older ones
    m.setBars([bar(1), bar(0)]);
    m.addFill(fill("a", T0 + TF));
    m.addFill(fill("b", T0));
    expect(m.bars.map((b) => b.bar_ms)).toEqual([T0, T0 + TF]);
    expect(m.fillList.map((f) => f.exec_id)).toEqual(["b", "a"]);
    expect(m.latestFills(1)[0].exec_id).toBe("a");
  });

  it("keeps risk events by id and the wall time of the last bar", () => {
    const m = new MonitorModel(TF);
    m.apply(event(1, "bar", bar(0), 5_000));
    m.apply(event(2, "risk", { kind: "pause", reason: "lunch" }, 6_000));
    expect(m.lastBarWallMs).toBe(5_000);
    expect(m.latestRiskEvents(5)).toEqual([{ id: 2, time_ms: 6_000, kind: "pause", reason: "lunch" }]);
  });
});

describe("fills and decisions", () => {
  it("explains a fill by the decision that placed its order, else by the bar before it", () => {
    const m = new MonitorModel(TF);
    m.addDecision({ bar_ms: T0, verdict: "ok", target: 1, orders: ["c1"] });
    const placed = fill("x", T0 + TF, "buy", "c1"); // executed at the next bar's open
    expect(m.fillBar(placed)).toBe(T0 + TF);
    expect(m.decisionBarOfFill(placed)).toBe(T0);
    // a flatten order is known from its order event, not from a decision's orders
    m.addOrder({ client_id: "k1", bar_ms: T0 + 3 * TF, side: "sell", qty: 0.1, status: "open" });
    expect(m.decisionBarOfFill(fill("y", T0 + 4 * TF + 7, "sell", "k1"))).toBe(T0 + 3 * TF);
    // unknown order: the last bar closed before the execution
    expect(m.decisionBarOfFill(fill("z", T0 + 6 * TF + 10))).toBe(T0 + 5 * TF);
  });

  it("lists target changes that did not trade, not the traded ones nor repeats", () => {
    const m = new MonitorModel(TF);
    const d = (i: number, target: number | null, orders: string[] = [], verdict = "no_trade"): Decision => ({
      bar_ms: T0 + i * TF, verdict, target, orders,
    });
    m.addDecision(d(0, 0.5)); // first target: a change, no order
    m.addDecision(d(1, 0.5)); // same target
    m.addDecision(d(2, 1.0, ["c"], "ok")); // traded: a fill marks it, not a decision marker
    m.addDecision(d(4, -1.0, [], "refused")); // refused by risk: shown
    m.addDecision(d(3, null, [], "warmup")); // no target: ignored (and inserted out of order)
    expect(m.untradedTargetChanges().map((x) => x.bar_ms)).toEqual([T0, T0 + 4 * TF]);
    expect(m.latestDecisions(2).map((x) => x.bar_ms)).toEqual([T0 + 4 * TF, T0 + 3 * TF]);
  });

  it("counts funding payments as fills but not as trades", () => {
    const m = new MonitorModel(TF);
    m.addFill(fill("t", T0, "buy"));
    m.addFill(fill("f", T0 + TF, "sell", null, "funding"));
    expect(m.fills.size).toBe(2);
    expect(m.tradeFills().map((f) => f.exec_id)).toEqual(["t"]);
  });
});
