//! How corecast-chat writes and reads message bodies: public lines, and private
//! messages marked with [`PRIVATE_MARKER`] (an application-level convention).

/// How corecast-chat marks a private message: the body starts with this, then the
/// recipients (comma-separated) and a space, then the text: `/to ann,cat psst`.
///
/// The protocol has no flag for a targeted message, so the recipient cannot learn from
/// the server that it was targeted; this is an application-level convention in the
/// body (bodies are the application's bytes). A public line that would read as private
/// or as an escape (it starts with `/to ` or `//`) goes out with one more slash, which
/// the receiving corecast-chat removes. Other clients show the body as it is, and a
/// message from another client that happens to start with the marker looks private.
pub(crate) const PRIVATE_MARKER: &str = "/to ";

/// A message body as corecast-chat reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    /// Said to the whole room.
    Public(String),
    /// Marked private by its sender, to these recipients.
    Private { targets: Vec<String>, text: String },
}

/// The body of a public line.
pub(crate) fn encode_public(text: &str) -> String {
    if text.starts_with(PRIVATE_MARKER) || text.starts_with("//") {
        format!("/{text}")
    } else {
        text.to_string()
    }
}

/// The body of a private message.
pub(crate) fn encode_private(targets: &[String], text: &str) -> String {
    format!("{PRIVATE_MARKER}{} {text}", targets.join(","))
}

/// Reads a body written by [`encode_public`] or [`encode_private`] (or by anything
/// else: invalid UTF-8 is replaced, not refused).
pub(crate) fn decode_body(body: &[u8]) -> Body {
    let body = String::from_utf8_lossy(body);
    if let Some(escaped) = body.strip_prefix("//") {
        return Body::Public(format!("/{escaped}"));
    }
    if let Some((names, text)) = body
        .strip_prefix(PRIVATE_MARKER)
        .and_then(|rest| rest.split_once(' '))
    {
        let targets: Vec<String> = names
            .split(',')
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        if !targets.is_empty() {
            return Body::Private {
                targets,
                text: text.to_string(),
            };
        }
    }
    Body::Public(body.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_and_private_is_marked() {
        for text in [
            "hello",
            "/etc/hosts",
            "/to ann hi",
            "//to ann hi",
            "//",
            "/",
            "///x",
            "/tom is here",
            "",
        ] {
            let body = encode_public(text);
            assert_eq!(
                decode_body(body.as_bytes()),
                Body::Public(text.into()),
                "{text:?} as {body:?}"
            );
        }
        // Only a line that would collide is escaped: other clients see the rest as is.
        assert_eq!(encode_public("/etc/hosts"), "/etc/hosts");
        assert_eq!(encode_public("/to ann hi"), "//to ann hi");
        let targets = vec!["ann".to_string(), "cat".to_string()];
        let body = encode_private(&targets, "psst, a secret");
        assert_eq!(body, "/to ann,cat psst, a secret");
        assert_eq!(
            decode_body(body.as_bytes()),
            Body::Private {
                targets,
                text: "psst, a secret".into()
            }
        );
        // Not a well-formed marker: public.
        assert_eq!(decode_body(b"/to ann"), Body::Public("/to ann".into()));
        assert_eq!(decode_body(b"/to , x"), Body::Public("/to , x".into()));
    }
}
