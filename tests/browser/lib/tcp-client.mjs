// A tiny corecast client over plain TCP (u32 big-endian length + protobuf), built on the
// generated types and codec of clients/typescript (its tsc output under build/).
import net from "node:net";
import path from "node:path";
import { pathToFileURL } from "node:url";

/** The TypeScript client's codec and generated enums, compiled by its `npm run build`. */
export async function loadWire(repoRoot) {
  const base = path.join(repoRoot, "clients/typescript/build/src");
  try {
    const codec = await import(pathToFileURL(path.join(base, "codec.js")).href);
    const pb = await import(pathToFileURL(path.join(base, "gen/corecast_pb.js")).href);
    return { ...codec, ErrorCode: pb.ErrorCode };
  } catch (err) {
    throw new Error(`cannot load the TypeScript client's build (${base}): run \`npm run build\` in examples/web (it builds clients/typescript): ${err.message}`);
  }
}

export class TcpChatClient {
  /** Every ServerMessage received so far, in arrival order. */
  received = [];
  #waiters = new Set();
  #pending = new Uint8Array(0);
  closed = false;

  constructor(wire, socket) {
    this.wire = wire;
    this.socket = socket;
    socket.on("data", (chunk) => this.#onData(chunk));
    socket.on("close", () => {
      this.closed = true;
      this.#wake();
    });
    socket.on("error", () => {});
  }

  static connect(wire, { host, port }, timeoutMs = 5_000) {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`TCP connect to ${host}:${port} timed out`));
      }, timeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.setNoDelay(true);
        resolve(new TcpChatClient(wire, socket));
      });
      socket.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  #onData(chunk) {
    const joined = new Uint8Array(this.#pending.length + chunk.length);
    joined.set(this.#pending);
    joined.set(chunk, this.#pending.length);
    const { frames, rest } = this.wire.splitLengthPrefixed(joined);
    this.#pending = rest.slice();
    for (const frame of frames) this.received.push(this.wire.decodeServerMessage(frame));
    this.#wake();
  }

  #wake() {
    for (const waiter of [...this.#waiters]) waiter();
  }

  /** Sends one ClientMessage (init shape: `{ data: { case, value } }`). */
  send(message) {
    this.socket.write(this.wire.frameLengthPrefixed(this.wire.encodeClientMessage(message)));
  }

  /** The first received message (from index `from`) that `match` accepts, waiting up to `timeoutMs`. */
  waitFor(match, what, { from = 0, timeoutMs = 10_000 } = {}) {
    const find = () => this.received.slice(from).find(match);
    const found = find();
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      const check = () => {
        const hit = find();
        if (hit) {
          done();
          resolve(hit);
        } else if (this.closed) {
          done();
          reject(new Error(`TCP client: connection closed while waiting for ${what}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`TCP client: no ${what} within ${timeoutMs} ms; received ${this.received.map(describe).join(", ")}`));
      }, timeoutMs);
      this.#waiters.add(check);
    });
  }

  async login(playerId) {
    this.send({ data: { case: "loginRequest", value: { playerId } } });
    const msg = await this.waitFor((m) => m.data.case === "loginResponse", "LoginResponse");
    const code = msg.data.value.error?.code ?? 0;
    if (code !== 0) throw new Error(`TCP login ${playerId}: error ${code} ${msg.data.value.error?.message}`);
  }

  async join(roomId) {
    this.send({ data: { case: "joinRequest", value: { roomId } } });
    const msg = await this.waitFor((m) => m.data.case === "joinResponse" && m.data.value.roomId === roomId, `JoinResponse ${roomId}`);
    const code = msg.data.value.error?.code ?? 0;
    if (code !== 0) throw new Error(`TCP join ${roomId}: error ${code} ${msg.data.value.error?.message}`);
    return msg.data.value;
  }

  say(roomId, text, targetIds = []) {
    this.send({ data: { case: "sendMessage", value: { roomId, body: new TextEncoder().encode(text), targetIds } } });
  }

  /** The MessageNotifications received for `roomId`: { seq, sender, text }. */
  messages(roomId) {
    return this.received
      .filter((m) => m.data.case === "messageNotification" && m.data.value.roomId === roomId)
      .map(({ data: { value } }) => ({ seq: value.seq, sender: value.senderId, text: new TextDecoder().decode(value.body) }));
  }

  close() {
    return new Promise((resolve) => {
      if (this.closed) return resolve();
      this.socket.once("close", () => resolve());
      this.socket.end();
    });
  }
}

function describe(m) {
  const v = m.data.value ?? {};
  return `${m.data.case}(${v.roomId ?? ""}${v.playerId ? " " + v.playerId : ""}${v.senderId ? " " + v.senderId : ""}${v.seq !== undefined ? " #" + v.seq : ""})`;
}
