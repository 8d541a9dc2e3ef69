/** Options of {@link Backoff}. */
export interface BackoffOptions {
  /** The first step, in ms (default 250). */
  initialMs?: number;
  /** The cap on a step, in ms (default 30000). */
  maxMs?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
  /** Random source in [0, 1) (default Math.random; tests fix it). */
  random?: () => number;
}

/**
 * Exponential backoff with "equal jitter", like the server crate's Rust client: attempt n
 * (from 0) waits between half and all of min(maxMs, initialMs * factor^n), so clients
 * dropped together do not all come back at once, and no wait is shorter than half its
 * step. reset() after a successful reconnect starts over.
 */
export class Backoff {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
  private readonly random: () => number;
  private attemptCount = 0;

  constructor(opts: BackoffOptions = {}) {
    this.initialMs = Math.max(1, opts.initialMs ?? 250);
    this.maxMs = Math.max(this.initialMs, opts.maxMs ?? 30_000);
    this.factor = Math.max(1, opts.factor ?? 2);
    this.random = opts.random ?? Math.random;
  }

  /** The step of attempt n before jitter: min(maxMs, initialMs * factor^n). */
  step(n: number): number {
    const raw = this.initialMs * Math.pow(this.factor, n);
    return Number.isFinite(raw) ? Math.min(this.maxMs, raw) : this.maxMs;
  }

  /** The delay before the next attempt, in ms; counts the attempt. */
  nextDelay(): number {
    const step = this.step(this.attemptCount);
    this.attemptCount += 1;
    const half = step / 2;
    const r = Math.min(Math.max(this.random(), 0), 1);
    return Math.round(half + (step - half) * r);
  }

  /** Attempts counted since the start or the last reset(). */
  get attempts(): number {
    return this.attemptCount;
  }

  reset(): void {
    this.attemptCount = 0;
  }
}
