// Integration: the client against the real corecast server over WebSocket.
// Needs the corecast binary (see server.ts); every test is bounded in time.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import WebSocket from "ws";
import {
  ConnectionClosedError,
  CorecastClient,
  CorecastError,
  ErrorCode,
  decodeServerMessage,
  encodeClientMessage,
  frameLengthPrefixed,
  splitLengthPrefixed,
  type RoomMessage,
  type ServerMessage,
} from "../../src/index.js";
import { connectClient, loggedIn, startServer, text, type Server } from "./server.js";

const T = { timeout: 20_000 };
let server: Server;
const clients: CorecastClient[] = [];
const track = (c: CorecastClient) => (clients.push(c), c);

before(async () => {
  server = await startServer();
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server?.stop();
});

test("connect selects the corecast.v1 subprotocol; login; ping before and after login", T, async () => {
  const c = track(await connectClient(server.wsUrl));
  assert.equal(c.protocol, "corecast.v1");
  assert.equal(typeof (await c.ping()), "number");
  await c.login("ping-alice");
  assert.equal(c.playerId, "ping-alice");
  const rtt = await c.ping();
  assert.ok(rtt >= 0 && rtt < 5_000);
});

test("the /app path (the original protocol's) is accepted too", T, async () => {
  const c = track(await connectClient(server.wsUrl.replace(/\/ws$/, "/app")));
  await c.login("app-path-alice");
  assert.ok((await c.ping()) >= 0);
});

test("join, join notification, broadcast to every member with one seq", T, async () => {
  const alice = track(await loggedIn(server.wsUrl, "bc-alice"));
  const bob = track(await loggedIn(server.wsUrl, "bc-bob"));
  const first = await alice.join("bc-room", { maxPlayers: 10 });
  assert.deepEqual(first.currentPlayers, ["bc-alice"]);
  assert.equal(first.roomConfig?.maxPlayers, 10);
  assert.equal(first.error?.code, ErrorCode.NONE);
  assert.ok(first.epoch.length > 0 && first.epoch.length <= 32, `epoch ${first.epoch}`);
  const joined = alice.waitFor("join", (j) => j.room === "bc-room");
  const second = await bob.join("bc-room");
  assert.deepEqual([...second.currentPlayers].sort(), ["bc-alice", "bc-bob"]);
  assert.equal(second.epoch, first.epoch);
  assert.deepEqual(await joined, { room: "bc-room", player: "bc-bob" });

  const atAlice = alice.waitFor("message", (m) => m.room === "bc-room");
  const atBob = bob.waitFor("message", (m) => m.room === "bc-room");
  alice.send("bc-room", "hello everyone");
  const [a, b] = await Promise.all([atAlice, atBob]);
  for (const m of [a, b]) {
    assert.equal(text(m.body), "hello everyone");
    assert.equal(m.sender, "bc-alice");
    assert.equal(m.seq, 1n);
    assert.equal(m.replayed, false);
  }
  assert.deepEqual(alice.cursor("bc-room"), { epoch: first.epoch, lastSeq: 1n });

  const left = alice.waitFor("leave", (l) => l.room === "bc-room");
  await bob.leave("bc-room");
  assert.deepEqual(await left, { room: "bc-room", player: "bc-bob" });
  assert.deepEqual(bob.joinedRooms(), []);
});

test("a targeted send reaches only its targets", T, async () => {
  const [alice, bob, carol] = await Promise.all(
    ["tg-alice", "tg-bob", "tg-carol"].map(async (p) => track(await loggedIn(server.wsUrl, p))),
  );
  for (const c of [alice!, bob!, carol!]) await c.join("tg-room");
  const seen = new Map<string, RoomMessage[]>();
  for (const [name, c] of [["alice", alice!], ["bob", bob!], ["carol", carol!]] as const) {
    seen.set(name, []);
    c.on("message", (m) => seen.get(name)!.push(m));
  }
  const bobGot = bob!.waitFor("message", (m) => text(m.body) === "psst");
  alice!.send("tg-room", "psst", ["tg-bob"]);
  const psst = await bobGot;
  assert.equal(psst.sender, "tg-alice");
  // One broadcast after it: everyone sees the room's order, so once it has arrived
  // a targeted message to alice or carol would have come first.
  const done = [alice!, bob!, carol!].map((c) => c.waitFor("message", (m) => text(m.body) === "all"));
  alice!.send("tg-room", "all");
  await Promise.all(done);
  assert.deepEqual(seen.get("bob")!.map((m) => text(m.body)), ["psst", "all"]);
  assert.deepEqual(seen.get("carol")!.map((m) => text(m.body)), ["all"]);
  assert.deepEqual(seen.get("alice")!.map((m) => text(m.body)), ["all"]);
  assert.equal(seen.get("carol")![0]!.seq, psst.seq + 1n); // a gap for the message to bob
});

test("history replay: a join with history_limit gets the last N messages, flagged as replays", T, async () => {
  const alice = track(await loggedIn(server.wsUrl, "hist-alice"));
  await alice.join("hist-room");
  const third = alice.waitFor("message", (m) => m.seq === 3n);
  for (const body of ["one", "two", "three"]) alice.send("hist-room", body);
  await third;
  const bob = track(await loggedIn(server.wsUrl, "hist-bob"));
  const got: RoomMessage[] = [];
  bob.on("message", (m) => got.push(m));
  const lastReplay = bob.waitFor("message", (m) => m.seq === 3n);
  const joined = await bob.join("hist-room", { historyLimit: 2 });
  assert.equal(joined.lastSeq, 3n);
  await lastReplay;
  assert.deepEqual(got.map((m) => [m.seq, text(m.body), m.replayed]), [
    [2n, "two", true],
    [3n, "three", true],
  ]);
});

/** A WebSocket (ws) that opens only when the gate is open: holds the reconnect back. */
class GatedWebSocket {
  static gate: Promise<void> = Promise.resolve();
  static all: GatedWebSocket[] = [];
  binaryType = "arraybuffer";
  protocol = "";
  inner?: WebSocket;
  private abandoned = false;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: unknown) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;

  constructor(url: string, protocols?: string | string[]) {
    GatedWebSocket.all.push(this);
    void GatedWebSocket.gate.then(() => {
      if (this.abandoned) return;
      const ws = new WebSocket(url, protocols);
      this.inner = ws;
      ws.binaryType = "arraybuffer";
      ws.onopen = (e) => {
        this.protocol = ws.protocol;
        this.onopen?.(e);
      };
      ws.onmessage = (e) => this.onmessage?.(e);
      ws.onclose = (e) => this.onclose?.({ code: e.code, reason: e.reason });
      ws.onerror = (e) => this.onerror?.(e);
    });
  }

  get readyState(): number {
    return this.inner?.readyState ?? (this.abandoned ? 3 : 0);
  }

  send(data: Uint8Array): void {
    this.inner!.send(data);
  }

  close(code?: number, reason?: string): void {
    if (this.inner) this.inner.close(code, reason);
    else if (!this.abandoned) {
      this.abandoned = true;
      setTimeout(() => this.onclose?.({ code: 1006, reason: "" }), 0);
    }
  }
}

test("reconnect: the socket dies, messages are sent meanwhile, the client comes back and recovers them", T, async () => {
  const alice = track(
    await connectClient(server.wsUrl, { WebSocket: GatedWebSocket, reconnect: { initialMs: 10, maxMs: 100 } }),
  );
  await alice.login("rc-alice");
  const bob = track(await loggedIn(server.wsUrl, "rc-bob"));
  const first = await alice.join("rc-room");
  await bob.join("rc-room");
  const got: RoomMessage[] = [];
  alice.on("message", (m) => got.push(m));
  const second = alice.waitFor("message", (m) => m.seq === 2n);
  bob.send("rc-room", "m1");
  bob.send("rc-room", "m2");
  await second;

  let open!: () => void;
  GatedWebSocket.gate = new Promise((r) => (open = r));
  const aliceGone = bob.waitFor("leave", (l) => l.player === "rc-alice");
  const closed = alice.waitFor("close");
  GatedWebSocket.all.at(-1)!.inner!.terminate(); // no close frame: the connection just dies
  const info = await closed;
  assert.equal(info.willReconnect, true);
  assert.equal(info.code, 1006);
  await aliceGone; // the server has seen it: what follows is missed by alice
  const fifth = bob.waitFor("message", (m) => m.seq === 5n);
  for (const body of ["m3", "m4", "m5"]) bob.send("rc-room", body);
  await fifth;

  const reconnected = alice.waitFor("reconnected");
  const recovered = alice.waitFor("message", (m) => m.seq === 5n);
  const back = bob.waitFor("join", (j) => j.player === "rc-alice");
  open();
  const r = await reconnected;
  await recovered;
  await back;
  assert.equal(r.rooms.length, 1);
  assert.equal(r.rooms[0]!.response?.recovered, true);
  assert.equal(r.rooms[0]!.response?.epoch, first.epoch);
  assert.equal(r.rooms[0]!.response?.lastSeq, 5n);
  assert.equal(alice.state, "open");
  assert.deepEqual(
    got.map((m) => [m.seq, text(m.body), m.replayed]),
    [
      [1n, "m1", false],
      [2n, "m2", false],
      [3n, "m3", true],
      [4n, "m4", true],
      [5n, "m5", true],
    ],
  );
  // Live again, with no gap or duplicate.
  const live = alice.waitFor("message", (m) => m.seq === 6n);
  bob.send("rc-room", "m6");
  assert.equal(text((await live).body), "m6");
  assert.equal(got.length, 6);
});

test("replace_existing: the new login wins, the old session gets SESSION_REPLACED and stays closed", T, async () => {
  const old = track(await loggedIn(server.wsUrl, "rp-alice"));
  const errors: CorecastError[] = [];
  old.on("error", (e) => errors.push(e));
  const oldClosed = old.waitFor("close");
  const second = track(await connectClient(server.wsUrl));
  await assert.rejects(second.login("rp-alice"), (e: unknown) => e instanceof CorecastError && e.code === ErrorCode.ALREADY_LOGGED_IN);
  await second.login("rp-alice", undefined, { replaceExisting: true });
  const info = await oldClosed;
  assert.equal(info.willReconnect, false);
  assert.equal(info.error?.code, ErrorCode.SESSION_REPLACED);
  assert.equal(errors[0]?.code, ErrorCode.SESSION_REPLACED);
  assert.equal(old.state, "closed");
});

test("error codes from responses reach the caller as CorecastError", T, async () => {
  const alice = track(await loggedIn(server.wsUrl, "err-alice"));
  const bob = track(await loggedIn(server.wsUrl, "err-bob"));
  const carol = track(await loggedIn(server.wsUrl, "err-carol"));
  await alice.join("err-room", { maxPlayers: 2 });
  const code = (c: ErrorCode) => (e: unknown) => e instanceof CorecastError && e.code === c;
  await assert.rejects(alice.join("err-room"), code(ErrorCode.ALREADY_JOINED_THE_ROOM));
  await assert.rejects(bob.join("err-room", { maxPlayers: 3 }), code(ErrorCode.ROOM_CONFIG_DOES_NOT_MATCH));
  await bob.join("err-room", { maxPlayers: 2 });
  await assert.rejects(carol.join("err-room"), code(ErrorCode.ROOM_IS_FULL));
  await assert.rejects(carol.leave("err-room"), code(ErrorCode.NOT_IN_ROOM));
  await assert.rejects(carol.join("x".repeat(129)), code(ErrorCode.BAD_REQUEST));
  const again = track(await connectClient(server.wsUrl));
  await assert.rejects(again.login("err-alice"), code(ErrorCode.ALREADY_LOGGED_IN));
  await assert.rejects(again.login(""), code(ErrorCode.BAD_REQUEST));
  await assert.rejects(carol.login("err-carol-2"), code(ErrorCode.ALREADY_LOGGED_IN));
  // A send outside one's rooms: an unsolicited error event, the connection stays.
  const notIn = carol.waitFor("error");
  carol.send("err-room", "let me in");
  assert.equal((await notIn).code, ErrorCode.NOT_IN_ROOM);
  assert.ok((await carol.ping()) >= 0);
});

test("a message over --max-frame-bytes: FRAME_TOO_LARGE, close code 1009, no reconnect", T, async () => {
  const c = track(await loggedIn(server.wsUrl, "big-alice"));
  await c.join("big-room");
  const closed = c.waitFor("close");
  c.send("big-room", new Uint8Array(70_000));
  const info = await closed;
  assert.equal(info.code, 1009);
  assert.equal(info.error?.code, ErrorCode.FRAME_TOO_LARGE);
  assert.equal(info.willReconnect, false);
  assert.throws(() => c.send("big-room", "x"), ConnectionClosedError);
});

test("raw WebSocket: a text message is BAD_REQUEST then close 1003; bad bytes are BAD_REQUEST then 1008", T, async () => {
  for (const [payload, closeCode] of [
    ["not protobuf", 1003],
    [new Uint8Array([0xff, 0xff, 0xff]), 1008],
  ] as const) {
    const ws = new WebSocket(server.wsUrl, ["corecast.v1"]);
    ws.binaryType = "arraybuffer";
    const got: ServerMessage[] = [];
    ws.on("message", (data: ArrayBuffer) => got.push(decodeServerMessage(new Uint8Array(data))));
    await new Promise((resolve, reject) => (ws.once("open", resolve), ws.once("error", reject)));
    assert.equal(ws.protocol, "corecast.v1");
    const code = new Promise<number>((resolve) => ws.once("close", (c: number) => resolve(c)));
    ws.send(payload);
    assert.equal(await code, closeCode, `close code after ${typeof payload}`);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.data.case, "error");
    assert.equal(got[0]!.data.case === "error" && got[0]!.data.value.code, ErrorCode.BAD_REQUEST);
  }
});

test("an unknown path is refused at the upgrade: connect rejects", T, async () => {
  await assert.rejects(connectClient(server.wsUrl.replace(/\/ws$/, "/nope")), ConnectionClosedError);
});

test("a WebSocket client and a TCP client share a room", T, async () => {
  const ws = track(await loggedIn(server.wsUrl, "mix-ws"));
  await ws.join("mix-room");
  const [host, port] = [server.tcpAddr.slice(0, server.tcpAddr.lastIndexOf(":")), Number(server.tcpAddr.split(":").pop())];
  const sock = net.connect(port, host);
  try {
    let buffer: Uint8Array = new Uint8Array();
    const frames: ServerMessage[] = [];
    let wake = () => {};
    sock.on("data", (chunk: Buffer) => {
      const all = new Uint8Array(buffer.length + chunk.length);
      all.set(buffer);
      all.set(chunk, buffer.length);
      const split = splitLengthPrefixed(all);
      buffer = new Uint8Array(split.rest);
      for (const f of split.frames) frames.push(decodeServerMessage(f));
      wake();
    });
    const next = async (pred: (m: ServerMessage) => boolean): Promise<ServerMessage> => {
      const deadline = Date.now() + 5_000;
      for (;;) {
        const at = frames.findIndex(pred);
        if (at >= 0) return frames.splice(at, 1)[0]!;
        if (Date.now() > deadline) throw new Error("no such frame from the TCP listener");
        await new Promise<void>((r) => {
          const t = setTimeout(r, 100);
          wake = () => (clearTimeout(t), r());
        });
      }
    };
    await new Promise((resolve, reject) => (sock.once("connect", resolve), sock.once("error", reject)));
    const write = (m: Parameters<typeof encodeClientMessage>[0]) => sock.write(frameLengthPrefixed(encodeClientMessage(m)));
    write({ data: { case: "loginRequest", value: { playerId: "mix-tcp" } } });
    await next((m) => m.data.case === "loginResponse");
    const joined = ws.waitFor("join", (j) => j.player === "mix-tcp");
    write({ data: { case: "joinRequest", value: { roomId: "mix-room" } } });
    await next((m) => m.data.case === "joinResponse");
    await joined;
    const atWs = ws.waitFor("message", (m) => m.sender === "mix-tcp");
    write({ data: { case: "sendMessage", value: { roomId: "mix-room", body: new TextEncoder().encode("from tcp") } } });
    assert.equal(text((await atWs).body), "from tcp");
    ws.send("mix-room", "from ws");
    const n = await next((m) => m.data.case === "messageNotification" && m.data.value.senderId === "mix-ws");
    assert.ok(n.data.case === "messageNotification" && text(n.data.value.body) === "from ws");
  } finally {
    sock.destroy();
  }
});

test("server shutdown: SERVER_SHUTTING_DOWN, close code 1001, and the client tries to come back", T, async () => {
  const doomed = await startServer();
  try {
    const c = track(await loggedIn(doomed.wsUrl, "sd-alice", { reconnect: { initialMs: 50, maxMs: 200 } }));
    await c.join("sd-room");
    const closed = c.waitFor("close");
    const retrying = c.waitFor("reconnecting");
    await doomed.stop();
    const info = await closed;
    assert.equal(info.code, 1001);
    assert.equal(info.error?.code, ErrorCode.SERVER_SHUTTING_DOWN);
    assert.equal(info.willReconnect, true);
    assert.equal((await retrying).attempt, 1);
    await c.close();
    assert.equal(c.state, "closed");
  } finally {
    await doomed.stop();
  }
});
