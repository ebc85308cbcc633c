/**
 * What the operator must see first: the page's verdict on the service (down, starting, no
 * bars yet, halted by risk, killed, paused, stale data, refused, healthy), the outcome of a
 * control request, and the formatting of times and numbers. Pure functions, unit-tested.
 */
import type { Status } from "./types";

export type Health =
  | "down"
  | "starting"
  | "failed"
  | "refused"
  | "no-bars"
  | "killed"
  | "halted"
  | "paused"
  | "stale"
  | "ok";

export interface HealthVerdict {
  health: Health;
  /** One line for the banner. */
  text: string;
  /** How loud: "bad" (red), "warn" (amber), "ok" (none). */
  level: "bad" | "warn" | "ok";
}

export interface HealthInput {
  /** The last `/status` answer, or null when the service did not answer. */
  status: Status | null;
  /** Whether the last request to the service failed (down or unreachable). */
  unreachable: boolean;
  /** Number of bars the page holds. */
  bars: number;
  /** Wall milliseconds since the service recorded the last bar, null if unknown. */
  sinceLastBarMs: number | null;
  /** Wall milliseconds after which data is stale (risk.stale_after_bars x bar interval). */
  staleAfterMs: number | null;
}

/** The single verdict the banner shows; the most severe condition wins. */
export function healthOf(input: HealthInput): HealthVerdict {
  const { status } = input;
  if (input.unreachable || status === null) {
    return { health: "down", level: "bad", text: "Service unreachable: reconnecting…" };
  }
  const reason = status.reason ? `: ${status.reason}` : "";
  switch (status.state) {
    case "failed":
      return { health: "failed", level: "bad", text: `Trading loop failed${reason}` };
    case "refused":
      return { health: "refused", level: "bad", text: `Refused to trade${reason}` };
    case "killed":
      return {
        health: "killed",
        level: "bad",
        text: status.flatten_pending
          ? `Killed: trading halted, flattening the position (tried again every bar)${reason}`
          : `Killed: trading halted, position flattened${reason}`,
      };
    case "halted":
      return { health: "halted", level: "bad", text: `Halted by risk${reason}` };
    case "stopped":
      return { health: "failed", level: "warn", text: `Trading loop stopped${reason}` };
    default:
      break;
  }
  if (input.bars === 0) {
    if (status.state === "starting" || status.state === "reconciling") {
      return { health: "starting", level: "warn", text: `Starting (${status.state})${reason}` };
    }
    return { health: "no-bars", level: "warn", text: "No bars yet: waiting for the first closed bar" };
  }
  if (status.state === "paused") {
    return { health: "paused", level: "warn", text: `Paused by the operator${reason}` };
  }
  if (
    input.staleAfterMs !== null && input.sinceLastBarMs !== null &&
    input.sinceLastBarMs > input.staleAfterMs
  ) {
    return {
      health: "stale",
      level: "warn",
      text: `Stale data: no bar for ${formatAge(input.sinceLastBarMs)} (stale after ${formatAge(input.staleAfterMs)})`,
    };
  }
  if (status.state === "starting" || status.state === "reconciling") {
    return { health: "starting", level: "warn", text: `Starting (${status.state})${reason}` };
  }
  return { health: "ok", level: "ok", text: "Trading" };
}

export type ControlOutcomeKind =
  | "done"
  | "pending"
  | "wrong-token"
  | "no-token"
  | "disabled"
  | "refused"
  | "unreachable"
  | "error";

export interface ControlOutcome {
  kind: ControlOutcomeKind;
  message: string;
}

/**
 * What a control answer means to the operator. The service answers 403 both for a wrong
 * token and when control is disabled (no token configured); the detail tells them apart.
 * A kill answers with the status: it halts at once, but the exchange may not flatten the
 * position yet (`flatten_pending`; the service tries again every bar).
 */
export function controlOutcome(
  action: string,
  httpStatus: number | null,
  detail: string,
  status?: Status | null,
): ControlOutcome {
  if (httpStatus === null) {
    return { kind: "unreachable", message: `${action}: the service did not answer` };
  }
  if (httpStatus >= 200 && httpStatus < 300) {
    if (action === "kill" && status?.flatten_pending) {
      const why = status.flatten_detail ? `: ${status.flatten_detail}` : "";
      return {
        kind: "pending",
        message: `kill: trading halted; the position is not flat yet${why} (tried again every bar)`,
      };
    }
    return { kind: "done", message: `${action}: done` };
  }
  if (httpStatus === 401) return { kind: "no-token", message: `${action}: enter the control token first` };
  if (httpStatus === 403 && /disabled/i.test(detail)) {
    return { kind: "disabled", message: "Control is disabled: the service has no control token configured" };
  }
  if (httpStatus === 403) return { kind: "wrong-token", message: `${action}: wrong control token` };
  if (httpStatus === 409) return { kind: "refused", message: `${action} refused: ${detail}` };
  return { kind: "error", message: `${action} failed (HTTP ${httpStatus}): ${detail}` };
}

/** "3 s", "4 min 05 s", "2 h 03 min", "3 d 4 h". */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${String(m % 60).padStart(2, "0")} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

const formats = new Map<number, Intl.NumberFormat>();

/** A number with `digits` decimals, or "—" when missing. */
export function fmt(value: number | null | undefined, digits = 2): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  let format = formats.get(digits); // one formatter per precision: building one is slow
  if (!format) {
    format = new Intl.NumberFormat("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
    formats.set(digits, format);
  }
  return format.format(value);
}

/** A signed number ("+1.20", "−0.40"). */
export function fmtSigned(value: number | null | undefined, digits = 2): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return (value > 0 ? "+" : "") + fmt(value, digits);
}

/** A fraction as a percentage ("12.5 %"). */
export function fmtPct(value: number | null | undefined, digits = 1): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return `${fmt(value * 100, digits)} %`;
}

/** A UTC time "2026-12-01 21:35". */
export function fmtTime(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "—";
  return new Date(ms).toISOString().slice(0, 16).replace("T", " ");
}
