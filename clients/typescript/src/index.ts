export {
  CorecastClient,
  SUBPROTOCOL,
  type ClientEvents,
  type ClientOptions,
  type ClientState,
  type CloseInfo,
  type JoinOptions,
  type LoginOptions,
  type ReconnectOptions,
  type RejoinResult,
  type RoomMember,
  type RoomMessage,
  type TokenSource,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./client.js";
export { Backoff, type BackoffOptions } from "./backoff.js";
export { RoomCursor, type ResumePoint } from "./cursor.js";
export { ConnectionClosedError, CorecastError, TimeoutError, errorCodeName } from "./errors.js";
export {
  decodeClientMessage,
  decodeServerMessage,
  encodeClientMessage,
  encodeServerMessage,
  frameLengthPrefixed,
  splitLengthPrefixed,
  type ClientMessageInit,
  type ServerMessageInit,
} from "./codec.js";
export * from "./gen/corecast_pb.js";
