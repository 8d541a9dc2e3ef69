// Integration: JWT login against a server with --jwt-secret-file, tokens minted with
// `corecast token`.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { CorecastClient, CorecastError, ErrorCode } from "../../src/index.js";
import { connectClient, jwtSecret, startServer, type Server } from "./server.js";

const T = { timeout: 20_000 };
let server: Server;
let secret: ReturnType<typeof jwtSecret>;
const clients: CorecastClient[] = [];
const track = (c: CorecastClient) => (clients.push(c), c);
const code = (c: ErrorCode) => (e: unknown) => e instanceof CorecastError && e.code === c;

before(async () => {
  secret = jwtSecret();
  server = await startServer(["--jwt-secret-file", secret.file]);
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server?.stop();
  secret?.cleanup();
});

test("a minted token logs in; rooms and publish claims are enforced with FORBIDDEN", T, async () => {
  const token = secret.mint("jwt-alice", "--rooms", "pub-*,quiet", "--publish", "pub-*");
  const c = track(await connectClient(server.wsUrl));
  await c.login("jwt-alice", token);
  assert.equal(c.playerId, "jwt-alice");
  const joined = await c.join("pub-1");
  assert.equal(joined.error?.code, ErrorCode.NONE);
  await assert.rejects(c.join("secret-room"), code(ErrorCode.FORBIDDEN));
  await c.join("quiet");
  const forbidden = c.waitFor("error");
  c.send("quiet", "may I?");
  const err = await forbidden;
  assert.equal(err.code, ErrorCode.FORBIDDEN);
  assert.match(err.serverMessage, /quiet/);
  const mine = c.waitFor("message", (m) => m.room === "pub-1");
  c.send("pub-1", "allowed");
  assert.equal((await mine).sender, "jwt-alice");
});

test("an empty player id means the token's sub", T, async () => {
  const c = track(await connectClient(server.wsUrl));
  await c.login("", secret.mint("jwt-sub-only"));
  const r = await c.join("pub-sub");
  assert.deepEqual(r.currentPlayers, ["jwt-sub-only"]);
});

test("a bad token: UNAUTHORIZED, the connection closes and the client does not reconnect", T, async () => {
  const forged = track(await connectClient(server.wsUrl));
  const closed = forged.waitFor("close");
  await assert.rejects(forged.login("jwt-bob", secret.mint("jwt-bob") + "x"), code(ErrorCode.UNAUTHORIZED));
  const info = await closed;
  assert.equal(info.willReconnect, false);
  const wrongSub = track(await connectClient(server.wsUrl));
  await assert.rejects(wrongSub.login("jwt-bob", secret.mint("jwt-mallory")), (e: unknown) => {
    assert.ok(e instanceof CorecastError);
    assert.equal(e.code, ErrorCode.UNAUTHORIZED);
    assert.ok(e.serverMessage.length > 0, "the refusal says why");
    return true;
  });
  const none = track(await connectClient(server.wsUrl));
  await assert.rejects(none.login("jwt-bob"), code(ErrorCode.UNAUTHORIZED));
});

test("refreshToken: a new token on the logged-in connection; the new claims apply", T, async () => {
  const c = track(await connectClient(server.wsUrl));
  await c.login("jwt-carol", secret.mint("jwt-carol", "--rooms", "a-*", "--ttl", "60"));
  await assert.rejects(c.join("b-1"), code(ErrorCode.FORBIDDEN));
  await c.refreshToken(secret.mint("jwt-carol", "--rooms", "b-*", "--ttl", "3600"));
  await c.join("b-1");
  await assert.rejects(c.refreshToken(secret.mint("jwt-carol") + "x"), code(ErrorCode.UNAUTHORIZED));
});

test("reconnect with a token provider: each login asks for a fresh token", T, async () => {
  let minted = 0;
  const c = track(await connectClient(server.wsUrl));
  await c.login("jwt-dave", () => (minted++, secret.mint("jwt-dave")));
  await c.join("pub-dave");
  const reconnected = c.waitFor("reconnected");
  // Drop the connection from the client side without a close handshake.
  (c as unknown as { socket: { terminate(): void } }).socket.terminate();
  const r = await reconnected;
  assert.equal(r.rooms[0]?.response?.error?.code, ErrorCode.NONE);
  assert.equal(minted, 2);
});
