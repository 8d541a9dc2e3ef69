// Encoding and decoding of the wire messages. Over WebSocket each binary message is
// exactly one protobuf message with no length prefix (PROTOCOL.md, v1.1 WebSocket);
// the length-prefixed helpers are for the TCP framing (u32 big-endian length).
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import {
  ClientMessageSchema,
  ServerMessageSchema,
  type ClientMessage,
  type ServerMessage,
} from "./gen/corecast_pb.js";

export type ClientMessageInit = MessageInitShape<typeof ClientMessageSchema>;
export type ServerMessageInit = MessageInitShape<typeof ServerMessageSchema>;

/** One ClientMessage as the payload of a binary WebSocket message. */
export function encodeClientMessage(msg: ClientMessageInit | ClientMessage): Uint8Array {
  return toBinary(ClientMessageSchema, create(ClientMessageSchema, msg as ClientMessageInit));
}

/** One ServerMessage from the payload of a binary WebSocket message. */
export function decodeServerMessage(bytes: Uint8Array): ServerMessage {
  return fromBinary(ServerMessageSchema, bytes);
}

/** The server's side (tests, fakes): one ServerMessage as bytes. */
export function encodeServerMessage(msg: ServerMessageInit | ServerMessage): Uint8Array {
  return toBinary(ServerMessageSchema, create(ServerMessageSchema, msg as ServerMessageInit));
}

/** The server's side (tests, fakes): one ClientMessage from bytes. */
export function decodeClientMessage(bytes: Uint8Array): ClientMessage {
  return fromBinary(ClientMessageSchema, bytes);
}

/** TCP framing: a u32 big-endian length, then the payload. */
export function frameLengthPrefixed(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length, false);
  out.set(payload, 4);
  return out;
}

/**
 * TCP framing: splits whole frames off the front of `buffer`; returns the payloads and
 * the bytes left over (an incomplete frame).
 */
export function splitLengthPrefixed(buffer: Uint8Array): { frames: Uint8Array[]; rest: Uint8Array } {
  const frames: Uint8Array[] = [];
  let offset = 0;
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  while (buffer.length - offset >= 4) {
    const length = view.getUint32(offset, false);
    if (buffer.length - offset - 4 < length) break;
    frames.push(buffer.subarray(offset + 4, offset + 4 + length));
    offset += 4 + length;
  }
  return { frames, rest: buffer.subarray(offset) };
}
