import { test } from "node:test";
import assert from "node:assert/strict";
import { Backoff } from "../../src/backoff.js";

test("steps double from the initial delay up to the cap", () => {
  const b = new Backoff({ initialMs: 100, maxMs: 1000 });
  assert.deepEqual([0, 1, 2, 3, 4, 5, 40, 5000].map((n) => b.step(n)), [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
});

test("equal jitter: each delay is between half and all of its step", () => {
  const low = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0 });
  const high = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0.999999 });
  assert.deepEqual([1, 2, 3, 4, 5].map(() => low.nextDelay()), [50, 100, 200, 400, 500]);
  assert.deepEqual([1, 2, 3, 4, 5].map(() => high.nextDelay()), [100, 200, 400, 800, 1000]);
  const real = new Backoff({ initialMs: 250, maxMs: 30_000 });
  for (let i = 0; i < 200; i++) {
    const step = real.step(real.attempts);
    const d = real.nextDelay();
    assert.ok(d >= step / 2 && d <= step, `attempt ${i}: ${d} outside [${step / 2}, ${step}]`);
    assert.ok(d <= 30_000);
  }
});

test("jitter spreads clients dropped together", () => {
  const delays = new Set<number>();
  for (let i = 0; i < 50; i++) delays.add(new Backoff({ initialMs: 1000 }).nextDelay());
  assert.ok(delays.size > 10, `only ${delays.size} distinct first delays`);
});

test("attempts count and reset starts over", () => {
  const b = new Backoff({ initialMs: 10, maxMs: 80, random: () => 1 });
  b.nextDelay();
  b.nextDelay();
  b.nextDelay();
  assert.equal(b.attempts, 3);
  b.reset();
  assert.equal(b.attempts, 0);
  assert.equal(b.nextDelay(), 10);
});

test("silly options are clamped", () => {
  const b = new Backoff({ initialMs: 0, maxMs: -5, factor: 0.5 });
  assert.equal(b.initialMs, 1);
  assert.equal(b.maxMs, 1);
  assert.equal(b.factor, 1);
  assert.equal(b.step(10_000), 1);
});
