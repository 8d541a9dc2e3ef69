// The corecast WebSocket client: requests with promises, typed events, per-room resume
// cursors and automatic reconnect (re-login with replace_existing, rejoin with resume).
import { create } from "@bufbuild/protobuf";
import {
  ErrorCode,
  JoinResponseSchema,
  type Error as WireError,
  type JoinResponse,
  type ServerMessage,
} from "./gen/corecast_pb.js";
import { Backoff, type BackoffOptions } from "./backoff.js";
import { decodeServerMessage, encodeClientMessage, type ClientMessageInit } from "./codec.js";
import { RoomCursor, type ResumePoint } from "./cursor.js";
import { Emitter } from "./emitter.js";
import { ConnectionClosedError, CorecastError, TimeoutError } from "./errors.js";

/** The WebSocket subprotocol corecast selects when a client offers subprotocols. */
export const SUBPROTOCOL = "corecast.v1";

/**
 * What the client needs of a WebSocket: the browser's native WebSocket and the `ws`
 * package's WebSocket (Node) both fit.
 */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly protocol: string;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onopen: ((ev: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onmessage: ((ev: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onclose: ((ev: any) => void) | null;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  onerror: ((ev: any) => void) | null;
}

/** A WebSocket constructor: `globalThis.WebSocket` in browsers, `ws`'s in Node 20. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

const OPEN = 1;

export interface ReconnectOptions extends BackoffOptions {
  /** Give up after this many failed attempts in a row (default: never). */
  maxAttempts?: number;
}

export interface ClientOptions {
  /** The WebSocket implementation (default: globalThis.WebSocket; Node 20 has none: pass `ws`). */
  WebSocket?: WebSocketConstructor;
  /** Subprotocols to offer (default ["corecast.v1"]). */
  protocols?: string[];
  /** How long a request waits for its response, in ms (default 10000). */
  requestTimeoutMs?: number;
  /** How long opening the WebSocket may take, in ms (default 10000). */
  connectTimeoutMs?: number;
  /** Automatic reconnect after an unexpected close (default on); false turns it off. */
  reconnect?: false | ReconnectOptions;
  /** Send a ping this often while open, in ms, so the server's idle timeout never fires (default 20000; 0: off). */
  keepaliveMs?: number;
}

/** A token, or a function giving one (called at every login, reconnects included). */
export type TokenSource = string | (() => string | Promise<string>);

export interface LoginOptions {
  /** Close this player's other session, if any (v1.1), instead of ALREADY_LOGGED_IN. */
  replaceExisting?: boolean;
}

export interface JoinOptions {
  /** The room's max_players (0: no per-room cap). Omitted: accept the room's own config. */
  maxPlayers?: number;
  /**
   * Resume after `sinceSeq` in `epoch`: every retained message after it is replayed.
   * `true` resumes from this client's own cursor for the room, if it has one.
   */
  resume?: { epoch: string; sinceSeq: bigint | number } | true;
  /** Replay at most this many retained messages (without resume: the last N). */
  historyLimit?: number;
}

/** A message delivered in a room. */
export interface RoomMessage {
  room: string;
  sender: string;
  body: Uint8Array;
  /** The room's seq of this message (0 from a server that does not number). */
  seq: bigint;
  /** True when the message is a replay from history (seq at or before the join's last_seq). */
  replayed: boolean;
}

export interface RoomMember {
  room: string;
  player: string;
}

export interface CloseInfo {
  /** The WebSocket close code (1006: dropped without a close frame). */
  code: number;
  reason: string;
  /** The server's error that came just before the close, if any. */
  error?: CorecastError;
  /** Whether the client is about to reconnect by itself. */
  willReconnect: boolean;
}

export interface RejoinResult {
  room: string;
  /** The JoinResponse of the rejoin (recovered tells whether nothing was lost). */
  response?: JoinResponse;
  /** Why the room could not be rejoined (it is then dropped from the client's rooms). */
  error?: CorecastError;
}

export interface ClientEvents {
  /** A MessageNotification (each seq at most once per epoch: duplicates are dropped). */
  message: RoomMessage;
  /** Another player joined one of this client's rooms. */
  join: RoomMember;
  /** Another player left one of this client's rooms. */
  leave: RoomMember;
  /** An error the server sent that answers no request (NOT_IN_ROOM, FORBIDDEN, SESSION_REPLACED, ...). */
  error: CorecastError;
  /** The WebSocket closed. */
  close: CloseInfo;
  /** A reconnect attempt is scheduled. */
  reconnecting: { attempt: number; delayMs: number };
  /** Reconnected: logged in again and every room rejoined (or dropped, with its error). */
  reconnected: { rooms: RejoinResult[] };
}

export type ClientState = "connecting" | "open" | "reconnecting" | "closed";

interface Pending {
  resolve(msg: ServerMessage): void;
  reject(err: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/** How a reconnect attempt's socket closed. */
interface AttemptClose {
  code: number;
  reason: string;
  error?: CorecastError;
}

interface RoomState {
  maxPlayers?: number;
  historyLimit?: number;
}

/** Error codes after which reconnecting would not help (or would fight another session). */
const FATAL_CODES = new Set<ErrorCode>([
  ErrorCode.UNAUTHORIZED,
  ErrorCode.SESSION_REPLACED,
  ErrorCode.DISCONNECTED,
  ErrorCode.BAD_REQUEST,
  ErrorCode.FRAME_TOO_LARGE,
]);

function toBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data) && data.every((part) => ArrayBuffer.isView(part))) {
    // ws with binaryType "fragments".
    const parts = data as ArrayBufferView[];
    const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
    let offset = 0;
    for (const p of parts) {
      out.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), offset);
      offset += p.byteLength;
    }
    return out;
  }
  return undefined;
}

function errorOf(error: WireError | undefined, request?: string, room?: string): CorecastError | undefined {
  if (!error || error.code === ErrorCode.NONE) return undefined;
  return new CorecastError(error.code, error.message, { request, room });
}

/**
 * A corecast client over WebSocket. Create it with {@link CorecastClient.connect}, then
 * login, join, send; listen with `on("message", ...)`.
 */
export class CorecastClient extends Emitter<ClientEvents> {
  readonly url: string;
  private readonly opts: Required<Omit<ClientOptions, "reconnect" | "WebSocket">> & {
    reconnect: false | ReconnectOptions;
    WebSocket: WebSocketConstructor;
  };
  private socket?: WebSocketLike;
  private stateValue: ClientState = "connecting";
  private readonly pending = new Map<string, Pending[]>();
  /**
   * Per key, how many requests timed out on the current socket: the server answers
   * every login, join and leave in order, so that many next responses for the key are
   * theirs, arriving late, and are dropped instead of answering a later request.
   */
  private readonly late = new Map<string, number>();
  private readonly rooms = new Map<string, RoomState>();
  private readonly cursors = new Map<string, RoomCursor>();
  /** Per room, the last_seq of the latest join: messages up to it are replays. */
  private readonly joinLastSeq = new Map<string, bigint>();
  private lastServerError?: CorecastError;
  private login_?: { playerId: string; token?: TokenSource; loggedIn: boolean };
  private userClosed = false;
  private readonly backoff: Backoff;
  private reconnectTimer?: ReturnType<typeof setTimeout>;
  /** How the socket of the reconnect attempt in progress closed, if it did. */
  private attemptClosed?: AttemptClose;
  private wakeReconnect?: () => void;
  private keepaliveTimer?: ReturnType<typeof setInterval>;
  private nonce = BigInt(Math.floor(Math.random() * 0x7fffffff)) << 16n;
  private closedPromise?: Promise<void>;
  private resolveClosed?: () => void;

  private constructor(url: string, options: ClientOptions) {
    super();
    this.url = url;
    const WebSocketImpl =
      options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WebSocketImpl) {
      throw new Error(
        "no WebSocket implementation: pass options.WebSocket (in Node 20, the `ws` package's WebSocket)",
      );
    }
    this.opts = {
      WebSocket: WebSocketImpl,
      protocols: options.protocols ?? [SUBPROTOCOL],
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      reconnect: options.reconnect === false ? false : (options.reconnect ?? {}),
      keepaliveMs: options.keepaliveMs ?? 20_000,
    };
    this.backoff = new Backoff(this.opts.reconnect === false ? {} : this.opts.reconnect);
  }

  /** Opens a WebSocket to `url` (e.g. ws://127.0.0.1:7879/ws); resolves once it is open. */
  static async connect(url: string, options: ClientOptions = {}): Promise<CorecastClient> {
    const client = new CorecastClient(url, options);
    try {
      await client.open();
    } catch (err) {
      client.stateValue = "closed";
      throw err;
    }
    client.stateValue = "open";
    return client;
  }

  /** "open", "reconnecting" (between attempts, or logging in again), or "closed" for good. */
  get state(): ClientState {
    return this.stateValue;
  }

  /** The player id of the last successful login. */
  get playerId(): string | undefined {
    return this.login_?.loggedIn ? this.login_.playerId : undefined;
  }

  /** The subprotocol the server selected ("corecast.v1", or "" if none). */
  get protocol(): string {
    return this.socket?.protocol ?? "";
  }

  /** The rooms this client is in (and will rejoin after a reconnect). */
  joinedRooms(): string[] {
    return [...this.rooms.keys()];
  }

  /** The resume point of a room: its epoch and the last seq delivered. */
  cursor(room: string): ResumePoint | undefined {
    return this.cursors.get(room)?.point();
  }

  /**
   * Logs in. `token` is sent as the bearer token (the static token or a JWT); a function
   * is called at every login, reconnects included, so it can fetch a fresh one.
   */
  async login(playerId: string, token?: TokenSource, options: LoginOptions = {}): Promise<void> {
    const tokenValue = typeof token === "function" ? await token() : token;
    await this.sendLogin(playerId, tokenValue, options.replaceExisting ?? false);
    this.login_ = { playerId, token, loggedIn: true };
  }

  /**
   * Refreshes the session's token before it expires (a LoginRequest with the same player
   * id on the logged-in connection). The new token is used for reconnects too.
   */
  async refreshToken(token: string): Promise<void> {
    const login = this.requireLogin("refreshToken");
    await this.sendLogin(login.playerId, token, false);
    login.token = token;
  }

  /**
   * Joins a room; resolves with the JoinResponse (epoch, last_seq, recovered, current
   * players), rejects with a CorecastError carrying the server's code.
   */
  async join(room: string, options: JoinOptions = {}): Promise<JoinResponse> {
    this.requireLogin("join");
    let resume: { epoch: string; sinceSeq: bigint } | undefined;
    if (options.resume === true) {
      const point = this.cursor(room);
      if (point) resume = { epoch: point.epoch, sinceSeq: point.lastSeq };
    } else if (options.resume) {
      resume = { epoch: options.resume.epoch, sinceSeq: BigInt(options.resume.sinceSeq) };
    }
    const response = await this.sendJoin(room, options.maxPlayers, options.historyLimit, resume);
    this.rooms.set(room, { maxPlayers: options.maxPlayers, historyLimit: options.historyLimit });
    return response;
  }

  /** Leaves a room (its resume cursor is kept: a later join may resume: true). */
  async leave(room: string): Promise<void> {
    this.requireLogin("leave");
    const reply = await this.request(`leave:${room}`, `leave ${JSON.stringify(room)}`, {
      data: { case: "leaveRequest", value: { roomId: room } },
    });
    const response = reply.data.case === "leaveResponse" ? reply.data.value : undefined;
    const error = errorOf(response?.error, "leave", room);
    if (error) {
      if (error.code === ErrorCode.NOT_IN_ROOM) this.rooms.delete(room);
      throw error;
    }
    this.rooms.delete(room);
  }

  /**
   * Sends a message to a room: to every member (the sender included) or only to
   * `targets`. Best effort, no response: a refusal arrives as an "error" event.
   */
  send(room: string, body: Uint8Array | string, targets: string[] = []): void {
    this.requireLogin("send");
    const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
    this.write({ data: { case: "sendMessage", value: { roomId: room, body: bytes, targetIds: targets } } });
  }

  /** Pings the server (works before login too); resolves with the round-trip time in ms. */
  async ping(): Promise<number> {
    this.nonce += 1n;
    const nonce = this.nonce;
    const started = Date.now();
    await this.request(`pong:${nonce}`, "ping", { data: { case: "ping", value: { nonce } } });
    return Date.now() - started;
  }

  /** Closes the connection for good (no reconnect); resolves once the socket is closed. */
  close(): Promise<void> {
    if (this.userClosed) return this.closedPromise ?? Promise.resolve();
    this.userClosed = true;
    if (this.stateValue === "closed") return Promise.resolve(); // closed already (a fatal error)
    this.closedPromise = new Promise((resolve) => (this.resolveClosed = resolve));
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.wakeReconnect?.();
    this.stopKeepalive();
    const socket = this.socket;
    if (socket && socket.readyState <= OPEN) {
      socket.close(1000, "client closed");
    } else {
      this.finishClose({ code: 1000, reason: "client closed", willReconnect: false });
    }
    return this.closedPromise;
  }

  /**
   * Waits for the next `event` (and `predicate`, if given) within `timeoutMs`; handy in
   * tests and scripts.
   */
  waitFor<K extends keyof ClientEvents>(
    event: K,
    predicate: (value: ClientEvents[K]) => boolean = () => true,
    timeoutMs = this.opts.requestTimeoutMs,
  ): Promise<ClientEvents[K]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new TimeoutError(`waiting for ${String(event)}`, timeoutMs));
      }, timeoutMs);
      const off = this.on(event, (value) => {
        if (!predicate(value)) return;
        clearTimeout(timer);
        off();
        resolve(value);
      });
    });
  }

  // --- internals -------------------------------------------------------------------

  private requireLogin(what: string): { playerId: string; token?: TokenSource; loggedIn: boolean } {
    if (!this.login_?.loggedIn) {
      throw new CorecastError(ErrorCode.FAILED_PRECONDITION, "log in first (checked by the client)", {
        request: what,
      });
    }
    return this.login_;
  }

  private async sendLogin(playerId: string, token: string | undefined, replaceExisting: boolean): Promise<void> {
    const reply = await this.request("login", "login", {
      data: {
        case: "loginRequest",
        value: {
          playerId,
          replaceExisting,
          authConfig: token !== undefined ? { case: "bearer", value: { token } } : { case: undefined },
        },
      },
    });
    const response = reply.data.case === "loginResponse" ? reply.data.value : undefined;
    const error = errorOf(response?.error, "login");
    if (error) throw error;
  }

  private async sendJoin(
    room: string,
    maxPlayers: number | undefined,
    historyLimit: number | undefined,
    resume: { epoch: string; sinceSeq: bigint } | undefined,
  ): Promise<JoinResponse> {
    const requestedEpoch = resume?.epoch ?? "";
    const sinceSeq = resume?.sinceSeq ?? 0n;
    const reply = await this.request(
      `join:${room}`,
      `join ${JSON.stringify(room)}`,
      {
        data: {
          case: "joinRequest",
          value: {
            roomId: room,
            roomConfig: maxPlayers !== undefined ? { maxPlayers } : undefined,
            sinceSeq,
            epoch: requestedEpoch,
            historyLimit: historyLimit ?? 0,
          },
        },
      },
      // Runs as the response is dispatched, before any replayed message that follows it.
      (msg) => {
        if (msg.data.case !== "joinResponse") return;
        const response = msg.data.value;
        if (response.error && response.error.code !== ErrorCode.NONE) return;
        let cursor = this.cursors.get(room);
        if (!cursor) {
          cursor = new RoomCursor();
          this.cursors.set(room, cursor);
        }
        cursor.onJoin(response.epoch, requestedEpoch, sinceSeq);
        this.joinLastSeq.set(room, response.lastSeq);
      },
    );
    const response =
      reply.data.case === "joinResponse" ? reply.data.value : create(JoinResponseSchema, { roomId: room });
    const error = errorOf(response.error, "join", room);
    if (error) throw error;
    return response;
  }

  private write(msg: ClientMessageInit): void {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN || this.stateValue === "closed") {
      throw new ConnectionClosedError(
        this.stateValue === "reconnecting" ? "not connected (reconnecting)" : "not connected",
        { serverError: this.lastServerError },
      );
    }
    socket.send(encodeClientMessage(msg));
  }

  private request(
    key: string,
    what: string,
    msg: ClientMessageInit,
    onResponse?: (msg: ServerMessage) => void,
  ): Promise<ServerMessage> {
    return new Promise((resolve, reject) => {
      const timeoutMs = this.opts.requestTimeoutMs;
      const entry: Pending = {
        resolve: (reply) => {
          clearTimeout(entry.timer);
          onResponse?.(reply);
          resolve(reply);
        },
        reject: (err) => {
          clearTimeout(entry.timer);
          reject(err);
        },
        timer: setTimeout(() => {
          const queue = this.pending.get(key);
          const at = queue?.indexOf(entry) ?? -1;
          if (queue && at >= 0) {
            queue.splice(at, 1);
            // Its response may still come: the next one for `key` is then its, not a later request's.
            this.late.set(key, (this.late.get(key) ?? 0) + 1);
          }
          if (queue?.length === 0) this.pending.delete(key);
          reject(new TimeoutError(what, timeoutMs));
        }, timeoutMs),
      };
      try {
        this.write(msg);
      } catch (err) {
        clearTimeout(entry.timer);
        reject(err as Error);
        return;
      }
      const queue = this.pending.get(key);
      if (queue) queue.push(entry);
      else this.pending.set(key, [entry]);
    });
  }

  /**
   * Hands a response to the oldest request waiting for `key`; false if none waits or
   * the response is a timed-out request's, arriving late (dropped).
   */
  private settle(key: string, msg: ServerMessage): boolean {
    const late = this.late.get(key) ?? 0;
    if (late > 0) {
      if (late === 1) this.late.delete(key);
      else this.late.set(key, late - 1);
      return false;
    }
    const queue = this.pending.get(key);
    const entry = queue?.shift();
    if (queue?.length === 0) this.pending.delete(key);
    if (!entry) return false;
    entry.resolve(msg);
    return true;
  }

  private rejectAll(err: Error): void {
    const all = [...this.pending.values()].flat();
    this.pending.clear();
    for (const entry of all) entry.reject(err);
  }

  private dispatch(msg: ServerMessage): void {
    const data = msg.data;
    switch (data.case) {
      case "loginResponse":
        this.settle("login", msg);
        break;
      case "joinResponse":
        this.settle(`join:${data.value.roomId}`, msg);
        break;
      case "leaveResponse":
        this.settle(`leave:${data.value.roomId}`, msg);
        break;
      case "pong":
        this.settle(`pong:${data.value.nonce}`, msg);
        break;
      case "joinNotification":
        this.emit("join", { room: data.value.roomId, player: data.value.playerId });
        break;
      case "leaveNotification":
        this.emit("leave", { room: data.value.roomId, player: data.value.playerId });
        break;
      case "messageNotification": {
        const n = data.value;
        const cursor = this.cursors.get(n.roomId);
        if (cursor && !cursor.accept(n.seq)) break; // already delivered
        const lastSeq = this.joinLastSeq.get(n.roomId) ?? 0n;
        this.emit("message", {
          room: n.roomId,
          sender: n.senderId,
          body: n.body,
          seq: n.seq,
          replayed: n.seq !== 0n && n.seq <= lastSeq,
        });
        break;
      }
      case "error": {
        const error = new CorecastError(data.value.code, data.value.message);
        this.lastServerError = error;
        this.emit("error", error);
        break;
      }
      default:
        // A newer server's message this client does not know: ignore it.
        break;
    }
  }

  /** Opens a socket and wires its events; resolves once open. */
  private open(): Promise<void> {
    return new Promise((resolve, reject) => {
      let opened = false;
      const socket = new this.opts.WebSocket(this.url, this.opts.protocols);
      socket.binaryType = "arraybuffer";
      this.socket = socket;
      this.lastServerError = undefined;
      this.late.clear(); // responses to the old socket's requests never come on this one
      const timer = setTimeout(() => {
        if (opened) return;
        socket.onclose = null;
        socket.close();
        reject(new TimeoutError(`connect ${this.url}`, this.opts.connectTimeoutMs));
      }, this.opts.connectTimeoutMs);
      socket.onopen = () => {
        opened = true;
        clearTimeout(timer);
        this.startKeepalive();
        resolve();
      };
      socket.onerror = () => {
        // The close event follows with the details.
      };
      socket.onmessage = (ev: { data: unknown }) => {
        if (this.socket !== socket) return;
        const bytes = toBytes(ev.data);
        if (!bytes) {
          this.emit(
            "error",
            new CorecastError(ErrorCode.BAD_REQUEST, "the server sent a non-binary WebSocket message (ignored)"),
          );
          return;
        }
        let msg: ServerMessage;
        try {
          msg = decodeServerMessage(bytes);
        } catch (err) {
          this.emit(
            "error",
            new CorecastError(ErrorCode.BAD_REQUEST, `undecodable ServerMessage from the server: ${String(err)}`),
          );
          return;
        }
        this.dispatch(msg);
      };
      socket.onclose = (ev: { code?: number; reason?: string }) => {
        clearTimeout(timer);
        if (!opened) {
          reject(
            new ConnectionClosedError(
              `could not open ${this.url} (close code ${ev.code ?? 1006}${ev.reason ? `: ${ev.reason}` : ""})`,
              { closeCode: ev.code },
            ),
          );
          return;
        }
        if (this.socket === socket) this.onSocketClosed(ev.code ?? 1006, ev.reason ?? "");
      };
    });
  }

  private onSocketClosed(code: number, reason: string): void {
    this.stopKeepalive();
    const error = this.lastServerError;
    this.rejectAll(new ConnectionClosedError(`connection closed (code ${code})`, { closeCode: code, serverError: error }));
    if (this.stateValue === "reconnecting") {
      // A reconnect attempt in progress notices through its failed requests, and then
      // tells whether it tries again (a refused login does not).
      this.attemptClosed = { code, reason, error };
      return;
    }
    const reconnect =
      !this.userClosed &&
      this.opts.reconnect !== false &&
      this.login_?.loggedIn === true &&
      !(error && FATAL_CODES.has(error.code) && !this.mayRenewToken(error));
    if (!reconnect) {
      this.finishClose({ code, reason, error, willReconnect: false });
      return;
    }
    this.stateValue = "reconnecting";
    this.emit("close", { code, reason, error, willReconnect: true });
    void this.reconnectLoop();
  }

  /**
   * Whether an UNAUTHORIZED that ended a live session (its signed token expired) is
   * worth a reconnection: with a token function, it may give a fresh token now. A
   * reconnection whose login is refused still ends for good, so a bad token never loops.
   */
  private mayRenewToken(error: CorecastError): boolean {
    return error.code === ErrorCode.UNAUTHORIZED && typeof this.login_?.token === "function";
  }

  private finishClose(info: CloseInfo): void {
    this.stateValue = "closed";
    this.stopKeepalive();
    this.rejectAll(new ConnectionClosedError("connection closed", { closeCode: info.code, serverError: info.error }));
    this.emit("close", info);
    this.resolveClosed?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wakeReconnect = resolve;
      this.reconnectTimer = setTimeout(resolve, ms);
    });
  }

  private async reconnectLoop(): Promise<void> {
    const reconnect = this.opts.reconnect === false ? {} : this.opts.reconnect;
    const maxAttempts = reconnect.maxAttempts ?? Infinity;
    let lastError: CorecastError | undefined;
    while (!this.userClosed) {
      if (this.backoff.attempts >= maxAttempts) break;
      const delayMs = this.backoff.nextDelay();
      this.emit("reconnecting", { attempt: this.backoff.attempts, delayMs });
      await this.sleep(delayMs);
      if (this.userClosed) break;
      this.attemptClosed = undefined;
      try {
        await this.open();
        const login = this.login_!;
        const token = typeof login.token === "function" ? await login.token() : login.token;
        await this.sendLogin(login.playerId, token, true);
        const rooms = await this.rejoinAll();
        this.backoff.reset();
        this.stateValue = "open";
        this.emit("reconnected", { rooms });
        return;
      } catch (err) {
        this.rejectAll(err instanceof Error ? err : new Error(String(err)));
        if (err instanceof CorecastError && FATAL_CODES.has(err.code)) {
          lastError = err;
          break;
        }
        // (A cast: TypeScript cannot see onSocketClosed set it while this attempt awaited.)
        const closedBy = this.attemptClosed as AttemptClose | undefined;
        if (closedBy && !this.userClosed) this.emit("close", { ...closedBy, willReconnect: true });
        const socket = this.socket;
        if (socket && socket.readyState <= OPEN) {
          socket.onclose = null;
          socket.close();
        }
      }
    }
    if (this.userClosed) {
      this.finishClose({ code: 1000, reason: "client closed", willReconnect: false });
      return;
    }
    const socket = this.socket;
    if (socket && socket.readyState <= OPEN) {
      socket.onclose = null;
      socket.close();
    }
    this.finishClose({
      code: (this.attemptClosed as AttemptClose | undefined)?.code ?? 1006,
      reason: lastError ? `reconnect refused: ${lastError.message}` : "reconnect attempts exhausted",
      error: lastError,
      willReconnect: false,
    });
  }

  /** Rejoins every room, resuming from its cursor (history_limit 0: all that was retained). */
  private async rejoinAll(): Promise<RejoinResult[]> {
    const rooms = [...this.rooms.entries()];
    const results = await Promise.all(
      rooms.map(async ([room, state]): Promise<RejoinResult> => {
        const point = this.cursor(room);
        const resume = point && point.lastSeq > 0n ? { epoch: point.epoch, sinceSeq: point.lastSeq } : undefined;
        try {
          const response = await this.sendJoin(room, state.maxPlayers, resume ? 0 : state.historyLimit, resume);
          return { room, response };
        } catch (err) {
          if (err instanceof CorecastError) return { room, error: err };
          throw err; // the connection went away: the attempt fails
        }
      }),
    );
    for (const result of results) {
      if (result.error) {
        this.rooms.delete(result.room);
        this.emit("error", result.error);
      }
    }
    return results;
  }

  private startKeepalive(): void {
    this.stopKeepalive();
    if (this.opts.keepaliveMs <= 0) return;
    const timer = setInterval(() => {
      if (this.socket?.readyState === OPEN) this.ping().catch(() => {});
    }, this.opts.keepaliveMs);
    (timer as { unref?: () => void }).unref?.();
    this.keepaliveTimer = timer;
  }

  private stopKeepalive(): void {
    if (this.keepaliveTimer !== undefined) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = undefined;
  }
}
