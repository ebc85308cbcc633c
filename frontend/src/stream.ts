/**
 * The service's event stream (`GET /events`, server-sent events) with reconnection.
 *
 * A dropped connection is re-established by the browser itself, which sends the last event
 * id it saw as `Last-Event-ID`; when the browser gives up (the service answered an error,
 * e.g. 503 while it restarts) the stream is reopened here with `?since=<last id applied>`.
 * Either way the service replays every event after that id, and the model drops any id it
 * has already applied: no gap, no duplicate.
 */
import type { MonitorEvent } from "./types";

export type LinkState = "connecting" | "live" | "reconnecting";

export interface StreamHandlers {
  /** Events in arrival order, batched per task. */
  onEvents(events: MonitorEvent[]): void;
  /** The connection changed state. */
  onState(state: LinkState): void;
  /** The stream (re)opened: the caller refreshes its views to cover the time it was away. */
  onOpen(): void;
}

const KINDS = ["bar", "decision", "order", "fill", "risk", "status"];
const MAX_BACKOFF_MS = 5000;

export class EventStream {
  private source: EventSource | null = null;
  private queue: MonitorEvent[] = [];
  private flushScheduled = false;
  private backoffMs = 500;
  private reopenTimer: number | undefined;
  private stopped = false;

  constructor(
    private readonly base: string,
    private readonly lastEventId: () => number,
    private readonly handlers: StreamHandlers,
  ) {}

  start(): void {
    this.stopped = false;
    this.open();
  }

  stop(): void {
    this.stopped = true;
    window.clearTimeout(this.reopenTimer);
    this.source?.close();
    this.source = null;
  }

  private open(): void {
    const since = this.lastEventId();
    const url = `${this.base}/events${since > 0 ? `?since=${since}` : ""}`;
    const source = new EventSource(url);
    this.source = source;
    this.handlers.onState("connecting");
    source.onopen = () => {
      this.backoffMs = 500;
      this.handlers.onState("live");
      this.handlers.onOpen();
    };
    source.onerror = () => {
      if (source !== this.source) return;
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        this.source = null;
        this.handlers.onState("reconnecting");
        this.scheduleReopen();
      } else {
        this.handlers.onState("reconnecting"); // the browser retries with Last-Event-ID
      }
    };
    const receive = (message: MessageEvent<string>) => {
      if (source !== this.source) return;
      let event: MonitorEvent;
      try {
        event = JSON.parse(message.data) as MonitorEvent;
      } catch {
        console.warn("event stream: not JSON:", message.data.slice(0, 200));
        return;
      }
      this.queue.push(event);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        window.setTimeout(() => this.flush(), 0);
      }
    };
    for (const kind of KINDS) source.addEventListener(kind, receive as EventListener);
    source.onmessage = receive;
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length) this.handlers.onEvents(batch);
  }

  private scheduleReopen(): void {
    if (this.stopped) return;
    window.clearTimeout(this.reopenTimer);
    this.reopenTimer = window.setTimeout(() => this.open(), this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
  }
}
