/**
 * What the trading service's monitoring API returns (serving/service/api.py, read model of
 * serving/trader/trader.py). Times are milliseconds since the epoch (UTC); money is USDT;
 * quantities are contracts. Fields the service may leave empty are optional or nullable.
 */

/** One closed bar of the traded market (`GET /bars`, `bar` events). */
export interface Bar {
  bar_ms: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volume: number;
  funding_rate?: number;
}

/** One execution on the account (`GET /fills`, `fill` events). */
export interface Fill {
  exec_id: string;
  kind: string; // "trade" | "funding" | "liquidation" | "adl"
  exchange_order_id?: string | null;
  client_id?: string | null;
  side: string; // "buy" | "sell"
  qty: number;
  price: number;
  fee: number;
  time_ms: number;
  external?: boolean;
}

/** One order of the trader (`GET /orders`, `order` events). */
export interface Order {
  client_id: string;
  bar_ms?: number | null;
  intent?: string;
  side: string;
  qty: number;
  ord_type?: string;
  reduce_only?: boolean;
  status: string;
  filled?: number;
  avg_price?: number | null;
  reason?: string;
  external?: boolean;
  created_ms?: number;
  updated_ms?: number;
}

/** The decision of one bar (`GET /decisions`, `decision` events). */
export interface Decision {
  bar_ms: number;
  time_ms?: number;
  verdict: string;
  reason?: string;
  target?: number | null;
  target_qty?: number | null;
  position?: number | null;
  equity?: number | null;
  price?: number | null;
  orders?: string[] | null;
  action?: number[] | null;
  obs_hash?: string | null;
  latency_ms?: number | null;
  model_tag?: string;
  config_hash?: string;
}

/** The whole journal entry of one bar (`GET /decisions/{bar_ms}`). */
export interface JournalEntry extends Decision {
  features?: Record<string, number | null> | null;
  bar?: Bar | null;
  order_rows?: Order[];
  fills?: Fill[];
}

/** Equity at one bar's close (`GET /equity`). */
export interface EquityPoint {
  bar_ms: number;
  equity: number;
}

/** `GET /status`: the service's and the trader's state. */
export interface Status {
  state: string;
  reason?: string;
  mode: string;
  model?: string;
  model_tag?: string;
  config_hash?: string;
  symbol?: string;
  timeframe?: string;
  control_enabled?: boolean;
  failure?: string | null;
  last_bar_ms?: number | null;
  bars_seen?: number;
  ready?: boolean;
  ready_reason?: string;
  reconciled?: boolean;
  started_ms?: number | null;
  drift?: number | null;
  equity?: number | null;
  /** A kill or halt has not flattened the position yet (retried every bar). */
  flatten_pending?: boolean;
  /** Why, in the answer to `POST /control/kill`. */
  flatten_detail?: string;
}

/** `GET /positions`. */
export interface Position {
  symbol?: string;
  qty: number | null;
  side?: string;
  entry?: number | null;
  mark?: number | null;
  upnl?: number | null;
  wallet?: number | null;
  leverage?: number | null;
  margin_ratio?: number | null;
  liquidation_price?: number | null;
}

/** One recent risk event (`GET /risk` events, `risk` events). */
export interface RiskEvent {
  id: number;
  time_ms: number;
  kind: string;
  reason?: string;
  halt?: boolean;
  bar_ms?: number | null;
}

/** `GET /risk`. */
export interface RiskState {
  limits: Record<string, number | string | null>;
  state: string;
  reason?: string;
  cooldown_bars_left?: number;
  events: RiskEvent[];
}

/** `GET /drift`. */
export interface Drift {
  threshold?: number | null;
  action?: string;
  score?: number | null;
  [key: string]: unknown;
}

/** One server-sent event of `GET /events`. */
export interface MonitorEvent {
  id: number;
  kind: "bar" | "decision" | "order" | "fill" | "risk" | "status" | string;
  time_ms: number;
  data: Record<string, unknown>;
}
