// The page's verdict on the service, the meaning of control answers, the chart's markers.
import { describe, expect, it } from "vitest";
import { controlOutcome, formatAge, healthOf, type HealthInput } from "../src/health";
import { buildMarkers, describeFill } from "../src/markers";
import { MonitorModel } from "../src/model";
import type { Status } from "../src/types";

const running: Status = { state: "running", reason: "", mode: "paper" };

function input(over: Partial<HealthInput>): HealthInput {
  return { status: running, unreachable: false, bars: 10, sinceLastBarMs: 1_000, staleAfterMs: 60_000, ...over };
}

describe("healthOf", () => {
  it("gives each degraded state its own verdict", () => {
    expect(healthOf(input({ unreachable: true })).health).toBe("down");
    expect(healthOf(input({ status: null })).health).toBe("down");
    expect(healthOf(input({ bars: 0 })).health).toBe("no-bars");
    expect(healthOf(input({ bars: 0, status: { ...running, state: "starting" } })).health).toBe("starting");
    const halted = healthOf(input({ status: { ...running, state: "halted", reason: "max_drawdown: 21 %" } }));
    expect(halted).toMatchObject({ health: "halted", level: "bad" });
    expect(halted.text).toContain("max_drawdown: 21 %");
    expect(healthOf(input({ status: { ...running, state: "killed" } })).health).toBe("killed");
    expect(healthOf(input({ status: { ...running, state: "paused" } })).health).toBe("paused");
    expect(healthOf(input({ status: { ...running, state: "refused", reason: "lease" } })).health).toBe("refused");
    expect(healthOf(input({})).health).toBe("ok");
  });

  it("calls data stale only past the threshold", () => {
    expect(healthOf(input({ sinceLastBarMs: 60_000 })).health).toBe("ok");
    const stale = healthOf(input({ sinceLastBarMs: 61_000 }));
    expect(stale.health).toBe("stale");
    expect(stale.text).toContain("1 min 01 s");
    expect(healthOf(input({ sinceLastBarMs: 10 ** 9, staleAfterMs: null })).health).toBe("ok");
  });

  it("puts a halt above staleness and being down above everything", () => {
    const old = { sinceLastBarMs: 10 ** 7 };
    expect(healthOf(input({ ...old, status: { ...running, state: "halted" } })).health).toBe("halted");
    expect(healthOf(input({ ...old, unreachable: true, status: { ...running, state: "halted" } })).health).toBe("down");
  });
});

describe("controlOutcome", () => {
  it("tells a wrong token from disabled control (both 403) and from a missing one (401)", () => {
    expect(controlOutcome("kill", 200, "").kind).toBe("done");
    expect(controlOutcome("kill", 403, "wrong control token").kind).toBe("wrong-token");
    expect(controlOutcome("kill", 403, "control is disabled: no PHEMEX_RL_CONTROL_TOKEN is configured").kind)
      .toBe("disabled");
    expect(controlOutcome("pause", 401, "control needs 'Authorization: Bearer <token>'").kind).toBe("no-token");
    const refused = controlOutcome("resume", 409, "cooldown: 3 more bar(s)");
    expect(refused.kind).toBe("refused");
    expect(refused.message).toContain("cooldown: 3 more bar(s)");
    expect(controlOutcome("kill", null, "").kind).toBe("unreachable");
    expect(controlOutcome("kill", 500, "boom").message).toContain("HTTP 500");
  });

  it("says when a kill halted but the exchange has not flattened the position yet", () => {
    const halted = { ...running, state: "killed", flatten_pending: true, flatten_detail: "flatten failed (RequestTimeout)" };
    const pending = controlOutcome("kill", 200, "", halted);
    expect(pending.kind).toBe("pending");
    expect(pending.message).toContain("not flat yet: flatten failed (RequestTimeout)");
    expect(controlOutcome("kill", 200, "", { ...halted, flatten_pending: false }).kind).toBe("done");
    expect(healthOf(input({ status: halted })).text).toContain("flattening the position");
    expect(healthOf(input({ status: { ...halted, flatten_pending: false } })).text).toContain("position flattened");
  });
});

describe("formatAge", () => {
  it("reads like a clock", () => {
    expect(formatAge(0)).toBe("0 s");
    expect(formatAge(59_999)).toBe("59 s");
    expect(formatAge(65_000)).toBe("1 min 05 s");
    expect(formatAge(2 * 3_600_000 + 3 * 60_000)).toBe("2 h 03 min");
    expect(formatAge(3 * 86_400_000 + 4 * 3_600_000)).toBe("3 d 4 h");
  });
});

describe("buildMarkers", () => {
  const TF = 60_000;
  const colors = { buy: "green", sell: "red", decision: "violet" };

  it("marks fills by side on their bar and untraded target changes apart, in time order", () => {
    const m = new MonitorModel(TF);
    m.setBars([0, 1, 2, 3].map((i) => ({ bar_ms: i * TF, open: 1, high: 2, low: 0.5, close: 1.5, volume: 1 })));
    m.addDecision({ bar_ms: 0, verdict: "ok", target: 1, orders: ["c1"] });
    m.addDecision({ bar_ms: 1 * TF, verdict: "refused", target: -1, orders: [] });
    m.addFill({ exec_id: "e1", kind: "trade", side: "buy", qty: 0.25, price: 1, fee: 0.001, time_ms: TF + 5, client_id: "c1" });
    m.addFill({ exec_id: "e2", kind: "trade", side: "sell", qty: 0.5, price: 1, fee: 0.001, time_ms: 9 * TF });
    const markers = buildMarkers(m, colors);
    // e2 executed in a bar that has not closed yet: not drawn until it has
    expect(markers.map((x) => [x.id, x.timeMs, x.shape, x.color])).toEqual([
      ["f:e1", TF, "arrowUp", "green"],
      ["d:60000", TF, "circle", "violet"],
    ]);
    expect(markers[0].text).toBe("B 0.25");
  });

  it("builds only the markers of the bars asked for, with the target before them", () => {
    const m = new MonitorModel(TF);
    m.setBars([0, 1, 2, 3, 4, 5].map((i) => ({ bar_ms: i * TF, open: 1, high: 2, low: 0.5, close: 1.5, volume: 1 })));
    m.addDecision({ bar_ms: 0, verdict: "no_trade", target: 0.5, orders: [] });
    m.addDecision({ bar_ms: 2 * TF, verdict: "no_trade", target: 0.5, orders: [] }); // unchanged
    m.addDecision({ bar_ms: 3 * TF, verdict: "refused", target: -0.5, orders: [] }); // changed
    for (const i of [0, 1, 3, 4]) {
      m.addFill({ exec_id: `e${i}`, kind: "trade", side: "buy", qty: 1, price: 1, fee: 0, time_ms: i * TF + 1 });
    }
    const ids = buildMarkers(m, colors, 2 * TF, 3 * TF).map((x) => x.id);
    // bars 2..3: the fill of bar 3 and the change at bar 3 (bar 2 repeats the target of bar 0)
    expect(ids).toEqual(["f:e3", `d:${3 * TF}`]);
    expect(buildMarkers(m, colors).length).toBe(6); // 4 fills + the changes at bars 0 and 3
  });

  it("describes a fill with side, size, price and fee", () => {
    const text = describeFill({ exec_id: "e", kind: "trade", side: "sell", qty: 0.109, price: 86240.1, fee: 5.6886, time_ms: 0 });
    expect(text).toBe("Fill: SELL 0.109 @ 86,240.10 · fee 5.6886 USDT");
  });
});
