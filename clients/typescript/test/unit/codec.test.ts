import { test } from "node:test";
import assert from "node:assert/strict";
import {
  decodeClientMessage,
  decodeServerMessage,
  encodeClientMessage,
  encodeServerMessage,
  frameLengthPrefixed,
  splitLengthPrefixed,
} from "../../src/codec.js";
import { ErrorCode } from "../../src/gen/corecast_pb.js";

test("ClientMessage round trip: login with bearer token and replace_existing", () => {
  const bytes = encodeClientMessage({
    data: {
      case: "loginRequest",
      value: { playerId: "alice", authConfig: { case: "bearer", value: { token: "t0k" } }, replaceExisting: true },
    },
  });
  const msg = decodeClientMessage(bytes);
  assert.equal(msg.data.case, "loginRequest");
  if (msg.data.case !== "loginRequest") return;
  assert.equal(msg.data.value.playerId, "alice");
  assert.equal(msg.data.value.replaceExisting, true);
  assert.deepEqual(msg.data.value.authConfig, { case: "bearer", value: msg.data.value.authConfig.value });
  assert.equal(msg.data.value.authConfig.case === "bearer" && msg.data.value.authConfig.value.token, "t0k");
});

test("ClientMessage round trip: join with resume fields (uint64 as bigint)", () => {
  const since = 18_446_744_073_709_551_615n; // u64::MAX
  const msg = decodeClientMessage(
    encodeClientMessage({
      data: {
        case: "joinRequest",
        value: { roomId: "lobby", roomConfig: { maxPlayers: 4 }, sinceSeq: since, epoch: "abc", historyLimit: 50 },
      },
    }),
  );
  assert.equal(msg.data.case, "joinRequest");
  if (msg.data.case !== "joinRequest") return;
  assert.equal(msg.data.value.sinceSeq, since);
  assert.equal(msg.data.value.epoch, "abc");
  assert.equal(msg.data.value.historyLimit, 50);
  assert.equal(msg.data.value.roomConfig?.maxPlayers, 4);
});

test("ClientMessage bytes are the ones PROTOCOL.md fixes (field numbers)", () => {
  // Ping{nonce: 1} is field 5 of ClientMessage: tag 0x2a, length 2, then field 1 varint 1.
  assert.deepEqual([...encodeClientMessage({ data: { case: "ping", value: { nonce: 1n } } })], [0x2a, 2, 0x08, 1]);
  // SendMessage: field 4; inside, target_ids 1, room_id 2, body 3.
  const send = encodeClientMessage({
    data: { case: "sendMessage", value: { roomId: "r", body: new Uint8Array([7]), targetIds: ["b"] } },
  });
  assert.deepEqual([...send], [0x22, 9, 0x0a, 1, 0x62, 0x12, 1, 0x72, 0x1a, 1, 7]);
  // An empty ClientMessage (no data) is zero bytes.
  assert.equal(encodeClientMessage({}).length, 0);
});

test("ServerMessage round trip: message notification with seq, error, join response", () => {
  const body = new TextEncoder().encode("hello");
  const n = decodeServerMessage(
    encodeServerMessage({
      data: { case: "messageNotification", value: { senderId: "bob", roomId: "r", body, seq: 42n } },
    }),
  );
  assert.equal(n.data.case, "messageNotification");
  if (n.data.case === "messageNotification") {
    assert.deepEqual(n.data.value.body, body);
    assert.equal(n.data.value.seq, 42n);
    assert.equal(n.data.value.senderId, "bob");
  }
  const e = decodeServerMessage(
    encodeServerMessage({ data: { case: "error", value: { code: ErrorCode.SLOW_CONSUMER, message: "behind" } } }),
  );
  assert.equal(e.data.case === "error" && e.data.value.code, ErrorCode.SLOW_CONSUMER);
  const j = decodeServerMessage(
    encodeServerMessage({
      data: {
        case: "joinResponse",
        value: { roomId: "r", currentPlayers: ["a", "b"], epoch: "e1", lastSeq: 9n, recovered: true, error: {} },
      },
    }),
  );
  assert.equal(j.data.case, "joinResponse");
  if (j.data.case === "joinResponse") {
    assert.deepEqual(j.data.value.currentPlayers, ["a", "b"]);
    assert.equal(j.data.value.lastSeq, 9n);
    assert.equal(j.data.value.recovered, true);
    assert.equal(j.data.value.error?.code, ErrorCode.NONE);
  }
});

test("unknown fields from a newer server are skipped, not an error", () => {
  // ServerMessage field 9 (v1.2 room_reset) with an unknown inner message.
  const bytes = new Uint8Array([0x4a, 3, 0x0a, 1, 0x72]);
  const msg = decodeServerMessage(bytes);
  assert.equal(msg.data.case, undefined);
});

test("length-prefixed framing (TCP) splits whole frames and keeps the rest", () => {
  const a = frameLengthPrefixed(new Uint8Array([1, 2, 3]));
  const b = frameLengthPrefixed(new Uint8Array([]));
  assert.deepEqual([...a], [0, 0, 0, 3, 1, 2, 3]);
  const joined = new Uint8Array([...a, ...b, 0, 0, 1]);
  const { frames, rest } = splitLengthPrefixed(joined);
  assert.deepEqual(frames.map((f) => [...f]), [[1, 2, 3], []]);
  assert.deepEqual([...rest], [0, 0, 1]);
});
