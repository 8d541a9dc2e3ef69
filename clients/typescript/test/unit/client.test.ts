// The client against an in-memory WebSocket: response matching, errors, timeouts,
// duplicate suppression and the reconnect sequence, with no server.
import { afterEach, beforeEach, test } from "node:test";
import assert from "node:assert/strict";
import { CorecastClient, type RoomMessage } from "../../src/client.js";
import { ConnectionClosedError, CorecastError, TimeoutError } from "../../src/errors.js";
import { ErrorCode } from "../../src/gen/corecast_pb.js";
import { FakeSocket, nthSocket } from "./fake-socket.js";

const ok = { code: ErrorCode.NONE, message: "" };
let clients: CorecastClient[] = [];

async function connect(opts: Parameters<typeof CorecastClient.connect>[1] = {}): Promise<CorecastClient> {
  const c = await CorecastClient.connect("ws://fake/ws", {
    WebSocket: FakeSocket,
    requestTimeoutMs: 500,
    keepaliveMs: 0,
    reconnect: { initialMs: 1, maxMs: 4, random: () => 0 },
    ...opts,
  });
  clients.push(c);
  return c;
}

async function loggedIn(): Promise<{ c: CorecastClient; s: FakeSocket }> {
  const c = await connect();
  const s = FakeSocket.last();
  const p = c.login("alice", "tok");
  await s.nth(0);
  s.reply({ data: { case: "loginResponse", value: { error: ok } } });
  await p;
  return { c, s };
}

beforeEach(() => FakeSocket.reset());
afterEach(async () => {
  await Promise.all(clients.map((c) => c.close()));
  clients = [];
});

test("connect offers the corecast.v1 subprotocol and asks for ArrayBuffers", async () => {
  const c = await connect();
  const s = FakeSocket.last();
  assert.deepEqual(s.protocols, ["corecast.v1"]);
  assert.equal(s.binaryType, "arraybuffer");
  assert.equal(c.protocol, "corecast.v1");
  assert.equal(c.state, "open");
});

test("without a WebSocket implementation the error says what to pass", async () => {
  const g = globalThis as { WebSocket?: unknown };
  const saved = g.WebSocket;
  g.WebSocket = undefined;
  try {
    await assert.rejects(CorecastClient.connect("ws://x/ws"), /options\.WebSocket/);
  } finally {
    g.WebSocket = saved;
  }
});

test("login sends the bearer token and resolves on LoginResponse NONE", async () => {
  const c = await connect();
  const s = FakeSocket.last();
  const p = c.login("alice", "tok", { replaceExisting: true });
  const sent = await s.nth(0);
  assert.equal(sent.data.case, "loginRequest");
  if (sent.data.case === "loginRequest") {
    assert.equal(sent.data.value.playerId, "alice");
    assert.equal(sent.data.value.replaceExisting, true);
    assert.equal(sent.data.value.authConfig.case === "bearer" && sent.data.value.authConfig.value.token, "tok");
  }
  s.reply({ data: { case: "loginResponse", value: { error: ok } } });
  await p;
  assert.equal(c.playerId, "alice");
});

test("a refused login rejects with a CorecastError carrying the server's code", async () => {
  const c = await connect();
  const s = FakeSocket.last();
  const p = c.login("alice", "bad");
  await s.nth(0);
  s.reply({ data: { case: "loginResponse", value: { error: { code: ErrorCode.UNAUTHORIZED, message: "no" } } } });
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof CorecastError);
    assert.equal(err.code, ErrorCode.UNAUTHORIZED);
    assert.equal(err.codeName, "UNAUTHORIZED");
    assert.equal(err.serverMessage, "no");
    assert.equal(err.request, "login");
    return true;
  });
  assert.equal(c.playerId, undefined);
});

test("join, leave and send before login fail at once with FAILED_PRECONDITION", async () => {
  const c = await connect();
  await assert.rejects(c.join("r"), (e: unknown) => e instanceof CorecastError && e.code === ErrorCode.FAILED_PRECONDITION);
  assert.throws(() => c.send("r", "x"), (e: unknown) => e instanceof CorecastError && e.code === ErrorCode.FAILED_PRECONDITION);
  assert.equal(FakeSocket.last().sent.length, 0);
});

test("join responses are matched by room, whatever order they come in", async () => {
  const { c, s } = await loggedIn();
  const a = c.join("a", { maxPlayers: 3, historyLimit: 10 });
  const b = c.join("b");
  const ja = await s.nth(1);
  await s.nth(2);
  assert.equal(ja.data.case, "joinRequest");
  if (ja.data.case === "joinRequest") {
    assert.equal(ja.data.value.roomConfig?.maxPlayers, 3);
    assert.equal(ja.data.value.historyLimit, 10);
    assert.equal(ja.data.value.sinceSeq, 0n);
  }
  s.reply({ data: { case: "joinResponse", value: { roomId: "b", error: { code: ErrorCode.ROOM_IS_FULL } } } });
  s.reply({ data: { case: "joinResponse", value: { roomId: "a", currentPlayers: ["alice"], epoch: "E", lastSeq: 3n, error: ok } } });
  const ra = await a;
  assert.equal(ra.epoch, "E");
  assert.equal(ra.lastSeq, 3n);
  await assert.rejects(b, (e: unknown) => e instanceof CorecastError && e.code === ErrorCode.ROOM_IS_FULL && e.room === "b");
  assert.deepEqual(c.joinedRooms(), ["a"]);
  assert.deepEqual(c.cursor("a"), { epoch: "E", lastSeq: 0n });
});

test("pongs are matched by nonce", async () => {
  const c = await connect();
  const s = FakeSocket.last();
  const p1 = c.ping();
  const p2 = c.ping();
  const m1 = await s.nth(0);
  const m2 = await s.nth(1);
  assert.ok(m1.data.case === "ping" && m2.data.case === "ping");
  if (m1.data.case !== "ping" || m2.data.case !== "ping") return;
  assert.notEqual(m1.data.value.nonce, m2.data.value.nonce);
  let first = false;
  void p1.then(() => (first = true));
  s.reply({ data: { case: "pong", value: { nonce: m2.data.value.nonce } } });
  assert.equal(typeof (await p2), "number");
  assert.equal(first, false);
  s.reply({ data: { case: "pong", value: { nonce: m1.data.value.nonce } } });
  await p1;
});

test("a request with no response times out", async () => {
  const c = await connect({ requestTimeoutMs: 30 });
  await assert.rejects(c.ping(), TimeoutError);
});

test("message events: replays flagged, duplicates dropped, errors and notifications surfaced", async () => {
  const { c, s } = await loggedIn();
  const got: RoomMessage[] = [];
  const members: string[] = [];
  const errors: CorecastError[] = [];
  c.on("message", (m) => got.push(m));
  c.on("join", (m) => members.push(`+${m.player}@${m.room}`));
  c.on("leave", (m) => members.push(`-${m.player}@${m.room}`));
  c.on("error", (e) => errors.push(e));
  const j = c.join("r", { historyLimit: 2 });
  await s.nth(1);
  s.reply({ data: { case: "joinResponse", value: { roomId: "r", epoch: "E", lastSeq: 2n, error: ok } } });
  const msg = (seq: bigint) =>
    s.reply({ data: { case: "messageNotification", value: { roomId: "r", senderId: "bob", body: new Uint8Array([Number(seq)]), seq } } });
  msg(1n);
  msg(2n);
  msg(2n);
  msg(3n);
  s.reply({ data: { case: "joinNotification", value: { roomId: "r", playerId: "bob" } } });
  s.reply({ data: { case: "leaveNotification", value: { roomId: "r", playerId: "bob" } } });
  s.reply({ data: { case: "error", value: { code: ErrorCode.NOT_IN_ROOM, message: "not a member of x" } } });
  await j;
  assert.deepEqual(got.map((m) => [m.seq, m.replayed]), [[1n, true], [2n, true], [3n, false]]);
  assert.deepEqual(members, ["+bob@r", "-bob@r"]);
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.code, ErrorCode.NOT_IN_ROOM);
  assert.deepEqual(c.cursor("r"), { epoch: "E", lastSeq: 3n });
});

test("send encodes the body and targets", async () => {
  const { c, s } = await loggedIn();
  c.send("r", "hi", ["bob"]);
  const m = await s.nth(1);
  assert.equal(m.data.case, "sendMessage");
  if (m.data.case === "sendMessage") {
    assert.equal(new TextDecoder().decode(m.data.value.body), "hi");
    assert.deepEqual(m.data.value.targetIds, ["bob"]);
    assert.equal(m.data.value.roomId, "r");
  }
});

test("leave resolves on LeaveResponse and the room is no longer rejoined", async () => {
  const { c, s } = await loggedIn();
  const j = c.join("r");
  await s.nth(1);
  s.reply({ data: { case: "joinResponse", value: { roomId: "r", epoch: "E", error: ok } } });
  await j;
  const l = c.leave("r");
  await s.nth(2);
  s.reply({ data: { case: "leaveResponse", value: { roomId: "r", error: ok } } });
  await l;
  assert.deepEqual(c.joinedRooms(), []);
  const l2 = c.leave("r");
  await s.nth(3);
  s.reply({ data: { case: "leaveResponse", value: { roomId: "r", error: { code: ErrorCode.NOT_IN_ROOM } } } });
  await assert.rejects(l2, (e: unknown) => e instanceof CorecastError && e.code === ErrorCode.NOT_IN_ROOM);
});

test("a dropped connection rejects what was pending, reconnects, logs in with replace_existing and resumes", async () => {
  const { c, s } = await loggedIn();
  const j = c.join("r", { maxPlayers: 5 });
  await s.nth(1);
  s.reply({ data: { case: "joinResponse", value: { roomId: "r", epoch: "E", lastSeq: 0n, error: ok } } });
  await j;
  const got: bigint[] = [];
  c.on("message", (m) => got.push(m.seq));
  for (const seq of [1n, 2n]) {
    s.reply({ data: { case: "messageNotification", value: { roomId: "r", senderId: "bob", seq } } });
  }
  const pending = c.ping();
  const closed = c.waitFor("close");
  const reconnected = c.waitFor("reconnected");
  s.drop();
  await assert.rejects(pending, ConnectionClosedError);
  assert.equal((await closed).willReconnect, true);
  assert.equal(c.state, "reconnecting");
  assert.throws(() => c.send("r", "x"), ConnectionClosedError);

  const s2 = await nthSocket(1);
  const login = await s2.nth(0);
  assert.ok(login.data.case === "loginRequest" && login.data.value.replaceExisting);
  assert.ok(login.data.case === "loginRequest" && login.data.value.authConfig.case === "bearer");
  s2.reply({ data: { case: "loginResponse", value: { error: ok } } });
  const rejoin = await s2.nth(1);
  assert.equal(rejoin.data.case, "joinRequest");
  if (rejoin.data.case === "joinRequest") {
    assert.equal(rejoin.data.value.roomId, "r");
    assert.equal(rejoin.data.value.epoch, "E");
    assert.equal(rejoin.data.value.sinceSeq, 2n);
    assert.equal(rejoin.data.value.roomConfig?.maxPlayers, 5);
  }
  s2.reply({ data: { case: "joinResponse", value: { roomId: "r", epoch: "E", lastSeq: 4n, recovered: true, error: ok } } });
  for (const seq of [2n, 3n, 4n, 5n]) {
    s2.reply({ data: { case: "messageNotification", value: { roomId: "r", senderId: "bob", seq } } });
  }
  const r = await reconnected;
  assert.equal(r.rooms.length, 1);
  assert.equal(r.rooms[0]?.response?.recovered, true);
  assert.deepEqual(got, [1n, 2n, 3n, 4n, 5n]);
  assert.equal(c.state, "open");
});

test("reconnect retries while the server is unreachable, then gives up after maxAttempts", async () => {
  const { c, s } = await loggedIn();
  c.on("error", () => {});
  FakeSocket.accept = false;
  const attempts: number[] = [];
  c.on("reconnecting", (r) => attempts.push(r.attempt));
  const final = c.waitFor("close", (i) => !i.willReconnect);
  (c as unknown as { opts: { reconnect: { maxAttempts: number } } }).opts.reconnect.maxAttempts = 3;
  s.drop();
  const info = await final;
  assert.equal(info.willReconnect, false);
  assert.deepEqual(attempts, [1, 2, 3]);
  assert.equal(c.state, "closed");
});

test("SESSION_REPLACED closes for good: no reconnect fight with the new session", async () => {
  const { c, s } = await loggedIn();
  const errors: CorecastError[] = [];
  c.on("error", (e) => errors.push(e));
  const final = c.waitFor("close");
  s.reply({ data: { case: "error", value: { code: ErrorCode.SESSION_REPLACED, message: "replaced" } } });
  s.drop(1008);
  const info = await final;
  assert.equal(info.willReconnect, false);
  assert.equal(info.error?.code, ErrorCode.SESSION_REPLACED);
  assert.equal(info.code, 1008);
  assert.equal(FakeSocket.instances.length, 1);
});

test("a refused re-login (token no longer valid) stops reconnecting", async () => {
  const c = await connect();
  const s = FakeSocket.last();
  let calls = 0;
  const p = c.login("alice", () => `tok${++calls}`);
  await s.nth(0);
  s.reply({ data: { case: "loginResponse", value: { error: ok } } });
  await p;
  const final = c.waitFor("close", (i) => !i.willReconnect);
  s.drop();
  const s2 = await nthSocket(1);
  const login = await s2.nth(0);
  assert.ok(login.data.case === "loginRequest" && login.data.value.authConfig.case === "bearer");
  if (login.data.case === "loginRequest" && login.data.value.authConfig.case === "bearer") {
    assert.equal(login.data.value.authConfig.value.token, "tok2"); // the provider is asked again
  }
  s2.reply({ data: { case: "loginResponse", value: { error: { code: ErrorCode.UNAUTHORIZED, message: "token expired" } } } });
  const info = await final;
  assert.equal(info.error?.code, ErrorCode.UNAUTHORIZED);
  assert.equal(c.state, "closed");
});

test("refreshToken sends a login with the same player id and keeps the token for reconnects", async () => {
  const { c, s } = await loggedIn();
  const p = c.refreshToken("newer");
  const m = await s.nth(1);
  assert.ok(m.data.case === "loginRequest" && m.data.value.playerId === "alice");
  s.reply({ data: { case: "loginResponse", value: { error: ok } } });
  await p;
  s.drop();
  const s2 = await nthSocket(1);
  const again = await s2.nth(0);
  assert.ok(again.data.case === "loginRequest" && again.data.value.authConfig.case === "bearer");
  if (again.data.case === "loginRequest" && again.data.value.authConfig.case === "bearer") {
    assert.equal(again.data.value.authConfig.value.token, "newer");
  }
  s2.reply({ data: { case: "loginResponse", value: { error: ok } } });
  await c.waitFor("reconnected");
});

test("close() during a reconnect stops it", async () => {
  const { c, s } = await loggedIn();
  FakeSocket.accept = false;
  const final = c.waitFor("close", (i) => !i.willReconnect);
  s.drop();
  await c.waitFor("reconnecting");
  await c.close();
  await final;
  assert.equal(c.state, "closed");
});

test("close() after the connection closed for good emits no second close event", async () => {
  const { c, s } = await loggedIn();
  let closes = 0;
  c.on("close", () => closes++);
  const final = c.waitFor("close");
  s.reply({ data: { case: "error", value: { code: ErrorCode.DISCONNECTED, message: "kicked by the backend" } } });
  s.drop(1008);
  assert.equal((await final).error?.code, ErrorCode.DISCONNECTED);
  await c.close();
  assert.equal(closes, 1);
  assert.equal(c.state, "closed");
});

/** A client logged in with a token function giving tok1, tok2, ...; `calls()` counts them. */
async function loggedInWithProvider(): Promise<{ c: CorecastClient; s: FakeSocket; calls(): number }> {
  const c = await connect();
  const s = FakeSocket.last();
  let calls = 0;
  const p = c.login("alice", () => `tok${++calls}`);
  await s.nth(0);
  s.reply({ data: { case: "loginResponse", value: { error: ok } } });
  await p;
  return { c, s, calls: () => calls };
}

const bearer = (m: { data: { case: string | undefined; value?: unknown } }): string | undefined => {
  if (m.data.case !== "loginRequest") return undefined;
  const login = m.data.value as { authConfig: { case: string | undefined; value?: { token: string } } };
  return login.authConfig.case === "bearer" ? login.authConfig.value?.token : undefined;
};

test("token expired with a token function: reconnects with a fresh token and resumes the rooms", async () => {
  const { c, s, calls } = await loggedInWithProvider();
  c.on("error", () => {});
  const j = c.join("r");
  await s.nth(1);
  s.reply({ data: { case: "joinResponse", value: { roomId: "r", epoch: "E", lastSeq: 0n, error: ok } } });
  await j;
  s.reply({ data: { case: "messageNotification", value: { roomId: "r", senderId: "bob", seq: 1n } } });
  const closed = c.waitFor("close");
  const reconnected = c.waitFor("reconnected");
  s.reply({ data: { case: "error", value: { code: ErrorCode.UNAUTHORIZED, message: "token expired" } } });
  s.drop(1008);
  const info = await closed;
  assert.equal(info.willReconnect, true);
  assert.equal(info.error?.code, ErrorCode.UNAUTHORIZED);
  assert.equal(info.code, 1008);
  const s2 = await nthSocket(1);
  const login = await s2.nth(0);
  assert.ok(login.data.case === "loginRequest" && login.data.value.replaceExisting);
  assert.equal(bearer(login), "tok2");
  assert.equal(calls(), 2);
  s2.reply({ data: { case: "loginResponse", value: { error: ok } } });
  const rejoin = await s2.nth(1);
  assert.ok(rejoin.data.case === "joinRequest" && rejoin.data.value.sinceSeq === 1n && rejoin.data.value.epoch === "E");
  s2.reply({ data: { case: "joinResponse", value: { roomId: "r", epoch: "E", lastSeq: 1n, recovered: true, error: ok } } });
  const r = await reconnected;
  assert.equal(r.rooms[0]?.response?.recovered, true);
  assert.equal(c.state, "open");
});

test("token expired with a token function whose fresh token is refused too: stops for good", async () => {
  const { c, s, calls } = await loggedInWithProvider();
  const closes: boolean[] = [];
  c.on("close", (i) => closes.push(i.willReconnect));
  c.on("error", () => {});
  const final = c.waitFor("close", (i) => !i.willReconnect);
  s.reply({ data: { case: "error", value: { code: ErrorCode.UNAUTHORIZED, message: "token expired" } } });
  s.drop(1008);
  const s2 = await nthSocket(1);
  assert.equal(bearer(await s2.nth(0)), "tok2");
  s2.reply({ data: { case: "loginResponse", value: { error: { code: ErrorCode.UNAUTHORIZED, message: "token expired" } } } });
  s2.drop(1008);
  const info = await final;
  assert.equal(info.error?.code, ErrorCode.UNAUTHORIZED);
  assert.deepEqual(closes, [true, false]);
  assert.equal(c.state, "closed");
  assert.equal(FakeSocket.instances.length, 2);
  assert.equal(calls(), 2);
});

test("token expired with a fixed token string: stops for good, no reconnect", async () => {
  const { c, s } = await loggedIn();
  c.on("error", () => {});
  const final = c.waitFor("close");
  s.reply({ data: { case: "error", value: { code: ErrorCode.UNAUTHORIZED, message: "token expired" } } });
  s.drop(1008);
  const info = await final;
  assert.equal(info.willReconnect, false);
  assert.equal(info.error?.code, ErrorCode.UNAUTHORIZED);
  assert.equal(c.state, "closed");
  assert.equal(FakeSocket.instances.length, 1);
});

test("a login response arriving after its request timed out is dropped, not given to the next login", async () => {
  const c = await connect({ requestTimeoutMs: 30 });
  const s = FakeSocket.last();
  await assert.rejects(c.login("alice", "first"), TimeoutError);
  const second = c.login("alice", "second", { replaceExisting: true });
  await s.nth(1);
  s.reply({ data: { case: "loginResponse", value: { error: { code: ErrorCode.UNAUTHORIZED, message: "late" } } } });
  s.reply({ data: { case: "loginResponse", value: { error: ok } } });
  await second;
  assert.equal(c.playerId, "alice");
});

test("a late join response is dropped; the next join of the room gets its own", async () => {
  const { c, s } = await loggedIn();
  (c as unknown as { opts: { requestTimeoutMs: number } }).opts.requestTimeoutMs = 30;
  await assert.rejects(c.join("r"), TimeoutError);
  (c as unknown as { opts: { requestTimeoutMs: number } }).opts.requestTimeoutMs = 500;
  const again = c.join("r");
  await s.nth(2);
  s.reply({ data: { case: "joinResponse", value: { roomId: "r", error: { code: ErrorCode.ROOM_IS_FULL } } } });
  s.reply({ data: { case: "joinResponse", value: { roomId: "r", epoch: "E2", lastSeq: 7n, error: ok } } });
  const r = await again;
  assert.equal(r.epoch, "E2");
  assert.deepEqual(c.cursor("r"), { epoch: "E2", lastSeq: 0n });
});

test("late-response counts are per connection: after a reconnect the first response answers", async () => {
  const { c, s } = await loggedInWithProvider();
  (c as unknown as { opts: { requestTimeoutMs: number } }).opts.requestTimeoutMs = 30;
  await assert.rejects(c.leave("r"), TimeoutError); // its response never comes: the connection drops
  (c as unknown as { opts: { requestTimeoutMs: number } }).opts.requestTimeoutMs = 500;
  const reconnected = c.waitFor("reconnected");
  s.drop();
  const s2 = await nthSocket(1);
  await s2.nth(0);
  s2.reply({ data: { case: "loginResponse", value: { error: ok } } });
  await reconnected;
  const l = c.leave("r");
  await s2.nth(1);
  s2.reply({ data: { case: "leaveResponse", value: { roomId: "r", error: { code: ErrorCode.NOT_IN_ROOM } } } });
  await assert.rejects(l, (e: unknown) => e instanceof CorecastError && e.code === ErrorCode.NOT_IN_ROOM);
});
