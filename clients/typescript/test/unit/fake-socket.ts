// An in-memory WebSocket for unit tests: records what the client sends and lets the
// test play the server.
import { decodeClientMessage, encodeServerMessage, type ServerMessageInit } from "../../src/codec.js";
import type { ClientMessage } from "../../src/gen/corecast_pb.js";
import type { WebSocketLike } from "../../src/client.js";

export class FakeSocket implements WebSocketLike {
  static instances: FakeSocket[] = [];
  /** When false, new sockets fail to open (close 1006) instead of opening. */
  static accept = true;

  binaryType = "blob";
  readyState = 0;
  protocol = "";
  readonly sent: ClientMessage[] = [];
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  private waiters: Array<() => void> = [];

  constructor(
    readonly url: string,
    readonly protocols?: string | string[],
  ) {
    FakeSocket.instances.push(this);
    setTimeout(() => {
      if (FakeSocket.accept) {
        this.readyState = 1;
        this.protocol = Array.isArray(protocols) ? (protocols[0] ?? "") : (protocols ?? "");
        this.onopen?.({});
      } else {
        this.readyState = 3;
        this.onclose?.({ code: 1006, reason: "" });
      }
    }, 0);
  }

  static reset(): void {
    FakeSocket.instances = [];
    FakeSocket.accept = true;
  }

  static last(): FakeSocket {
    const s = FakeSocket.instances.at(-1);
    if (!s) throw new Error("no socket");
    return s;
  }

  send(data: Uint8Array): void {
    if (this.readyState !== 1) throw new Error("not open");
    this.sent.push(decodeClientMessage(data));
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  close(code = 1000, reason = ""): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setTimeout(() => this.onclose?.({ code, reason }), 0);
  }

  /** The server side drops the connection. */
  drop(code = 1006): void {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }

  /** The server sends one message (as an ArrayBuffer, like binaryType "arraybuffer"). */
  reply(msg: ServerMessageInit): void {
    const bytes = encodeServerMessage(msg);
    this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  }

  /** Resolves with the n-th message (from 0) the client sent, once it is sent. */
  async nth(n: number, timeoutMs = 2000): Promise<ClientMessage> {
    const deadline = Date.now() + timeoutMs;
    while (this.sent.length <= n) {
      if (Date.now() > deadline) throw new Error(`client sent ${this.sent.length} messages, waited for ${n + 1}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.sent[n]!;
  }
}

/** Resolves once `socket` exists (the n-th created, from 0). */
export async function nthSocket(n: number, timeoutMs = 2000): Promise<FakeSocket> {
  const deadline = Date.now() + timeoutMs;
  while (FakeSocket.instances.length <= n) {
    if (Date.now() > deadline) throw new Error(`only ${FakeSocket.instances.length} sockets, waited for ${n + 1}`);
    await new Promise((r) => setTimeout(r, 1));
  }
  const s = FakeSocket.instances[n]!;
  while (s.readyState === 0) {
    if (Date.now() > deadline) throw new Error("socket never opened");
    await new Promise((r) => setTimeout(r, 1));
  }
  return s;
}
