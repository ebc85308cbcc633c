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

/**
 * Markers of the trade fills and untraded target changes on the bars from `fromMs` to `toMs`
 * (default: all bars on the chart). The page asks for the visible bars and a margin: the
 * chart redraws every marker it is given, so thousands off screen would slow each update.
 */
export function buildMarkers(
  model: MonitorModel,
  colors: MarkerColors,
  fromMs = -Infinity,
  toMs = Infinity,
): PageMarker[] {
  const bars = model.bars;
  if (bars.length === 0) return [];
  const first = Math.max(bars[0].bar_ms, fromMs);
  const last = Math.min(bars[bars.length - 1].bar_ms, toMs);
  const fills: PageMarker[] = [];
  // a fill's bar has closed only once a later bar is on the chart
  for (const fill of model.tradeFills(first, last + model.timeframeMs)) {
    const t = model.fillBar(fill);
    if (t < first || t > last) continue;
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
  for (const d of model.untradedTargetChanges(first, last)) {
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
