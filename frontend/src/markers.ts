/**
 * Chart markers: the agent's fills (arrows, coloured by side, on the bar they executed in)
 * and its decisions that changed the target without trading (violet circles), so the two
 * are never confused. Pure: built from the model, unit-tested.
 */
import type { MonitorModel } from "./model";
import type { Decision, Fill } from "./types";
import { fmt } from "./health";

export interface MarkerColors {
  buy: string;
  sell: string;
  decision: string;
}

/** A chart marker in the page's terms (time in ms; the chart converts). */
export interface PageMarker {
  id: string;
  timeMs: number;
  position: "aboveBar" | "belowBar";
  shape: "arrowUp" | "arrowDown" | "circle";
  color: string;
  text: string;
}

export const FILL_PREFIX = "f:";
export const DECISION_PREFIX = "d:";

/** Markers of every trade fill and untraded target change whose bar is on the chart. */
export function buildMarkers(model: MonitorModel, colors: MarkerColors): PageMarker[] {
  const bars = model.bars;
  if (bars.length === 0) return [];
  const first = bars[0].bar_ms;
  const last = bars[bars.length - 1].bar_ms;
  const fills: PageMarker[] = [];
  for (const fill of model.tradeFills()) {
    const t = model.fillBar(fill);
    if (t < first || t > last) continue; // its bar has not closed yet (or scrolled away)
    const buy = fill.side === "buy";
    fills.push({
      id: FILL_PREFIX + fill.exec_id,
      timeMs: t,
      position: buy ? "belowBar" : "aboveBar",
      shape: buy ? "arrowUp" : "arrowDown",
      color: buy ? colors.buy : colors.sell,
      text: `${buy ? "B" : "S"} ${trimQty(fill.qty)}`,
    });
  }
  const decisions: PageMarker[] = [];
  for (const d of model.untradedTargetChanges()) {
    if (d.bar_ms < first || d.bar_ms > last) continue;
    decisions.push({
      id: DECISION_PREFIX + d.bar_ms,
      timeMs: d.bar_ms,
      position: "aboveBar",
      shape: "circle",
      color: colors.decision,
      text: `T ${fmt(d.target, 2)}`,
    });
  }
  return mergeByTime(fills, decisions);
}

/** Two time-ordered marker lists as one; on the same bar, `first`'s markers come first. */
export function mergeByTime(first: PageMarker[], second: PageMarker[]): PageMarker[] {
  const out: PageMarker[] = new Array(first.length + second.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < first.length && j < second.length) {
    out[k++] = second[j].timeMs < first[i].timeMs ? second[j++] : first[i++];
  }
  while (i < first.length) out[k++] = first[i++];
  while (j < second.length) out[k++] = second[j++];
  return out;
}

function trimQty(qty: number): string {
  return String(Number(qty.toPrecision(6)));
}

/** One line describing a fill: side, size, price and fee (the chart's hover text). */
export function describeFill(fill: Fill): string {
  const liq = fill.kind === "trade" ? "" : ` (${fill.kind})`;
  return `Fill${liq}: ${fill.side.toUpperCase()} ${trimQty(fill.qty)} @ ${fmt(fill.price, 2)} · fee ${fmt(fill.fee, 4)} USDT`;
}

/** One line describing a decision: target, verdict and reason. */
export function describeDecision(d: Decision): string {
  const why = d.reason ? ` (${d.reason})` : "";
  return `Decision: target ${fmt(d.target, 3)} · ${d.verdict}${why} · not traded`;
}
