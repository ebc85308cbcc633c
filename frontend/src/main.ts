/**
 * The operators' monitoring page: loads the service's views, follows its event stream and
 * sends control requests. Data handling lives in model.ts / health.ts / markers.ts; this
 * module wires it to the DOM and the charts.
 */
import "./style.css";
import { API_BASE, ApiError, control, getJson, loadToken, saveToken } from "./api";
import { EquityChart, PriceChart, themeFromCss } from "./chart";
import {
  fmt,
  fmtPct,
  fmtSigned,
  fmtTime,
  formatAge,
  healthOf,
  type ControlOutcome,
} from "./health";
import {
  buildMarkers,
  DECISION_PREFIX,
  describeDecision,
  describeFill,
  FILL_PREFIX,
} from "./markers";
import { drawdowns, lowerBound, MonitorModel, timeframeMs, upsertBar } from "./model";
import { EventStream, type LinkState } from "./stream";
import type {
  Bar,
  Decision,
  Drift,
  EquityPoint,
  Fill,
  JournalEntry,
  MonitorEvent,
  Order,
  Position,
  RiskState,
  Status,
} from "./types";

const INITIAL_BARS = 1000;
const INITIAL_ROWS = 500;
const CATCH_UP_ROWS = 200;
/** Decisions carry the features: the first page is small so the page draws at once. */
const FIRST_DECISIONS = 100;
const TABLE_ROWS = 50;
const POLL_MS = 2000;

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

function esc(value: unknown): string {
  return String(value ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function signClass(v: number | null | undefined): string {
  return v == null || v === 0 ? "" : v > 0 ? "pos" : "neg";
}

// ---------------------------------------------------------------- state
// eslint-disable-next-line prefer-const
let firstLoad: Promise<void>;
const page = {
  model: new MonitorModel(5 * 60_000),
  status: null as Status | null,
  unreachable: false,
  link: "connecting" as LinkState,
  position: null as Position | null,
  risk: null as RiskState | null,
  drift: null as Drift | null,
  staleAfterMs: null as number | null,
  loaded: false,
  renderedMarkers: "",
};

let theme = themeFromCss();
const priceChart = new PriceChart($("price-chart"), theme);
const equityChart = new EquityChart($("equity-chart"), theme);

// ---------------------------------------------------------------- loading
/** The status (mode, model, timeframe) and the stale-data threshold from the config. */
async function loadStatus(): Promise<void> {
  const status = await getJson<Status>("/status");
  setStatus(status);
  if (status.timeframe) page.model.timeframeMs = timeframeMs(status.timeframe);
}

async function loadConfig(): Promise<void> {
  const config = await getJson<Record<string, any>>("/config");
  const trader = config?.trader?.trader;
  const intervalS = trader?.bar_interval_s ?? page.model.timeframeMs / 1000;
  const staleBars = trader?.risk?.stale_after_bars;
  page.staleAfterMs = typeof staleBars === "number" ? staleBars * intervalS * 1000 : null;
}

/**
 * Bars, fills, decisions and open orders (at most `rows` of each, `bars` bars), merged into
 * the model, then the charts and tables; equity, config and the small views follow.
 */
async function loadViews(rows: number, bars: number): Promise<void> {
  const statusLoaded = loadStatus();
  const [barRows, fills, decisions, orders] = await Promise.all([
    getJson<Bar[]>(`/bars?limit=${bars}`),
    getJson<Fill[]>(`/fills?limit=${rows}`),
    getJson<Decision[]>(`/decisions?limit=${Math.min(rows, FIRST_DECISIONS)}`),
    getJson<Order[]>("/orders"),
  ]);
  await statusLoaded; // the timeframe places the fills
  const m = page.model;
  const hadBars = m.bars.length;
  const lastBefore = hadBars ? m.bars[hadBars - 1].bar_ms : -1;
  let inserted = false;
  for (const bar of barRows.sort((a, b) => a.bar_ms - b.bar_ms)) {
    const change = upsertBar(m.bars, bar);
    if (change === "insert" || (change === "replace" && bar.bar_ms !== lastBefore)) inserted = true;
  }
  for (const d of decisions) m.addDecision(d);
  for (const f of fills) m.addFill(f);
  m.setOpenOrders(orders);
  if (!hadBars || inserted) redrawCharts();
  else for (const bar of m.bars.slice(lowerIndex(m.bars, lastBefore))) appendToChart(bar);
  renderMarkers();
  renderTables();
  renderOrders();
  renderHealth();
  if (!page.loaded) performance.mark("monitor:first-render");
  page.loaded = true;
  await Promise.all([loadEquity(Math.max(rows, bars)), loadConfig(), refreshState(), loadOlderDecisions(rows)]);
}

async function loadEquity(limit: number): Promise<void> {
  const equity = await getJson<EquityPoint[]>(`/equity?limit=${limit}`);
  page.model.setEquity(equity);
  redrawEquity();
  renderPosition();
}

/** Decisions older than the first page, up to `rows` in all (their markers and table rows). */
async function loadOlderDecisions(rows: number): Promise<void> {
  const m = page.model;
  while (m.decisionList.length && m.decisionList.length < rows) {
    const oldest = m.decisionList[0].bar_ms;
    const page_ = await getJson<Decision[]>(`/decisions?limit=${FIRST_DECISIONS}&before_ms=${oldest}`);
    for (const d of page_) m.addDecision(d);
    if (page_.length < FIRST_DECISIONS) break;
  }
  renderMarkers();
}

function lowerIndex(bars: Bar[], ms: number): number {
  let i = bars.length;
  while (i > 0 && bars[i - 1].bar_ms >= ms) i--;
  return i;
}

// ---------------------------------------------------------------- the charts' window
/**
 * The charts hold the latest `chartWindow` bars (and their equity), not every bar the page
 * has: lightweight-charts rebuilds its view of a whole series on each update, so an update's
 * cost grows with the series. Scrolling back to the window's left edge loads the next
 * `chartWindow` older bars; a window grown to twice its size by live bars is trimmed.
 * 0: no window (every bar on the chart).
 */
let chartWindow = 10_000;
/** Opening time of the first bar on the chart. */
let chartFromMs = -Infinity;
let chartBars = 0;

function chartStart(): number {
  return lowerBound(page.model.bars, chartFromMs, (b) => b.bar_ms);
}

function redrawCharts(): void {
  const bars = page.model.bars;
  const n = bars.length;
  if (chartWindow <= 0) chartFromMs = -Infinity;
  else if (n - chartStart() > 2 * chartWindow || (chartFromMs === -Infinity && n > chartWindow)) {
    chartFromMs = bars[n - chartWindow].bar_ms;
  }
  const shown = bars.slice(chartStart());
  chartBars = shown.length;
  priceChart.setBars(shown);
  redrawEquity();
  renderMarkers();
}

function appendToChart(bar: Bar, isNew = true): void {
  priceChart.updateBar(bar);
  if (isNew) chartBars++;
  if (chartWindow > 0 && chartBars > 2 * chartWindow) redrawCharts();
}

function redrawEquity(): void {
  const eq = page.model.equity;
  const from = lowerBound(eq, chartFromMs, (p) => p.bar_ms);
  const dd = drawdowns(eq);
  equityChart.setEquity(eq.slice(from), dd.slice(from), equityPeak(eq));
}

/** Older bars onto the chart when the view reaches its left edge. */
function extendChartBack(): void {
  const range = priceChart.chart.timeScale().getVisibleLogicalRange();
  const start = chartStart();
  if (!range || range.from > 20 || start === 0 || chartWindow <= 0) return;
  const from = Math.max(0, start - chartWindow);
  chartFromMs = page.model.bars[from].bar_ms;
  redrawCharts();
  const added = start - from;
  priceChart.chart.timeScale().setVisibleLogicalRange({ from: range.from + added, to: range.to + added });
}

/** Position, risk, drift and status: small views refreshed on events and on a timer. */
async function refreshState(): Promise<void> {
  const [status, position, risk, drift, orders] = await Promise.all([
    getJson<Status>("/status"),
    getJson<Position>("/positions"),
    getJson<RiskState>("/risk"),
    getJson<Drift>("/drift"),
    getJson<Order[]>("/orders"),
  ]);
  setStatus(status);
  page.position = position;
  page.risk = risk;
  page.drift = drift;
  for (const e of risk.events ?? []) page.model.addRiskEvent(e);
  page.model.setOpenOrders(orders);
  renderPosition();
  renderRisk();
  renderDrift();
  renderOrders();
}

let refreshTimer: number | undefined;
function refreshSoon(): void {
  window.clearTimeout(refreshTimer);
  refreshTimer = window.setTimeout(() => {
    refreshState().then(markReachable, markUnreachable);
  }, 150);
}

function markReachable(): void {
  if (page.unreachable) {
    page.unreachable = false;
    renderHealth();
  }
}

function markUnreachable(exc: unknown): void {
  if (exc instanceof ApiError && exc.status === null) {
    page.unreachable = true;
  } else if (exc instanceof ApiError && exc.status === 503) {
    // the service answers but its trading loop is not running: shown by /status
    getJson<Status>("/status").then(setStatus, () => (page.unreachable = true));
  } else {
    console.warn(String(exc));
  }
  renderHealth();
}

// ---------------------------------------------------------------- stream
function applyEvents(events: MonitorEvent[]): void {
  performance.mark("monitor:apply:start");
  const m = page.model;
  let stateChanged = false;
  let tablesChanged = false;
  for (const event of events) {
    if (!m.apply(event)) continue;
    if (event.kind === "bar") {
      const bar = event.data as unknown as Bar;
      if (m.lastBarChange === "insert") redrawCharts();
      else if (m.lastBarChange !== "none") appendToChart(bar, m.lastBarChange === "append");
      stateChanged = true;
    } else if (event.kind === "decision") {
      const d = event.data as unknown as Decision;
      if (typeof d.equity === "number" && !equityChart.appendPoint({ bar_ms: d.bar_ms, equity: d.equity })) {
        redrawEquity();
      }
      tablesChanged = true;
    } else if (event.kind === "fill" || event.kind === "order") {
      tablesChanged = true;
      stateChanged = true;
    } else {
      stateChanged = true; // risk, status
    }
  }
  renderMarkers();
  if (tablesChanged) renderTables();
  renderHealth();
  performance.measure("monitor:apply", "monitor:apply:start");
  if (stateChanged) refreshSoon();
}

function setLink(state: LinkState): void {
  page.link = state;
  const el = $("link");
  el.dataset.state = state;
  $("link-text").textContent =
    state === "live" ? "live" : state === "connecting" ? "connecting…" : "disconnected · reconnecting…";
  renderHealth();
}

const stream = new EventStream(API_BASE, () => page.model.lastEventId, {
  onEvents: applyEvents,
  onState: setLink,
  onOpen: () => {
    // Cover the time the stream was away (and its race with the first load): every view is
    // merged by key, so what is there already is not doubled.
    firstLoad
      .then(() => (page.loaded ? loadViews(CATCH_UP_ROWS, CATCH_UP_ROWS) : loadViews(INITIAL_ROWS, INITIAL_BARS)))
      .then(markReachable, markUnreachable);
  },
});

// ---------------------------------------------------------------- rendering
function setStatus(status: Status): void {
  page.status = status;
  page.unreachable = false;
  const mode = status.mode ?? "";
  $("topbar").dataset.mode = mode;
  const modeEl = $("mode");
  modeEl.dataset.mode = mode;
  modeEl.textContent = mode === "live" ? "LIVE · real money" : mode || "—";
  document.title = `${mode === "live" ? "LIVE · " : ""}${status.symbol ?? ""} · phemex-rl monitor`;
  $("symbol").textContent = `${status.symbol ?? "—"} · ${status.timeframe ?? ""}`;
  $("model").textContent = status.model_tag ?? status.model ?? "—";
  $("config-hash").textContent = status.config_hash ?? "—";
  renderControls();
  renderHealth();
}

function renderHealth(): void {
  const m = page.model;
  const since = m.lastBarWallMs === null ? null : Date.now() - m.lastBarWallMs;
  const verdict = healthOf({
    status: page.status,
    unreachable: page.unreachable || (page.link === "reconnecting" && page.status === null),
    bars: m.bars.length,
    sinceLastBarMs: since,
    staleAfterMs: page.staleAfterMs,
  });
  const down = page.unreachable || page.link === "reconnecting";
  const banner = $("banner");
  const health = down && verdict.health !== "down" ? "down" : verdict.health;
  banner.dataset.health = health;
  banner.dataset.level = health === "down" ? "bad" : verdict.level;
  banner.textContent =
    health === "down" && verdict.health !== "down"
      ? `Service unreachable: showing data as of the disconnect; reconnecting… (${verdict.text})`
      : verdict.text;
  $("last-bar").textContent = since === null ? "last bar —" : `last bar ${formatAge(since)} ago`;
  if (page.unreachable && page.link === "live") setLinkText("service unreachable");
}

function setLinkText(text: string): void {
  $("link").dataset.state = "down";
  $("link-text").textContent = text;
}

/**
 * Markers of the bars in view and as many again on each side (redrawn when the view moves
 * past that margin): an update then costs the same with 50,000 bars as with 500.
 */
function renderMarkers(): void {
  const m = page.model;
  const n = m.bars.length;
  if (n === 0) return;
  const range = priceChart.chart.timeScale().getVisibleLogicalRange();
  const start = chartStart(); // chart index k is bar start + k
  let from = start;
  let to = n - 1;
  if (range) {
    const span = Math.max(50, Math.ceil(range.to - range.from));
    from = Math.min(n - 1, Math.max(start, start + Math.floor(range.from) - span));
    to = Math.max(from, Math.min(n - 1, start + Math.ceil(range.to) + span));
  }
  const fromMs = m.bars[from].bar_ms;
  const toMs = m.bars[to].bar_ms;
  const key = `${m.markersVersion}:${fromMs}:${toMs}`;
  if (key === page.renderedMarkers) return;
  page.renderedMarkers = key;
  priceChart.setMarkers(
    buildMarkers(m, { buy: theme.up, sell: theme.down, decision: theme.decision }, fromMs, toMs),
  );
}

let markersFrame = 0;
priceChart.chart.timeScale().subscribeVisibleLogicalRangeChange(() => {
  if (markersFrame) return;
  markersFrame = requestAnimationFrame(() => {
    markersFrame = 0;
    extendChartBack();
    renderMarkers();
  });
});

function renderPosition(): void {
  const p = page.position;
  const rows: [string, string, string?][] = p && p.qty !== null
    ? [
        ["Side", p.side ?? "—"],
        ["Size", fmt(p.qty, 4), signClass(p.qty)],
        ["Entry", fmt(p.entry)],
        ["Mark", fmt(p.mark)],
        ["Unrealised PnL", fmtSigned(p.upnl), signClass(p.upnl)],
        ["Wallet", fmt(p.wallet)],
        ["Leverage", p.leverage == null ? "—" : `${fmt(p.leverage, 1)}×`],
        ["Margin ratio", fmtPct(p.margin_ratio, 2)],
        ["Liquidation", fmt(p.liquidation_price)],
      ]
    : [["Position", "not known yet"]];
  $("position").innerHTML = rows
    .map(([k, v, cls]) => `<dt>${esc(k)}</dt><dd class="${cls ?? ""}" data-field="${esc(k)}">${esc(v)}</dd>`)
    .join("");
  const eq = page.model.equity;
  const last = eq.length ? eq[eq.length - 1].equity : page.status?.equity ?? null;
  const peak = equityPeak(eq);
  const dd = last !== null && peak > 0 ? last / peak - 1 : null;
  $("equity-summary").innerHTML =
    `<span>equity <strong>${esc(fmt(last))}</strong> USDT</span>` +
    `<span>drawdown <strong class="${signClass(dd)}">${esc(fmtPct(dd, 2))}</strong></span>`;
}

let peakCache = { n: 0, peak: -Infinity, lastMs: -Infinity, last: NaN };
/** The running peak of the equity, incremental while points are only appended. */
function equityPeak(eq: EquityPoint[]): number {
  const c = peakCache;
  const appendOnly =
    c.n > 0 && c.n <= eq.length && eq[c.n - 1].bar_ms === c.lastMs && eq[c.n - 1].equity === c.last;
  let peak = appendOnly ? c.peak : -Infinity;
  for (let i = appendOnly ? c.n : 0; i < eq.length; i++) peak = Math.max(peak, eq[i].equity);
  const tail = eq[eq.length - 1];
  peakCache = { n: eq.length, peak, lastMs: tail?.bar_ms ?? -Infinity, last: tail?.equity ?? NaN };
  return peak;
}

function renderRisk(): void {
  const r = page.risk;
  if (!r) return;
  const cooldown = r.cooldown_bars_left ? ` · cooldown ${r.cooldown_bars_left} bar(s)` : "";
  $("risk-state").innerHTML =
    `<span class="state-pill" data-state="${esc(r.state)}">${esc(r.state)}</span> ` +
    `<span class="muted">${esc(r.reason ?? "")}${esc(cooldown)}</span>`;
  const events = page.model.latestRiskEvents(20);
  $("risk-events").innerHTML = events.length
    ? events
        .map(
          (e) =>
            `<li class="${e.halt ? "halt" : ""}"><span class="muted">${esc(fmtTime(e.time_ms))}</span> ` +
            `<strong>${esc(e.kind)}</strong> ${esc(e.reason ?? "")}</li>`,
        )
        .join("")
    : `<li class="empty">no risk events</li>`;
}

function renderDrift(): void {
  const d = page.drift;
  if (!d) return;
  const score = typeof d.score === "number" ? d.score : page.status?.drift ?? null;
  const over = score !== null && typeof d.threshold === "number" && score > d.threshold;
  const worst = (d as Record<string, any>).worst ?? (d as Record<string, any>).worst_feature;
  $("drift").innerHTML =
    `<div class="kv-inline"><span>score <strong class="${over ? "neg" : ""}">${esc(fmt(score, 3))}</strong></span>` +
    `<span>threshold ${esc(fmt(d.threshold ?? null, 3))}</span><span>on breach: ${esc(d.action ?? "—")}</span></div>` +
    (worst ? `<p class="muted">worst feature: ${esc(typeof worst === "string" ? worst : JSON.stringify(worst))}</p>` : "");
}

function renderOrders(): void {
  const orders = [...page.model.openOrders.values()];
  $("orders").innerHTML =
    `<thead><tr><th>client id</th><th>side</th><th>qty</th><th>type</th><th>status</th><th>filled</th><th>reduce</th><th>bar</th></tr></thead><tbody>` +
    (orders.length
      ? orders
          .map(
            (o) =>
              `<tr><td><code>${esc(o.client_id)}</code>${o.external ? " (external)" : ""}</td><td class="${o.side === "buy" ? "pos" : "neg"}">${esc(o.side)}</td>` +
              `<td>${esc(fmt(o.qty, 4))}</td><td>${esc(o.ord_type ?? "")}</td><td>${esc(o.status)}</td>` +
              `<td>${esc(fmt(o.filled ?? 0, 4))}</td><td>${o.reduce_only ? "yes" : ""}</td><td>${esc(fmtTime(o.bar_ms))}</td></tr>`,
          )
          .join("")
      : `<tr><td colspan="8" class="empty">no open orders</td></tr>`) +
    "</tbody>";
}

/**
 * A table body whose rows are kept by key: a row is rebuilt only when its HTML changed, and
 * the body's children are replaced only when the order changed (a new fill: one new row).
 */
class KeyedRows {
  private readonly rows = new Map<string, { html: string; el: HTMLTableRowElement }>();
  private readonly body: HTMLTableSectionElement;

  constructor(table: HTMLTableElement, header: string[], private readonly empty: string) {
    table.innerHTML = `<thead><tr>${header.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody></tbody>`;
    this.body = table.tBodies[0];
  }

  render(items: { key: string; attrs: Record<string, string>; html: string }[]): void {
    if (!items.length) {
      this.rows.clear();
      this.body.innerHTML = `<tr><td colspan="12" class="empty">${esc(this.empty)}</td></tr>`;
      return;
    }
    const next = new Map<string, { html: string; el: HTMLTableRowElement }>();
    const els: HTMLTableRowElement[] = [];
    for (const item of items) {
      let row = this.rows.get(item.key);
      if (!row || row.html !== item.html) {
        const el = document.createElement("tr");
        el.className = "clickable";
        for (const [k, v] of Object.entries(item.attrs)) el.setAttribute(k, v);
        el.innerHTML = item.html;
        row = { html: item.html, el };
      }
      next.set(item.key, row);
      els.push(row.el);
    }
    this.rows.clear();
    for (const [k, v] of next) this.rows.set(k, v);
    const current = this.body.children;
    const same = current.length === els.length && els.every((el, i) => current[i] === el);
    if (!same) this.body.replaceChildren(...els);
  }
}

const fillRows = new KeyedRows(
  $<HTMLTableElement>("fills"),
  ["time (UTC)", "side", "qty", "price", "fee", "kind", "decision bar"],
  "no fills yet",
);
const decisionRows = new KeyedRows(
  $<HTMLTableElement>("decisions"),
  ["bar (UTC)", "verdict", "action", "target", "target qty", "position", "price", "orders", "reason"],
  "no decisions yet",
);

function renderTables(): void {
  const m = page.model;
  fillRows.render(
    m.latestFills(TABLE_ROWS).map((f) => {
      const bar = m.decisionBarOfFill(f);
      return {
        key: f.exec_id,
        attrs: { "data-bar": String(bar), "data-fill": f.exec_id, title: "show the journal entry of the decision" },
        html:
          `<td>${esc(fmtTime(f.time_ms))}</td><td class="${f.side === "buy" ? "pos" : "neg"}">${esc(f.side)}</td>` +
          `<td>${esc(fmt(f.qty, 4))}</td><td>${esc(fmt(f.price))}</td><td>${esc(fmt(f.fee, 4))}</td>` +
          `<td>${esc(f.kind)}</td><td>${esc(fmtTime(bar))}</td>`,
      };
    }),
  );
  decisionRows.render(
    m.latestDecisions(TABLE_ROWS).map((d) => ({
      key: String(d.bar_ms),
      attrs: { "data-bar": String(d.bar_ms), title: "show the journal entry" },
      html:
        `<td>${esc(fmtTime(d.bar_ms))}</td><td>${esc(d.verdict)}</td><td>${esc(formatAction(d.action))}</td>` +
        `<td>${esc(fmt(d.target, 3))}</td><td>${esc(fmt(d.target_qty, 4))}</td><td>${esc(fmt(d.position, 4))}</td>` +
        `<td>${esc(fmt(d.price))}</td><td>${d.orders?.length ?? 0}</td><td class="muted">${esc(d.reason ?? "")}</td>`,
    })),
  );
  renderPosition();
}

function formatAction(action: number[] | null | undefined): string {
  if (!action || !action.length) return "—";
  return action.map((a) => (Number.isInteger(a) ? String(a) : a.toFixed(3))).join(", ");
}

// ---------------------------------------------------------------- journal entry
async function openJournal(barMs: number, because?: string): Promise<void> {
  const dialog = $<HTMLDialogElement>("journal");
  const body = $("journal-body");
  $("journal-title").textContent = `Journal entry · bar ${fmtTime(barMs)} UTC`;
  body.innerHTML = `<p class="muted">loading…</p>`;
  if (!dialog.open) dialog.showModal();
  try {
    const entry = await getJson<JournalEntry>(`/decisions/${barMs}`);
    body.innerHTML = renderEntry(entry, because);
  } catch (exc) {
    body.innerHTML = `<p class="neg">${esc(exc instanceof ApiError && exc.status === 404 ? `No decision was journaled for the bar ${fmtTime(barMs)}` : String(exc))}</p>`;
  }
}

function renderEntry(e: JournalEntry, because?: string): string {
  const kv = (pairs: [string, unknown][]) =>
    `<dl class="kv">${pairs.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("")}</dl>`;
  const bar = e.bar;
  const features = Object.entries(e.features ?? {});
  return (
    (because ? `<p class="muted">${esc(because)}</p>` : "") +
    kv([
      ["Verdict", `${e.verdict}${e.reason ? ` — ${e.reason}` : ""}`],
      ["Action", formatAction(e.action)],
      ["Target exposure", fmt(e.target, 4)],
      ["Target qty", fmt(e.target_qty, 4)],
      ["Position before", fmt(e.position, 4)],
      ["Equity", fmt(e.equity)],
      ["Model", e.model_tag ?? "—"],
      ["Config hash", e.config_hash ?? "—"],
      ["Observation hash", e.obs_hash ?? "—"],
      ["Decided at", `${fmtTime(e.time_ms)} UTC · ${fmt(e.latency_ms, 1)} ms`],
    ]) +
    (bar
      ? `<h3>Bar</h3>${kv([["Open / High / Low / Close", `${fmt(bar.open)} / ${fmt(bar.high)} / ${fmt(bar.low)} / ${fmt(bar.close)}`], ["Volume", fmt(bar.volume, 3)]])}`
      : "") +
    `<h3>Orders</h3>` +
    ((e.order_rows ?? []).length
      ? `<table><thead><tr><th>client id</th><th>intent</th><th>side</th><th>qty</th><th>status</th><th>filled</th><th>avg price</th></tr></thead><tbody>${(e.order_rows ?? [])
          .map(
            (o) =>
              `<tr><td><code>${esc(o.client_id)}</code></td><td>${esc(o.intent ?? "")}</td><td>${esc(o.side)}</td><td>${esc(fmt(o.qty, 4))}</td><td>${esc(o.status)}${o.reason ? ` (${esc(o.reason)})` : ""}</td><td>${esc(fmt(o.filled ?? 0, 4))}</td><td>${esc(fmt(o.avg_price ?? null))}</td></tr>`,
          )
          .join("")}</tbody></table>`
      : `<p class="empty">no order</p>`) +
    `<h3>Fills</h3>` +
    ((e.fills ?? []).length
      ? `<table><tbody>${(e.fills ?? []).map((f) => `<tr><td>${esc(describeFill(f))}</td></tr>`).join("")}</tbody></table>`
      : `<p class="empty">no fill</p>`) +
    `<h3>Features the agent saw</h3>` +
    (features.length
      ? `<table class="features"><tbody>${features.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(fmt(v, 5))}</td></tr>`).join("")}</tbody></table>`
      : `<p class="empty">none (warm-up or exchange error)</p>`)
  );
}

$("journal-close").addEventListener("click", () => $<HTMLDialogElement>("journal").close());
for (const id of ["fills", "decisions"]) {
  $(id).addEventListener("click", (ev) => {
    const row = (ev.target as HTMLElement).closest("tr[data-bar]") as HTMLElement | null;
    if (!row) return;
    const fill = row.dataset.fill ? page.model.fills.get(row.dataset.fill) : undefined;
    void openJournal(Number(row.dataset.bar), fill ? describeFill(fill) : undefined);
  });
}

// ---------------------------------------------------------------- chart interaction
const tooltip = $("tooltip");

function describeAt(objectId: string | null, timeMs: number | null): { text: string; bar: number } | null {
  const m = page.model;
  if (objectId?.startsWith(FILL_PREFIX)) {
    const fill = m.fills.get(objectId.slice(FILL_PREFIX.length));
    if (fill) return { text: describeFill(fill), bar: m.decisionBarOfFill(fill) };
  }
  if (objectId?.startsWith(DECISION_PREFIX)) {
    const d = m.decisions.get(Number(objectId.slice(DECISION_PREFIX.length)));
    if (d) return { text: describeDecision(d), bar: d.bar_ms };
  }
  if (timeMs === null) return null;
  // No marker under the pointer: a fill executed in this bar, else this bar's decision.
  const fill = m.fillList.find((f) => m.fillBar(f) === timeMs && f.kind !== "funding");
  if (fill) return { text: describeFill(fill), bar: m.decisionBarOfFill(fill) };
  const d = m.decisions.get(timeMs);
  if (d) return { text: `Decision: ${d.verdict}, target ${fmt(d.target, 3)}`, bar: d.bar_ms };
  return null;
}

priceChart.chart.subscribeCrosshairMove((param) => {
  const { objectId } = PriceChart.hit(param);
  const hit = objectId ? describeAt(objectId, null) : null;
  if (!hit || !param.point) {
    tooltip.hidden = true;
    return;
  }
  tooltip.textContent = hit.text;
  tooltip.hidden = false;
  tooltip.style.left = `${Math.min(param.point.x + 16, $("price-chart").clientWidth - 200)}px`;
  tooltip.style.top = `${param.point.y + 48}px`;
});

priceChart.chart.subscribeClick((param) => {
  const { objectId, timeMs } = PriceChart.hit(param);
  const hit = describeAt(objectId, timeMs);
  if (hit) void openJournal(hit.bar, hit.text);
});

// ---------------------------------------------------------------- control
const tokenInput = $<HTMLInputElement>("token");
tokenInput.value = loadToken();

function renderControls(): void {
  const enabled = page.status?.control_enabled !== false;
  $("control-disabled").hidden = enabled;
  $("token-form").hidden = !enabled;
  for (const id of ["btn-pause", "btn-resume", "btn-kill"]) {
    const button = $<HTMLButtonElement>(id);
    button.disabled = !enabled;
    button.title = enabled ? "" : "control is disabled: no control token configured on the service";
  }
}

function showOutcome(outcome: ControlOutcome): void {
  const el = $("control-result");
  el.dataset.kind = outcome.kind;
  el.textContent = outcome.message;
  tokenInput.setAttribute("aria-invalid", String(outcome.kind === "wrong-token"));
}

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  saveToken(tokenInput.value.trim());
  tokenInput.setAttribute("aria-invalid", "false");
  showOutcome({ kind: "done", message: "token kept for this tab" });
});
$("token-forget").addEventListener("click", () => {
  tokenInput.value = "";
  saveToken("");
  showOutcome({ kind: "done", message: "token forgotten" });
});

async function send(action: "pause" | "resume" | "kill", reason: string): Promise<void> {
  const token = tokenInput.value.trim();
  saveToken(token);
  showOutcome({ kind: "done", message: `${action}: sending…` });
  const outcome = await control(action, token, reason);
  showOutcome(outcome);
  if (outcome.kind === "disabled" && page.status) page.status.control_enabled = false;
  renderControls();
  refreshSoon();
}

$("btn-pause").addEventListener("click", () => void send("pause", "paused from the monitoring page"));
$("btn-resume").addEventListener("click", () => void send("resume", ""));
const killDialog = $<HTMLDialogElement>("kill-dialog");
$("btn-kill").addEventListener("click", () => killDialog.showModal());
killDialog.addEventListener("close", () => {
  if (killDialog.returnValue === "kill") {
    void send("kill", $<HTMLInputElement>("kill-reason").value.trim() || "kill switch");
  }
  killDialog.returnValue = "";
});

// ---------------------------------------------------------------- theme, timers, start
window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
  theme = themeFromCss();
  priceChart.setTheme(theme);
  equityChart.setTheme(theme);
  page.renderedMarkers = "";
  renderMarkers();
});

window.setInterval(() => {
  getJson<Status>("/status").then(
    (s) => {
      setStatus(s);
      markReachable();
    },
    markUnreachable,
  );
}, POLL_MS);
window.setInterval(renderHealth, 1000);

/** The first load of every view; catch-ups wait for it. */
async function firstLoadOfViews(): Promise<void> {
  try {
    await loadViews(INITIAL_ROWS, INITIAL_BARS);
  } catch (exc) {
    markUnreachable(exc);
  }
  renderHealth();
}

/** For tests and benchmarks: the model, the charts and the event path. */
declare global {
  interface Window {
    __monitor: unknown;
  }
}
window.__monitor = {
  model: page.model,
  applyEvents,
  markerPoint: (id: string) => priceChart.markerPoint(id),
  markerCount: () => priceChart.markerCount(),
  markerIds: () => priceChart.markerIds(),
  candleCount: () => priceChart.candles.data().length,
  /** Bars the charts hold at most (0: all); redraws them. */
  setChartWindow: (bars: number) => {
    chartWindow = bars;
    chartFromMs = -Infinity;
    redrawCharts();
  },
  loadSnapshot: (bars: Bar[], fills: Fill[], decisions: Decision[], equity: EquityPoint[]) => {
    const m = page.model;
    m.setBars(bars);
    for (const d of decisions) m.addDecision(d);
    for (const f of fills) m.addFill(f);
    m.setEquity(equity);
    redrawCharts();
    renderMarkers();
    renderTables();
  },
};

renderControls();
stream.start();
firstLoad = firstLoadOfViews();
