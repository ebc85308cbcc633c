/**
 * The service's monitoring API over fetch, the control token (kept in this tab's
 * sessionStorage only) and the control requests.
 */
import { controlOutcome, type ControlOutcome } from "./health";
import type { Status } from "./types";

/** Base URL of the service: the page is served by it, so same origin unless `?api=` says. */
export const API_BASE = (() => {
  const given = new URLSearchParams(location.search).get("api");
  return given ? given.replace(/\/$/, "") : "";
})();

const TOKEN_KEY = "phemex-rl.control-token";
const FETCH_TIMEOUT_MS = 5000;

/** An HTTP answer other than 2xx; `status` null when the service did not answer. */
export class ApiError extends Error {
  constructor(
    readonly path: string,
    readonly status: number | null,
    readonly detail: string,
  ) {
    super(`${path}: ${status === null ? "no answer" : `HTTP ${status}`} ${detail}`);
  }
}

async function detailOf(response: Response): Promise<string> {
  try {
    const body = await response.json();
    return typeof body?.detail === "string" ? body.detail : JSON.stringify(body?.detail ?? body);
  } catch {
    return response.statusText;
  }
}

/** Requests index.html started before this code loaded, by path; each is used once. */
const early: Record<string, Promise<Response>> =
  (window as unknown as { __early?: Record<string, Promise<Response>> }).__early ?? {};

/** GET `path` as JSON; ApiError on any failure. */
export async function getJson<T>(path: string): Promise<T> {
  let response: Response;
  const started = early[path];
  delete early[path];
  try {
    response = await (started ??
      fetch(API_BASE + path, {
        headers: { Accept: "application/json" },
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
        cache: "no-store",
      }));
  } catch (exc) {
    throw new ApiError(path, null, String(exc));
  }
  if (!response.ok) throw new ApiError(path, response.status, await detailOf(response));
  return (await response.json()) as T;
}

export function loadToken(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

export function saveToken(token: string): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** POST `/control/{action}` with the bearer token; what it meant for the operator. */
export async function control(
  action: "pause" | "resume" | "kill",
  token: string,
  reason: string,
): Promise<ControlOutcome> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const body = action === "resume" ? undefined : JSON.stringify({ reason });
  let response: Response;
  try {
    response = await fetch(`${API_BASE}/control/${action}`, {
      method: "POST",
      headers,
      body,
      signal: AbortSignal.timeout(60_000), // a kill waits for the flatten to fill
    });
  } catch {
    return controlOutcome(action, null, "");
  }
  if (!response.ok) return controlOutcome(action, response.status, await detailOf(response));
  let status: Status | null = null;
  try {
    status = (await response.json()) as Status;
  } catch {
    // the action was done; an unreadable body only loses the details
  }
  return controlOutcome(action, response.status, "", status);
}
