//! What an input line asks for: the [`Command`]s, [`parse_line`], and the command list
//! that `/help` and `--help` print.

/// The commands, as `/help` and `--help` list them.
pub(crate) const COMMANDS: &str = "\
Commands (anything else is said to the current room):
  /to NAME[,NAME...] TEXT   send TEXT to these members of the current room only,
                            marked private (a corecast-chat convention)
  /join ROOM                join ROOM (or switch to it if already joined); it becomes current
  /leave [ROOM]             leave ROOM (default: the current room)
  /who [ROOM]               list the members of ROOM (default: the current room)
  /help                     this list
  /quit                     disconnect and exit (end of input, Ctrl-D and Ctrl-C do the same)
  //TEXT                    say /TEXT (a line that starts with a slash)";

/// What one input line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// A blank line: nothing to do.
    Nothing,
    /// Say this to every member of the current room.
    Say(String),
    /// Say this to the listed members of the current room only.
    To { targets: Vec<String>, text: String },
    /// Join a room, or switch to it when already a member.
    Join(String),
    /// Leave a room (None: the current one).
    Leave(Option<String>),
    /// List a room's members (None: the current room).
    Who(Option<String>),
    /// Print the command list.
    Help,
    /// Disconnect and exit.
    Quit,
}

/// Parses one input line (without its line ending); `Err` carries a usage message.
pub(crate) fn parse_line(line: &str) -> Result<Command, String> {
    if line.trim().is_empty() {
        return Ok(Command::Nothing);
    }
    if let Some(escaped) = line.strip_prefix("//") {
        return Ok(Command::Say(format!("/{escaped}")));
    }
    let Some(command) = line.strip_prefix('/') else {
        return Ok(Command::Say(line.to_string()));
    };
    let (word, rest) = match command.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (command, ""),
    };
    let optional = |rest: &str| (!rest.is_empty()).then(|| rest.to_string());
    match word {
        "to" => {
            let usage = || "usage: /to NAME[,NAME...] TEXT".to_string();
            let (names, text) = rest.split_once(char::is_whitespace).ok_or_else(usage)?;
            let mut targets: Vec<String> = Vec::new();
            for name in names.split(',').filter(|n| !n.is_empty()) {
                if !targets.iter().any(|t| t == name) {
                    targets.push(name.to_string());
                }
            }
            let text = text.trim_start();
            if targets.is_empty() || text.is_empty() {
                return Err(usage());
            }
            Ok(Command::To {
                targets,
                text: text.to_string(),
            })
        }
        "join" => optional(rest)
            .map(Command::Join)
            .ok_or_else(|| "usage: /join ROOM".to_string()),
        "leave" => Ok(Command::Leave(optional(rest))),
        "who" => Ok(Command::Who(optional(rest))),
        "help" => Ok(Command::Help),
        "quit" | "exit" => Ok(Command::Quit),
        other => Err(format!("unknown command /{other} (try /help)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_are_said() {
        assert_eq!(
            parse_line("hello there"),
            Ok(Command::Say("hello there".into()))
        );
        assert_eq!(
            parse_line("  spaced  "),
            Ok(Command::Say("  spaced  ".into()))
        );
        assert_eq!(parse_line(""), Ok(Command::Nothing));
        assert_eq!(parse_line("   "), Ok(Command::Nothing));
        assert_eq!(
            parse_line("//etc/hosts"),
            Ok(Command::Say("/etc/hosts".into()))
        );
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            parse_line("/to ben psst, over here"),
            Ok(Command::To {
                targets: vec!["ben".into()],
                text: "psst, over here".into()
            })
        );
        assert_eq!(
            parse_line("/to ben,cat,ben hi"),
            Ok(Command::To {
                targets: vec!["ben".into(), "cat".into()],
                text: "hi".into()
            })
        );
        assert_eq!(parse_line("/join games"), Ok(Command::Join("games".into())));
        assert_eq!(
            parse_line("/join  games "),
            Ok(Command::Join("games".into()))
        );
        assert_eq!(parse_line("/leave"), Ok(Command::Leave(None)));
        assert_eq!(
            parse_line("/leave games"),
            Ok(Command::Leave(Some("games".into())))
        );
        assert_eq!(parse_line("/who"), Ok(Command::Who(None)));
        assert_eq!(
            parse_line("/who games"),
            Ok(Command::Who(Some("games".into())))
        );
        assert_eq!(parse_line("/help"), Ok(Command::Help));
        assert_eq!(parse_line("/quit"), Ok(Command::Quit));
    }

    #[test]
    fn bad_commands_get_usage() {
        assert!(parse_line("/to").unwrap_err().starts_with("usage: /to"));
        assert!(parse_line("/to ben").unwrap_err().starts_with("usage: /to"));
        assert!(parse_line("/to , hi")
            .unwrap_err()
            .starts_with("usage: /to"));
        assert_eq!(parse_line("/join"), Err("usage: /join ROOM".into()));
        assert_eq!(
            parse_line("/dance now"),
            Err("unknown command /dance (try /help)".into())
        );
    }
}
