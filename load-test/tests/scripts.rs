//! The shell scripts in their dry-run modes (nothing installed, built or started):
//! compare.sh names exactly the TARGETS it runs and says truthfully how it schedules
//! them (corecast with history off too); history-cost.sh alternates its rounds and
//! refuses unbounded ones; jwt-cost.sh rotates its three modes over fresh servers and
//! refuses unbounded rounds and client counts past the file limit; compare.sh's
//! corecast-ws target and ws-cost.sh drive corecast over WebSocket at its --ws-listen
//! port, ws-cost.sh alternating tcp and ws over fresh servers; flamegraphs/record.sh writes under flamegraphs/out/ (ignored by git) unless
//! OUT_DIR says otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The repository root (this crate is load-test/).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("load-test has a parent")
        .to_path_buf()
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `bash SCRIPT ARGS` from the repository root with `env` added, within 30 s.
fn run(script: &str, args: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut command = Command::new("bash");
    command
        .arg(root().join(script))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "TARGETS",
        "PRIORITY",
        "SCENARIO",
        "NAME",
        "OUT_DIR",
        "MODE",
        "KEEP_DATA",
        "ROUNDS",
        "CLIENTS",
        "CONCURRENCY",
        "CORECAST_PORT",
        "CORECAST_WS_PORT",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    let child = command.spawn().expect("start bash");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => out.expect("run the script"),
        Err(_) => {
            // SAFETY: kill(2) on the child's pid, which it still holds (not reaped).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{script} {args:?} did not finish within 30 s");
        }
    };
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// compare.sh's dry run for `targets` (and `priority`), checked to have run and to
/// have left no results directory behind.
fn compare(targets: Option<&str>, priority: Option<&str>) -> String {
    let name = format!("dry-run-test-{}", std::process::id());
    let mut env = vec![("DRY_RUN", "1"), ("NAME", name.as_str())];
    if let Some(t) = targets {
        env.push(("TARGETS", t));
    }
    if let Some(p) = priority {
        env.push(("PRIORITY", p));
    }
    let ran = run("load-test/compare.sh", &[], &env);
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let first = ran.stdout.lines().next().unwrap_or_default();
    let dir = first
        .strip_prefix("dry run: would write ")
        .and_then(|rest| rest.split_once("/README.md"))
        .map(|(dir, _)| dir)
        .unwrap_or_else(|| panic!("{}", ran.stdout));
    assert!(dir.ends_with(&name), "{first}");
    assert!(!root().join(dir).exists(), "a dry run created {dir}");
    ran.stdout
}

fn line_starting<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{text}"))
}

#[test]
fn compare_names_exactly_its_targets() {
    let out = compare(Some("corecast redis"), Some("none"));
    let title = line_starting(&out, "plot title: ");
    assert!(title.contains(": corecast vs Redis ("), "{title}");
    let heading = line_starting(&out, "# ");
    assert!(
        heading.contains(": corecast vs Redis pub/sub ("),
        "{heading}"
    );
    assert!(
        out.contains("TARGETS=\"corecast redis\" PRIORITY=none SCENARIO="),
        "{out}"
    );
    let versions = line_starting(&out, "- corecast ");
    assert!(
        versions.contains("(--shards 1); Redis server v=")
            || versions.ends_with("(--shards 1); redis-server (not installed)"),
        "{versions}"
    );
    assert!(!out.to_lowercase().contains("nats"), "{out}");

    let out = compare(Some("corecast"), None);
    assert!(line_starting(&out, "plot title: ").contains(": corecast ("));
    assert!(line_starting(&out, "# ").contains(": corecast ("));
    assert!(line_starting(&out, "- corecast ").ends_with("(--shards 1)"));
    let lower = out.to_lowercase();
    assert!(!lower.contains("redis") && !lower.contains("nats"), "{out}");

    let out = compare(Some("corecast-2shards"), None);
    assert!(line_starting(&out, "- corecast ")
        .ends_with("(corecast-2shards: --shards 2, both shards on CPU 0)"));
    assert!(!out.contains("--shards 1"), "{out}");

    let out = compare(None, None);
    assert!(line_starting(&out, "plot title: ").contains(": corecast vs Redis vs NATS ("));
    assert!(line_starting(&out, "# ").contains(": corecast vs Redis pub/sub vs NATS core ("));
    let versions = line_starting(&out, "- corecast ");
    assert!(
        versions.contains("; Redis server") || versions.contains("; redis-server"),
        "{versions}"
    );
    assert!(versions.contains("; nats-server "), "{versions}");
}

#[test]
fn compare_says_how_it_schedules() {
    let priority_line = |out: &str| {
        line_starting(out, "- Server on CPU 0 ")
            .split_once("both with priority ")
            .map(|(_, p)| p.to_string())
            .expect("priority")
    };
    assert_eq!(
        priority_line(&compare(Some("corecast"), None)),
        "rt (chrt -f 20)"
    );
    assert_eq!(
        priority_line(&compare(Some("corecast"), Some("none"))),
        "none (no chrt or nice: normal scheduling)"
    );
    assert_eq!(
        priority_line(&compare(Some("corecast"), Some("nice:5"))),
        "nice:5 (nice -n 5)"
    );
}

#[test]
fn compare_runs_corecast_with_history_off_as_its_own_target() {
    let out = compare(Some("corecast corecast-nohistory"), None);
    assert!(line_starting(&out, "plot title: ").contains(": corecast vs corecast (history off) ("));
    assert!(line_starting(&out, "- corecast ")
        .ends_with("(--shards 1; corecast-nohistory: --shards 1 --history-messages 0)"));
}

#[test]
fn history_cost_alternates_its_rounds_and_refuses_unbounded_ones() {
    let ran = run(
        "load-test/history-cost.sh",
        &[],
        &[("DRY_RUN", "1"), ("ROUNDS", "4"), ("PRIORITY", "none")],
    );
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let rounds: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.starts_with("round "))
        .collect();
    assert_eq!(rounds.len(), 4, "{}", ran.stdout);
    for (i, line) in rounds.iter().enumerate() {
        let first = if i % 2 == 0 {
            "TARGETS=\"corecast corecast-nohistory\""
        } else {
            "TARGETS=\"corecast-nohistory corecast\""
        };
        assert!(line.contains(first), "{line}");
        assert!(
            line.contains(&format!("NAME=history-cost-r{}", i + 1)),
            "{line}"
        );
        assert!(line.contains("SCENARIO=\"fanout "), "{line}");
    }
    for (rounds, scenario, message) in [
        ("0", "fanout", "ROUNDS must be 1 to 10"),
        ("11", "fanout", "ROUNDS must be 1 to 10"),
        ("2", "connect --clients 10", "must be a broadcast scenario"),
    ] {
        let ran = run(
            "load-test/history-cost.sh",
            &[],
            &[("DRY_RUN", "1"), ("ROUNDS", rounds), ("SCENARIO", scenario)],
        );
        assert_eq!(ran.code, 1, "{rounds} {scenario}: {}", ran.stdout);
        assert!(ran.stderr.contains(message), "{}", ran.stderr);
        assert!(ran.stdout.is_empty(), "{}", ran.stdout);
    }
}

#[test]
fn jwt_cost_rotates_its_modes_over_fresh_servers_and_refuses_unbounded_runs() {
    let ran = run(
        "load-test/jwt-cost.sh",
        &[],
        &[("DRY_RUN", "1"), ("ROUNDS", "4"), ("CLIENTS", "5000")],
    );
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let first = ran.stdout.lines().next().unwrap_or_default();
    assert!(first.contains("-jwt-cost/README.md"), "{first}");
    let rounds: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.starts_with("round "))
        .collect();
    assert_eq!(
        rounds,
        [
            "round 1: none hs256 eddsa",
            "round 2: hs256 eddsa none",
            "round 3: eddsa none hs256",
            "round 4: none hs256 eddsa",
        ],
        "{}",
        ran.stdout
    );
    let servers: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.contains(": server: "))
        .collect();
    assert_eq!(servers.len(), 12, "{}", ran.stdout);
    // A port of its own per run: no run meets the last one's TIME_WAIT sockets.
    for (i, line) in servers.iter().enumerate() {
        assert!(
            line.contains(&format!("--listen 127.0.0.1:{} ", 17878 + i + 1)),
            "{line}"
        );
    }
    for (mode, server, harness) in [
        ("none", "--shards 1", "--timeout 60s --addr 127.0.0.1:17879"),
        (
            "hs256",
            "--jwt-secret-file $KEYS/secret",
            "--jwt-secret-file $KEYS/secret",
        ),
        (
            "eddsa",
            "--jwt-public-key $KEYS/ed25519.pub.pem",
            "--jwt-private-key $KEYS/ed25519.pem",
        ),
    ] {
        let s = line_starting(&ran.stdout, &format!("  {mode}: server: "));
        assert!(s.ends_with(server), "{s}");
        let h = line_starting(&ran.stdout, &format!("  {mode}: harness: "));
        assert!(
            h.contains("corecast-load connect --clients 5000 --concurrency 64"),
            "{h}"
        );
        assert!(h.ends_with(harness), "{h}");
    }
    for (env, message) in [
        (("ROUNDS", "0"), "ROUNDS must be 1 to 10"),
        (("ROUNDS", "11"), "ROUNDS must be 1 to 10"),
        (("CLIENTS", "20000"), "CLIENTS must be 100 to 9500"),
        (("CLIENTS", "lots"), "CLIENTS must be 100 to 9500"),
        (("CONCURRENCY", "0"), "CONCURRENCY must be 1 to CLIENTS"),
        (("PRIORITY", "max"), "PRIORITY must be rt, nice:N or none"),
    ] {
        let ran = run("load-test/jwt-cost.sh", &[], &[("DRY_RUN", "1"), env]);
        assert_eq!(ran.code, 1, "{env:?}: {}", ran.stdout);
        assert!(ran.stderr.contains(message), "{env:?}: {}", ran.stderr);
        assert!(ran.stdout.is_empty(), "{env:?}: {}", ran.stdout);
    }
}

#[test]
fn compare_runs_corecast_over_websocket_as_its_own_target() {
    let out = compare(Some("corecast corecast-ws"), None);
    assert!(line_starting(&out, "plot title: ").contains(": corecast vs corecast (WebSocket) ("));
    assert!(line_starting(&out, "# ").contains(": corecast vs corecast over WebSocket ("));
    assert!(line_starting(&out, "- corecast ")
        .ends_with("(--shards 1; corecast-ws: --shards 1 --ws-listen, clients over WebSocket)"));
}

#[test]
fn ws_cost_alternates_tcp_and_ws_over_fresh_servers_and_refuses_unbounded_runs() {
    let ran = run(
        "load-test/ws-cost.sh",
        &[],
        &[("DRY_RUN", "1"), ("ROUNDS", "3"), ("PRIORITY", "none")],
    );
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    let first = ran.stdout.lines().next().unwrap_or_default();
    assert!(first.contains("-ws-cost/README.md"), "{first}");
    let rounds: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.starts_with("round "))
        .collect();
    assert_eq!(
        rounds,
        ["round 1: tcp ws", "round 2: ws tcp", "round 3: tcp ws"],
        "{}",
        ran.stdout
    );
    let servers: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.contains(": server: "))
        .collect();
    let harnesses: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.contains(": harness: "))
        .collect();
    assert_eq!((servers.len(), harnesses.len()), (6, 6), "{}", ran.stdout);
    // Every server listens on both; ports of its own per run; the harness at the
    // port of its transport, running compare.sh's default fanout.
    for (i, (server, harness)) in servers.iter().zip(&harnesses).enumerate() {
        let (tcp, ws) = (17878 + 2 * i + 1, 17878 + 2 * i + 2);
        assert!(
            server.ends_with(&format!(
                "corecast --listen 127.0.0.1:{tcp} --ws-listen 127.0.0.1:{ws} --shards 1"
            )),
            "{server}"
        );
        assert!(
            harness
                .contains("corecast-load fanout --rooms 10 --members 100 --senders 1 --rate 100"),
            "{harness}"
        );
        let expect = if harness.starts_with("  ws:") {
            format!("--transport ws --addr 127.0.0.1:{ws}")
        } else {
            format!("--transport tcp --addr 127.0.0.1:{tcp}")
        };
        assert!(harness.ends_with(&expect), "{harness}");
    }
    for (env, message) in [
        (("ROUNDS", "0"), "ROUNDS must be 1 to 10"),
        (("ROUNDS", "11"), "ROUNDS must be 1 to 10"),
        (
            ("SCENARIO", "connect --clients 10"),
            "must be a broadcast scenario",
        ),
        (("PRIORITY", "max"), "PRIORITY must be rt, nice:N or none"),
        (
            ("CORECAST_PORT", "80"),
            "CORECAST_PORT must be 1024 or more",
        ),
    ] {
        let ran = run("load-test/ws-cost.sh", &[], &[("DRY_RUN", "1"), env]);
        assert_eq!(ran.code, 1, "{env:?}: {}", ran.stdout);
        assert!(ran.stderr.contains(message), "{env:?}: {}", ran.stderr);
        assert!(ran.stdout.is_empty(), "{env:?}: {}", ran.stdout);
    }
}

#[test]
fn compare_refuses_unknown_or_no_targets_before_running_anything() {
    for (targets, message) in [
        ("corecast mqtt", "unknown target mqtt in TARGETS"),
        ("  ", "TARGETS is empty"),
    ] {
        let ran = run(
            "load-test/compare.sh",
            &[],
            &[("DRY_RUN", "1"), ("TARGETS", targets)],
        );
        assert_eq!(ran.code, 1, "{targets:?}: {}", ran.stdout);
        assert!(ran.stderr.contains(message), "{targets:?}: {}", ran.stderr);
        assert!(ran.stdout.is_empty(), "{targets:?}: {}", ran.stdout);
    }
}

#[test]
fn record_writes_under_flamegraphs_out_unless_told_otherwise() {
    let ran = run(
        "flamegraphs/record.sh",
        &["fanout", "--rooms", "2"],
        &[("DRY_RUN", "1"), ("PRIORITY", "none")],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        ran.stdout,
        "dry run: would write\n  flamegraphs/out/fanout.svg\n  flamegraphs/out/fanout.folded\n  \
         flamegraphs/out/fanout.txt\n"
    );

    let ran = run(
        "flamegraphs/record.sh",
        &["chat"],
        &[
            ("DRY_RUN", "1"),
            ("PRIORITY", "none"),
            ("OUT_DIR", "flamegraphs"),
            ("NAME", "chat-again"),
            ("KEEP_DATA", "1"),
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        ran.stdout,
        "dry run: would write\n  flamegraphs/chat-again.svg\n  flamegraphs/chat-again.folded\n  \
         flamegraphs/chat-again.txt\n  flamegraphs/chat-again.perf.data\n"
    );

    let gitignore = std::fs::read_to_string(root().join(".gitignore")).expect(".gitignore");
    assert!(
        gitignore.lines().any(|l| l.trim() == "flamegraphs/out/"),
        "{gitignore}"
    );
}
