//! The printed lines' helpers: control characters escaped, error lines, member lists.

use std::collections::BTreeSet;

use corecast::proto::ErrorCode;

/// The members, comma-separated, in order.
pub(crate) fn list(members: &BTreeSet<String>) -> String {
    members
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The error line for a response's `error` field, None when it says NONE.
pub(crate) fn failure(error: Option<&corecast::proto::Error>) -> Option<String> {
    error
        .filter(|e| e.code != ErrorCode::None as i32)
        .map(error_line)
}

/// `! error CODE: message`, with the code's protocol name.
pub(crate) fn error_line(error: &corecast::proto::Error) -> String {
    let code = match ErrorCode::try_from(error.code) {
        Ok(code) => code.as_str_name().to_string(),
        Err(_) => format!("CODE_{}", error.code),
    };
    clean(&format!("! error {code}: {}", error.message))
}

/// Escapes control characters: names, room ids and bodies come from other users, and
/// must not move the cursor, clear the screen or forge a second line.
pub(crate) fn clean(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
