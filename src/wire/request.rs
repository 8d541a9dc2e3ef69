//! Client payload decoding. `SendMessage`, the one request on the hot path, and
//! `LoginRequest`, the one with two strings, are read as zero-allocation views
//! borrowing the read buffer; anything else (and any such message the views do not
//! understand to the letter) goes through prost, which stays the authority on what is
//! valid.

use bytes::Buf;
use prost::encoding::{decode_key, decode_varint, WireType};
use prost::Message;

use crate::wire::proto::{
    client_message::Data, login_request::AuthConfig, ClientMessage, LoginRequest, SendMessage,
};

/// A decoded client payload.
#[derive(Debug, PartialEq)]
pub enum Request<'a> {
    /// A `SendMessage`, borrowing the payload.
    Send(SendView<'a>),
    /// A `LoginRequest`, borrowing the payload.
    Login(LoginView<'a>),
    /// Any other message (or a `SendMessage` only prost could decode).
    Message(ClientMessage),
}

impl Request<'_> {
    /// The `SendMessage` this is, from either path: the zero-copy view, or prost's
    /// message when only prost could decode it (repeated top-level fields).
    pub fn send_view(&self) -> Option<SendView<'_>> {
        match self {
            Request::Send(view) => Some(*view),
            Request::Message(ClientMessage {
                data: Some(Data::SendMessage(send)),
            }) => Some(SendView::of(send)),
            Request::Message(_) | Request::Login(_) => None,
        }
    }

    /// The `LoginRequest` this is, from either path.
    pub fn login_view(&self) -> Option<LoginView<'_>> {
        match self {
            Request::Login(view) => Some(*view),
            Request::Message(ClientMessage {
                data: Some(Data::LoginRequest(login)),
            }) => Some(LoginView::of(login)),
            Request::Message(_) | Request::Send(_) => None,
        }
    }
}

/// A `LoginRequest` whose strings borrow the frame they came in: decoding a login
/// allocates nothing, and the session then allocates the player id once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoginView<'a> {
    /// The player id.
    pub player_id: &'a str,
    /// The bearer token, if `auth_config` is set (possibly empty).
    pub token: Option<&'a str>,
    /// v1.1 `replace_existing`.
    pub replace_existing: bool,
}

impl<'a> LoginView<'a> {
    /// A view over an owned `LoginRequest` (the prost fallback path).
    pub fn of(msg: &'a LoginRequest) -> Self {
        Self {
            player_id: &msg.player_id,
            token: msg.auth_config.as_ref().map(|config| match config {
                AuthConfig::Bearer(bearer) => bearer.token.as_str(),
            }),
            replace_existing: msg.replace_existing,
        }
    }
}

/// A `SendMessage` whose strings and body borrow the frame they came in. Target ids
/// are not collected: they are counted (and checked as UTF-8) when the view is made and
/// read from the frame again when needed, so a frame full of ids allocates nothing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendView<'a> {
    /// The room to send to.
    pub room_id: &'a str,
    /// The opaque body.
    pub body: &'a [u8],
    targets: Targets<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Targets<'a> {
    /// The `SendMessage` body on the wire, every field already validated.
    Wire { message: &'a [u8], count: usize },
    /// The prost fallback's decoded list.
    Owned(&'a [String]),
}

impl Default for Targets<'_> {
    fn default() -> Self {
        Targets::Owned(&[])
    }
}

impl<'a> SendView<'a> {
    /// A view over an owned `SendMessage` (the prost fallback path).
    pub fn of(msg: &'a SendMessage) -> Self {
        Self {
            room_id: &msg.room_id,
            body: &msg.body,
            targets: Targets::Owned(&msg.target_ids),
        }
    }

    /// Number of target ids (duplicates included); 0 means a broadcast.
    pub fn target_count(&self) -> usize {
        match &self.targets {
            Targets::Wire { count, .. } => *count,
            Targets::Owned(list) => list.len(),
        }
    }

    /// The target ids, in wire order.
    pub fn targets(&self) -> impl Iterator<Item = &'a str> + '_ {
        let (mut wire, owned) = match &self.targets {
            Targets::Wire { message, .. } => (*message, &[][..]),
            Targets::Owned(list) => (&[][..], *list),
        };
        let from_wire = std::iter::from_fn(move || {
            while !wire.is_empty() {
                // Validated when the view was made: these cannot fail.
                let (tag, wire_type) = decode_key(&mut wire).ok()?;
                let field = skip_field(&mut wire, wire_type)?;
                if tag == 1 {
                    return std::str::from_utf8(field).ok();
                }
            }
            None
        });
        from_wire.chain(owned.iter().map(String::as_str))
    }
}

/// Decodes one client payload (the bytes after the length prefix).
pub fn decode_request(payload: &[u8]) -> Result<Request<'_>, prost::DecodeError> {
    let view = match only_field(payload) {
        Some((4, send)) => send_view(send).map(Request::Send),
        Some((1, login)) => login_view(login).map(Request::Login),
        _ => None,
    };
    match view {
        Some(view) => Ok(view),
        None => Ok(Request::Message(ClientMessage::decode(payload)?)),
    }
}

/// The payload's only top-level field, with its number, if the payload is exactly one
/// length-delimited field. More top-level fields bring in oneof merging rules: prost
/// handles those.
fn only_field(payload: &[u8]) -> Option<(u32, &[u8])> {
    let mut buf = payload;
    let (tag, wire) = decode_key(&mut buf).ok()?;
    if wire != WireType::LengthDelimited {
        return None;
    }
    let inner = take_len_delimited(&mut buf)?;
    buf.is_empty().then_some((tag, inner))
}

/// The fast path: `Some` only for a well-formed `SendMessage` (the bytes of the
/// payload's only field, `send_message`); `None` defers to prost, errors included.
fn send_view(inner: &[u8]) -> Option<SendView<'_>> {
    let mut view = SendView::default();
    let mut count = 0;
    let mut buf = inner;
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).ok()?;
        if (1..=3).contains(&tag) && wire != WireType::LengthDelimited {
            return None;
        }
        let field = skip_field(&mut buf, wire)?;
        match tag {
            1 => {
                std::str::from_utf8(field).ok()?;
                count += 1;
            }
            2 => view.room_id = std::str::from_utf8(field).ok()?,
            3 => view.body = field,
            _ => {}
        }
    }
    view.targets = Targets::Wire {
        message: inner,
        count,
    };
    Some(view)
}

/// The login fast path: `Some` only for a well-formed `LoginRequest` (the bytes of the
/// payload's only field, `login_request`) with at most one `bearer`; `None` defers to
/// prost. A string field that repeats keeps its last value, as prost does.
fn login_view(mut buf: &[u8]) -> Option<LoginView<'_>> {
    let mut view = LoginView::default();
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).ok()?;
        if (1..=2).contains(&tag) && wire != WireType::LengthDelimited {
            return None;
        }
        if tag == 3 {
            // A bool is a varint; anything else is prost's to refuse.
            if wire != WireType::Varint {
                return None;
            }
            view.replace_existing = decode_varint(&mut buf).ok()? != 0;
            continue;
        }
        let field = skip_field(&mut buf, wire)?;
        match tag {
            1 => view.player_id = std::str::from_utf8(field).ok()?,
            // A second `bearer` merges into the first: prost's job.
            2 if view.token.is_some() => return None,
            2 => view.token = Some(bearer_token(field)?),
            _ => {}
        }
    }
    Some(view)
}

/// The `token` of an `AuthConfigBearer` message ("" when absent, as in proto3).
fn bearer_token(mut buf: &[u8]) -> Option<&str> {
    let mut token = "";
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).ok()?;
        if tag == 1 && wire != WireType::LengthDelimited {
            return None;
        }
        let field = skip_field(&mut buf, wire)?;
        if tag == 1 {
            token = std::str::from_utf8(field).ok()?;
        }
    }
    Some(token)
}

/// Skips one field's value; returns its bytes for length-delimited fields. Groups
/// (deprecated) are left to prost.
fn skip_field<'a>(buf: &mut &'a [u8], wire: WireType) -> Option<&'a [u8]> {
    match wire {
        WireType::LengthDelimited => take_len_delimited(buf),
        WireType::Varint => decode_varint(buf).ok().map(|_| &[][..]),
        WireType::SixtyFourBit => skip(buf, 8).map(|_| &[][..]),
        WireType::ThirtyTwoBit => skip(buf, 4).map(|_| &[][..]),
        WireType::StartGroup | WireType::EndGroup => None,
    }
}

fn take_len_delimited<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(decode_varint(buf).ok()?).ok()?;
    if len > buf.len() {
        return None;
    }
    let (field, rest) = buf.split_at(len);
    *buf = rest;
    Some(field)
}

fn skip(buf: &mut &[u8], n: usize) -> Option<()> {
    if buf.remaining() < n {
        return None;
    }
    buf.advance(n);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proto::{JoinRequest, Ping};

    fn send(targets: &[&str], room: &str, body: &[u8]) -> Vec<u8> {
        ClientMessage {
            data: Some(Data::SendMessage(SendMessage {
                target_ids: targets.iter().map(|t| t.to_string()).collect(),
                room_id: room.into(),
                body: body.to_vec().into(),
            })),
        }
        .encode_to_vec()
    }

    #[test]
    fn send_message_decodes_as_a_borrowed_view() {
        let payload = send(&["bob", "eve"], "lobby", b"hi");
        let Request::Send(view) = decode_request(&payload).unwrap() else {
            panic!("expected the fast path");
        };
        assert_eq!(view.room_id, "lobby");
        assert_eq!(view.body, b"hi");
        assert_eq!(view.target_count(), 2);
        assert_eq!(view.targets().collect::<Vec<_>>(), ["bob", "eve"]);
    }

    fn login(player: &str, token: Option<&str>) -> Vec<u8> {
        ClientMessage {
            data: Some(Data::LoginRequest(LoginRequest {
                player_id: player.into(),
                auth_config: token.map(|t| {
                    AuthConfig::Bearer(crate::wire::proto::AuthConfigBearer { token: t.into() })
                }),
                ..Default::default()
            })),
        }
        .encode_to_vec()
    }

    #[test]
    fn login_decodes_as_a_borrowed_view() {
        for token in [None, Some(""), Some("s3cret")] {
            let payload = login("alice", token);
            let request = decode_request(&payload).unwrap();
            let Request::Login(view) = request else {
                panic!("expected the fast path for {token:?}");
            };
            assert_eq!(view.player_id, "alice");
            // proto3 does not send an empty token, but the oneof case still shows.
            assert_eq!(view.token, token);
            assert_eq!(request.login_view(), Some(view));
            assert_eq!(request.send_view(), None);
        }
    }

    #[test]
    fn replace_existing_is_read_by_the_fast_path_as_prost_reads_it() {
        for (replace, token) in [(true, Some("t")), (false, None), (true, None)] {
            let msg = ClientMessage {
                data: Some(Data::LoginRequest(LoginRequest {
                    player_id: "alice".into(),
                    auth_config: token.map(|t| {
                        AuthConfig::Bearer(crate::wire::proto::AuthConfigBearer { token: t.into() })
                    }),
                    replace_existing: replace,
                })),
            };
            let payload = msg.encode_to_vec();
            let request = decode_request(&payload).unwrap();
            let Request::Login(view) = request else {
                panic!("expected the fast path");
            };
            assert_eq!((view.replace_existing, view.token), (replace, token));
            let Some(Data::LoginRequest(owned)) = msg.data else {
                unreachable!()
            };
            assert_eq!(LoginView::of(&owned), view);
        }
        // A bool sent as a large varint is still true; a wrong wire type is prost's.
        let inner = [0x0a, 0x01, b'a', 0x18, 0x80, 0x01];
        let mut payload = vec![0x0a, inner.len() as u8];
        payload.extend_from_slice(&inner);
        let request = decode_request(&payload).unwrap();
        assert!(request.login_view().unwrap().replace_existing);
        let inner = [0x0a, 0x01, b'a', 0x1a, 0x00];
        let mut payload = vec![0x0a, inner.len() as u8];
        payload.extend_from_slice(&inner);
        assert!(decode_request(&payload).is_err(), "field 3 as bytes");
    }

    #[test]
    fn a_login_with_two_bearers_is_merged_by_prost() {
        let mut payload = login("alice", Some("one"));
        // Append a second `bearer` inside the login_request: rebuild the outer length.
        let mut inner = payload[2..].to_vec();
        inner.extend_from_slice(&[0x12, 0x05, 0x0a, 0x03, b't', b'w', b'o']);
        payload = vec![0x0a, inner.len() as u8];
        payload.extend_from_slice(&inner);
        let request = decode_request(&payload).unwrap();
        assert!(
            matches!(request, Request::Message(_)),
            "prost merges bearers"
        );
        let view = request.login_view().unwrap();
        assert_eq!((view.player_id, view.token), ("alice", Some("two")));
    }

    #[test]
    fn other_messages_go_through_prost() {
        let msg = ClientMessage {
            data: Some(Data::Ping(Ping { nonce: 7 })),
        };
        assert_eq!(
            decode_request(&msg.encode_to_vec()).unwrap(),
            Request::Message(msg)
        );
        let join = ClientMessage {
            data: Some(Data::JoinRequest(JoinRequest {
                room_id: "r".into(),
                room_config: None,
                ..Default::default()
            })),
        };
        assert_eq!(
            decode_request(&join.encode_to_vec()).unwrap(),
            Request::Message(join)
        );
    }

    #[test]
    fn invalid_utf8_in_a_send_is_an_error_not_a_view() {
        let mut payload = send(&[], "ab", b"x");
        let at = payload.windows(2).position(|w| w == b"ab").unwrap();
        payload[at] = 0xff;
        assert!(decode_request(&payload).is_err());
    }

    #[test]
    fn truncated_payloads_are_errors() {
        let payload = send(&["t"], "room", b"body");
        for cut in 1..payload.len() {
            assert!(decode_request(&payload[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn unknown_fields_between_targets_are_skipped() {
        // send_message{target_ids="a", 9: varint 1, target_ids="b", room_id="r"}
        let inner = [
            0x0a, 0x01, b'a', 0x48, 0x01, 0x0a, 0x01, b'b', 0x12, 0x01, b'r',
        ];
        let mut payload = vec![0x22, inner.len() as u8];
        payload.extend_from_slice(&inner);
        let Request::Send(view) = decode_request(&payload).unwrap() else {
            panic!("fast path")
        };
        assert_eq!(view.targets().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(view.room_id, "r");
        let prost = Request::Message(ClientMessage::decode(&payload[..]).unwrap());
        let view = prost.send_view().unwrap();
        assert_eq!(view.targets().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn empty_payload_is_a_message_without_data() {
        assert_eq!(
            decode_request(&[]).unwrap(),
            Request::Message(ClientMessage { data: None })
        );
    }

    #[test]
    fn repeated_top_level_fields_follow_prost_merge_rules() {
        let mut payload = send(&["a"], "r1", b"x");
        payload.extend(send(&["b"], "r2", b""));
        let request = decode_request(&payload).unwrap();
        assert!(
            matches!(request, Request::Message(_)),
            "merging must go through prost"
        );
        let send = request.send_view().unwrap();
        assert_eq!(send.targets().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(send.room_id, "r2");
    }
}
