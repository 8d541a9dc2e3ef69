// Integration: a session whose signed token expires (server with --jwt-leeway 0) is
// closed with UNAUTHORIZED "token expired"; a client with a token function reconnects
// with a fresh token and resumes its rooms, and stops for good if the fresh token is
// refused too.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { CorecastClient, ErrorCode } from "../../src/index.js";
import { connectClient, jwtSecret, startServer, text, type Server } from "./server.js";

const T = { timeout: 30_000 };
/** How long to wait for the expiry (the first token lives 2 s) and what follows it. */
const EXPIRY_WAIT_MS = 15_000;
let server: Server;
let secret: ReturnType<typeof jwtSecret>;
const clients: CorecastClient[] = [];
const track = (c: CorecastClient) => (clients.push(c), c);

before(async () => {
  secret = jwtSecret();
  server = await startServer(["--jwt-secret-file", secret.file, "--jwt-leeway", "0"]);
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server?.stop();
  secret?.cleanup();
});

test("token expired: the token function gives a fresh one, the client reconnects and recovers its room", T, async () => {
  const bob = track(await connectClient(server.wsUrl));
  await bob.login("exp-bob", secret.mint("exp-bob", "--ttl", "600"));
  await bob.join("exp-room");

  const ttls: string[] = [];
  const alice = track(await connectClient(server.wsUrl));
  alice.on("error", () => {});
  await alice.login("exp-alice", () => {
    const ttl = ttls.length === 0 ? "2" : "600";
    ttls.push(ttl);
    return secret.mint("exp-alice", "--ttl", ttl);
  });
  await alice.join("exp-room");
  const before = alice.waitFor("message", (m) => text(m.body) === "before");
  bob.send("exp-room", "before");
  assert.equal((await before).seq, 1n);

  const expired = alice.waitFor("close", () => true, EXPIRY_WAIT_MS);
  const reconnected = alice.waitFor("reconnected", () => true, EXPIRY_WAIT_MS);
  const during = alice.waitFor("message", (m) => text(m.body) === "during", EXPIRY_WAIT_MS);
  const info = await expired;
  assert.equal(info.error?.code, ErrorCode.UNAUTHORIZED);
  assert.match(info.error?.serverMessage ?? "", /expired/);
  assert.equal(info.willReconnect, true);
  bob.send("exp-room", "during"); // alice is away: she gets it by resume

  const r = await reconnected;
  assert.equal(r.rooms.length, 1);
  assert.equal(r.rooms[0]?.room, "exp-room");
  assert.equal(r.rooms[0]?.response?.error?.code, ErrorCode.NONE);
  assert.equal(r.rooms[0]?.response?.recovered, true);
  assert.deepEqual(ttls, ["2", "600"]);
  assert.equal((await during).seq, 2n);
  assert.equal(alice.state, "open");

  const afterwards = alice.waitFor("message", (m) => text(m.body) === "after");
  bob.send("exp-room", "after");
  const m = await afterwards;
  assert.equal(m.sender, "exp-bob");
  assert.equal(m.seq, 3n);
});

test("token expired and the token function gives only expired tokens: the client stops for good", T, async () => {
  let calls = 0;
  const c = track(await connectClient(server.wsUrl));
  c.on("error", () => {});
  const closes: boolean[] = [];
  c.on("close", (i) => closes.push(i.willReconnect));
  await c.login("exp-carol", () => secret.mint("exp-carol", "--ttl", calls++ === 0 ? "2" : "0"));
  await c.join("exp-room-2");
  const final = c.waitFor("close", (i) => !i.willReconnect, EXPIRY_WAIT_MS);
  const info = await final;
  assert.equal(info.willReconnect, false);
  assert.equal(info.error?.code, ErrorCode.UNAUTHORIZED);
  assert.deepEqual(closes, [true, false]); // the expiry (reconnecting), then the refused re-login
  assert.equal(calls, 2); // asked once more, then no loop
  assert.equal(c.state, "closed");
});
