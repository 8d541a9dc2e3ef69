import { test } from "node:test";
import assert from "node:assert/strict";
import { RoomCursor } from "../../src/cursor.js";

test("a fresh join accepts every seq once, in order", () => {
  const c = new RoomCursor();
  assert.equal(c.point(), undefined);
  c.onJoin("e1", "", 0n);
  assert.deepEqual(c.point(), { epoch: "e1", lastSeq: 0n });
  assert.equal(c.accept(1n), true);
  assert.equal(c.accept(2n), true);
  assert.equal(c.accept(2n), false);
  assert.equal(c.accept(1n), false);
  assert.equal(c.accept(5n), true); // gaps: targeted messages to others
  assert.deepEqual(c.point(), { epoch: "e1", lastSeq: 5n });
});

test("resume in the same epoch: replays after the cursor are new, older ones duplicates", () => {
  const c = new RoomCursor();
  c.onJoin("e1", "", 0n);
  for (const s of [1n, 2n, 3n]) c.accept(s);
  c.onJoin("e1", "e1", 3n);
  assert.equal(c.accept(3n), false);
  assert.equal(c.accept(4n), true);
  assert.equal(c.accept(4n), false);
});

test("resume asking from further back than delivered still drops what was delivered", () => {
  const c = new RoomCursor();
  c.onJoin("e1", "", 0n);
  for (const s of [1n, 2n, 3n, 4n]) c.accept(s);
  c.onJoin("e1", "e1", 2n);
  assert.equal(c.accept(3n), false);
  assert.equal(c.accept(4n), false);
  assert.equal(c.accept(5n), true);
});

test("a new epoch starts the count over", () => {
  const c = new RoomCursor();
  c.onJoin("e1", "", 0n);
  c.accept(7n);
  c.onJoin("e2", "e1", 7n); // the room was created afresh: recovered false
  assert.deepEqual(c.point(), { epoch: "e2", lastSeq: 0n });
  assert.equal(c.accept(1n), true);
});

test("an explicit resume point from elsewhere (stored across page loads)", () => {
  const c = new RoomCursor();
  c.onJoin("e9", "e9", 40n);
  assert.equal(c.accept(40n), false);
  assert.equal(c.accept(41n), true);
});

test("a fresh join (no resume) of a room delivers its history replay again", () => {
  const c = new RoomCursor();
  c.onJoin("e1", "", 0n);
  c.accept(1n);
  c.accept(2n);
  c.onJoin("e1", "", 0n);
  assert.equal(c.accept(1n), true);
});

test("seq 0 (a server that does not number) is always delivered", () => {
  const c = new RoomCursor();
  c.onJoin("", "", 0n);
  assert.equal(c.accept(0n), true);
  assert.equal(c.accept(0n), true);
});
