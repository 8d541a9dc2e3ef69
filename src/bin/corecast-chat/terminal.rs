//! Input and output: stdin read as plain lines (piped input), or the rustyline line
//! editor when stdin and stdout are a terminal; and [`Output`], where lines are
//! printed (stdout, or through the editor, above the line being typed).

use std::io::{self, BufRead, Write};
use std::sync::mpsc;
use std::thread;

use anyhow::{anyhow, Context};

use crate::Event;

/// Where lines are printed: stdout, or the line editor, above the line being typed.
pub(crate) enum Output {
    Plain(io::Stdout),
    Editor {
        lines: mpsc::Sender<String>,
        printer: thread::JoinHandle<()>,
    },
}

impl Output {
    pub(crate) fn print(&mut self, line: &str) -> anyhow::Result<()> {
        match self {
            Output::Plain(out) => {
                let mut out = out.lock();
                writeln!(out, "{line}")
                    .and_then(|()| out.flush())
                    .context("writing to stdout")
            }
            Output::Editor { lines, .. } => lines
                .send(format!("{line}\n"))
                .map_err(|_| anyhow!("the terminal printer stopped")),
        }
    }

    /// Waits until every line is printed.
    pub(crate) fn finish(self) {
        if let Output::Editor { lines, printer } = self {
            drop(lines);
            let _ = printer.join();
        }
    }
}

/// Reads one plain line from stdin each time it is asked.
pub(crate) fn spawn_plain_input(
    events: mpsc::Sender<Event>,
    asked: mpsc::Receiver<String>,
) -> anyhow::Result<()> {
    thread::Builder::new()
        .name("input-reader".into())
        .spawn(move || {
            let mut input = io::stdin().lock();
            let mut buf = Vec::new();
            while asked.recv().is_ok() {
                buf.clear();
                let event = match input.read_until(b'\n', &mut buf) {
                    Ok(0) => Event::InputClosed(None),
                    Err(e) => Event::InputClosed(Some(e.to_string())),
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        Event::Line(line.trim_end_matches(['\n', '\r']).to_string())
                    }
                };
                let last = matches!(event, Event::InputClosed(_));
                if events.send(event).is_err() || last {
                    return;
                }
            }
        })
        .context("starting the input reader")?;
    Ok(())
}

/// Starts the line editor (one line each time it is asked, with the prompt it is
/// given; in-memory history) and the thread that prints through it.
pub(crate) fn spawn_editor(
    events: mpsc::Sender<Event>,
    asked: mpsc::Receiver<String>,
) -> anyhow::Result<Output> {
    use rustyline::error::ReadlineError;
    use rustyline::ExternalPrinter;

    let config = rustyline::Config::builder()
        .auto_add_history(true)
        .history_ignore_dups(true)
        .context("configuring the line editor")?
        // A pasted block is sent line by line, as if typed.
        .bracketed_paste(false)
        .build();
    let mut editor =
        rustyline::DefaultEditor::with_config(config).context("starting the line editor")?;
    let mut printer = editor
        .create_external_printer()
        .context("starting the line editor's printer")?;
    thread::Builder::new()
        .name("input-editor".into())
        .spawn(move || {
            while let Ok(prompt) = asked.recv() {
                let event = loop {
                    match editor.readline(&prompt) {
                        Ok(line) => break Event::Line(line),
                        Err(ReadlineError::Eof | ReadlineError::Interrupted) => {
                            break Event::InputClosed(None)
                        }
                        // A window resize: read on.
                        Err(ReadlineError::Signal(_)) => continue,
                        Err(e) => break Event::InputClosed(Some(e.to_string())),
                    }
                };
                let last = matches!(event, Event::InputClosed(_));
                if events.send(event).is_err() || last {
                    return;
                }
            }
        })
        .context("starting the input reader")?;
    let (lines, printed) = mpsc::channel::<String>();
    let printer = thread::Builder::new()
        .name("printer".into())
        .spawn(move || {
            for line in printed {
                if printer.print(line.clone()).is_err() {
                    // The editor is gone: the terminal is ours again.
                    let mut out = io::stdout().lock();
                    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
                }
            }
        })
        .context("starting the printer")?;
    Ok(Output::Editor { lines, printer })
}
