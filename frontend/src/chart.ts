/**
 * The two charts (TradingView lightweight-charts 5): candlesticks of the traded market with
 * fill and decision markers, and equity with its drawdown below. Updates are incremental:
 * a new bar is one `update()`; markers are redrawn only when fills or decisions change.
 */
import {
  AreaSeries,
  CandlestickSeries,
  ColorType,
  createChart,
  createSeriesMarkers,
  LineSeries,
  type IChartApi,
  type ISeriesApi,
  type ISeriesMarkersPluginApi,
  type MouseEventParams,
  type SeriesMarker,
  type Time,
  type UTCTimestamp,
} from "lightweight-charts";
import type { PageMarker } from "./markers";
import type { Bar, EquityPoint } from "./types";

export interface Theme {
  background: string;
  text: string;
  grid: string;
  up: string;
  down: string;
  equity: string;
  drawdown: string;
  decision: string;
}

/** The theme from the page's CSS variables (light or dark). */
export function themeFromCss(): Theme {
  const css = getComputedStyle(document.documentElement);
  const v = (name: string) => css.getPropertyValue(name).trim();
  return {
    background: v("--panel"),
    text: v("--text"),
    grid: v("--grid"),
    up: v("--up"),
    down: v("--down"),
    equity: v("--accent"),
    drawdown: v("--down"),
    decision: v("--decision"),
  };
}

const sec = (ms: number) => (ms / 1000) as UTCTimestamp;

function chartOptions(theme: Theme) {
  return {
    autoSize: true,
    layout: {
      background: { type: ColorType.Solid, color: theme.background },
      textColor: theme.text,
      attributionLogo: true,
    },
    grid: { vertLines: { color: theme.grid }, horzLines: { color: theme.grid } },
    timeScale: { timeVisible: true, secondsVisible: false, borderColor: theme.grid },
    rightPriceScale: { borderColor: theme.grid },
  };
}

function candle(bar: Bar) {
  return { time: sec(bar.bar_ms), open: bar.open, high: bar.high, low: bar.low, close: bar.close };
}

export class PriceChart {
  readonly chart: IChartApi;
  readonly candles: ISeriesApi<"Candlestick">;
  private readonly markers: ISeriesMarkersPluginApi<Time>;
  private pageMarkers: PageMarker[] = [];

  constructor(container: HTMLElement, theme: Theme) {
    this.chart = createChart(container, chartOptions(theme));
    this.candles = this.chart.addSeries(CandlestickSeries, {
      upColor: theme.up,
      downColor: theme.down,
      borderVisible: false,
      wickUpColor: theme.up,
      wickDownColor: theme.down,
    });
    this.markers = createSeriesMarkers(this.candles, [], { zOrder: "top" });
  }

  setTheme(theme: Theme): void {
    this.chart.applyOptions(chartOptions(theme));
    this.candles.applyOptions({
      upColor: theme.up,
      downColor: theme.down,
      wickUpColor: theme.up,
      wickDownColor: theme.down,
    });
  }

  setBars(bars: readonly Bar[]): void {
    this.candles.setData(bars.map(candle));
  }

  /** A new or revised latest bar (incremental). */
  updateBar(bar: Bar): void {
    this.candles.update(candle(bar));
  }

  setMarkers(markers: PageMarker[]): void {
    this.pageMarkers = markers;
    this.markers.setMarkers(
      markers.map(
        (m): SeriesMarker<Time> => ({
          id: m.id,
          time: sec(m.timeMs),
          position: m.position,
          shape: m.shape,
          color: m.color,
          text: m.text,
        }),
      ),
    );
  }

  markerCount(): number {
    return this.pageMarkers.length;
  }

  markerIds(): string[] {
    return this.pageMarkers.map((m) => m.id);
  }

  /** Where a marker is drawn, in CSS pixels relative to the chart (for tests). */
  markerPoint(id: string): { x: number; y: number } | null {
    const m = this.pageMarkers.find((p) => p.id === id);
    if (!m) return null;
    const x = this.chart.timeScale().timeToCoordinate(sec(m.timeMs));
    const bar = this.candles.data().find((d) => (d.time as number) === m.timeMs / 1000) as
      | { high: number; low: number }
      | undefined;
    if (x === null || !bar) return null;
    const y = this.candles.priceToCoordinate(m.position === "aboveBar" ? bar.high : bar.low);
    if (y === null) return null;
    return { x, y: m.position === "aboveBar" ? y - 14 : y + 14 };
  }

  /** The id of the marker under the pointer, if any, and the bar time (ms) at it. */
  static hit(param: MouseEventParams<Time>): { objectId: string | null; timeMs: number | null } {
    const id = param.hoveredInfo?.objectId ?? param.hoveredObjectId;
    return {
      objectId: typeof id === "string" ? id : null,
      timeMs: typeof param.time === "number" ? param.time * 1000 : null,
    };
  }
}

export class EquityChart {
  readonly chart: IChartApi;
  private readonly line: ISeriesApi<"Line">;
  private readonly drawdown: ISeriesApi<"Area">;
  private peak = -Infinity;
  private lastMs = -Infinity;

  constructor(container: HTMLElement, theme: Theme) {
    this.chart = createChart(container, chartOptions(theme));
    this.line = this.chart.addSeries(LineSeries, { color: theme.equity, lineWidth: 2, title: "equity" });
    this.drawdown = this.chart.addSeries(
      AreaSeries,
      {
        lineColor: theme.drawdown,
        topColor: theme.drawdown,
        bottomColor: "rgba(0,0,0,0)",
        invertFilledArea: true,
        lineWidth: 1,
        title: "drawdown %",
        priceFormat: { type: "percent" as const, precision: 2, minMove: 0.01 } as never,
      },
      1,
    );
    const panes = this.chart.panes();
    if (panes[1]) panes[1].setHeight(70);
  }

  setTheme(theme: Theme): void {
    this.chart.applyOptions(chartOptions(theme));
    this.line.applyOptions({ color: theme.equity });
    this.drawdown.applyOptions({ lineColor: theme.drawdown, topColor: theme.drawdown });
  }

  /** Equity points and their drawdowns (fractions); `peak` is the running peak at the last. */
  setEquity(points: readonly EquityPoint[], drawdowns: readonly number[], peak: number): void {
    this.line.setData(points.map((p) => ({ time: sec(p.bar_ms), value: p.equity })));
    this.drawdown.setData(points.map((p, i) => ({ time: sec(p.bar_ms), value: drawdowns[i] * 100 })));
    this.peak = peak;
    this.lastMs = points.length ? points[points.length - 1].bar_ms : -Infinity;
  }

  /** A new latest point: incremental. Returns false when the caller must redraw all. */
  appendPoint(point: EquityPoint): boolean {
    if (point.bar_ms < this.lastMs) return false;
    if (point.bar_ms === this.lastMs) return false; // a revised value may change the peak
    this.peak = Math.max(this.peak, point.equity);
    this.lastMs = point.bar_ms;
    this.line.update({ time: sec(point.bar_ms), value: point.equity });
    const dd = this.peak > 0 ? point.equity / this.peak - 1 : 0;
    this.drawdown.update({ time: sec(point.bar_ms), value: dd * 100 });
    return true;
  }
}
