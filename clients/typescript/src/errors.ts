import { ErrorCode } from "./gen/corecast_pb.js";

/** The name of an ErrorCode value ("ROOM_IS_FULL"), or its number for an unknown one. */
export function errorCodeName(code: ErrorCode | number): string {
  const name = (ErrorCode as unknown as Record<number, string | undefined>)[code];
  return name ?? `UNKNOWN_ERROR_CODE_${code}`;
}

/** An error the server reported: a response's `error`, or a ServerMessage `error`. */
export class CorecastError extends Error {
  /** The server's ErrorCode. */
  readonly code: ErrorCode;
  /** The name of `code`, e.g. "ROOM_IS_FULL". */
  readonly codeName: string;
  /** The server's human-readable message (may be empty). */
  readonly serverMessage: string;
  /** The request this error answers ("login", "join", ...), or undefined when unsolicited. */
  readonly request?: string;
  /** The room, when the error answers a join or leave. */
  readonly room?: string;

  constructor(code: ErrorCode, serverMessage: string, opts: { request?: string; room?: string } = {}) {
    const where = opts.request ? `${opts.request}${opts.room !== undefined ? ` ${JSON.stringify(opts.room)}` : ""}: ` : "";
    super(`${where}${errorCodeName(code)}${serverMessage ? `: ${serverMessage}` : ""}`);
    this.name = "CorecastError";
    this.code = code;
    this.codeName = errorCodeName(code);
    this.serverMessage = serverMessage;
    this.request = opts.request;
    this.room = opts.room;
  }
}

/** A request got no response in time. */
export class TimeoutError extends Error {
  constructor(what: string, ms: number) {
    super(`${what}: no response within ${ms} ms`);
    this.name = "TimeoutError";
  }
}

/** The connection is not open (closed, or between reconnect attempts). */
export class ConnectionClosedError extends Error {
  /** The WebSocket close code, when the socket closed. */
  readonly closeCode?: number;
  /** The server error that came just before the close, if any (e.g. SLOW_CONSUMER). */
  readonly serverError?: CorecastError;

  constructor(message: string, opts: { closeCode?: number; serverError?: CorecastError } = {}) {
    super(opts.serverError ? `${message}, after the server's error ${opts.serverError.message}` : message);
    this.name = "ConnectionClosedError";
    this.closeCode = opts.closeCode;
    this.serverError = opts.serverError;
  }
}
