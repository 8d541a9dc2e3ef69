//! Shared helpers: run the harness binary with a deadline and read its JSON report;
//! start a corecast server in this process, or redis-server / nats-server on a free
//! port (waiting for their "ready" line); check a report's delivery checks.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use corecast::config::Config;
use corecast::server::Server;

/// What a harness run left behind.
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output (the table).
    pub stdout: String,
    /// The `--json` report.
    pub report: serde_json::Value,
}

fn scratch_file(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "corecast-load-test-{}-{n}-{name}",
        std::process::id()
    ))
}

/// Runs `corecast-load <args> --json FILE --quiet`, killing it after `limit`.
pub fn harness(args: &[&str], limit: Duration) -> Run {
    let json = scratch_file("report.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_corecast-load"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .arg("--quiet")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start corecast-load");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let mut err = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = stderr.read_to_string(&mut err);
        let _ = tx.send((out, err));
    });
    let (out, err) = match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => {
            let _ = child.kill();
            panic!("corecast-load {args:?} did not finish within {limit:?}");
        }
    };
    let status = child.wait().expect("wait corecast-load");
    let code = status.code().unwrap_or(-1);
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!("no report from {args:?} (exit {code}): {e}\nstdout:\n{out}\nstderr:\n{err}")
    });
    let _ = std::fs::remove_file(&json);
    let report = serde_json::from_str(&text).expect("report is JSON");
    Run {
        code,
        stdout: out,
        report,
    }
}

/// What a run of the harness binary printed.
pub struct Output {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error (a pipe: not a terminal).
    pub stderr: String,
}

/// Runs `corecast-load <args>` with stdout and stderr piped, killing it after `limit`.
pub fn run_binary(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_corecast-load"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start corecast-load");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // stderr on its own thread: neither pipe may fill while the other is read.
        let err = std::thread::spawn(move || {
            let mut err = String::new();
            let _ = stderr.read_to_string(&mut err);
            err
        });
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send((out, err.join().unwrap_or_default()));
    });
    let Ok((stdout, stderr)) = rx.recv_timeout(limit) else {
        let _ = child.kill();
        panic!("corecast-load {args:?} did not finish within {limit:?}");
    };
    let status = child.wait().expect("wait corecast-load");
    Output {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// A free loopback port (bound then released; the server binds it right after).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// A peer server process, killed on drop.
pub struct Peer {
    child: Child,
    /// Its address.
    pub addr: SocketAddr,
}

impl Peer {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_peer(
    program: &str,
    args: &[String],
    ready: &'static str,
    from_stderr: bool,
    port: u16,
) -> Peer {
    let mut child = match Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot start {program}: {e}. These tests need the Debian packages redis-server and \
             nats-server: apt-get install -y redis-server nats-server"
        ),
    };
    let stream: Box<dyn Read + Send> = if from_stderr {
        Box::new(child.stderr.take().expect("stderr"))
    } else {
        Box::new(child.stdout.take().expect("stdout"))
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if line.contains(ready) {
                let _ = tx.send(Ok(()));
                // Keep draining so the server never blocks on a full pipe.
                continue;
            }
            seen.push(line);
        }
        let _ = tx.send(Err(seen.join("\n")));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(())) => {}
        Ok(Err(log)) => panic!("{program} exited before it was ready:\n{log}"),
        Err(_) => panic!("{program} not ready within 20 s"),
    }
    Peer {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

/// A corecast server in this process on a free loopback port: `shards` shards,
/// `history_messages` retained per room, 1 s shutdown grace.
pub fn corecast(shards: usize, history_messages: usize) -> Server {
    Server::start(Config {
        listen: "127.0.0.1:0".into(),
        shards: Some(shards),
        shutdown_grace: 1,
        history_messages,
        ..Config::default()
    })
    .expect("corecast starts")
}

/// [`corecast`] that also listens for WebSocket clients (`--ws-listen 127.0.0.1:0`):
/// the server, its TCP address and its WebSocket address (the port it was given).
pub fn corecast_ws(shards: usize) -> (Server, String, String) {
    let server = Server::start(Config {
        listen: "127.0.0.1:0".into(),
        ws_listen: Some("127.0.0.1:0".into()),
        shards: Some(shards),
        shutdown_grace: 1,
        ..Config::default()
    })
    .expect("corecast starts");
    let tcp = server.local_addr().to_string();
    let ws = server
        .ws_addr()
        .expect("--ws-listen gives a WebSocket address")
        .to_string();
    (server, tcp, ws)
}

/// redis-server on a free port, no persistence.
pub fn redis() -> Peer {
    let port = free_port();
    let args = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ];
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    start_peer(
        "redis-server",
        &args,
        "Ready to accept connections",
        false,
        port,
    )
}

/// nats-server on a free port.
pub fn nats() -> Peer {
    let port = free_port();
    let args: Vec<String> = ["-a", "127.0.0.1", "-p", &port.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    start_peer("nats-server", &args, "Server is ready", true, port)
}

/// `report[a][b]` as u64.
pub fn num(report: &serde_json::Value, path: &[&str]) -> f64 {
    let mut v = report;
    for p in path {
        v = &v[*p];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in {report:#}"))
}

/// The delivery checks a clean run counts none of: loss, duplicates, disorder.
pub const DELIVERY_CHECKS: [&str; 5] = [
    "lost",
    "duplicates",
    "sender_reorders",
    "seq_reorders",
    "seq_gaps",
];

/// Asserts that `report[at..]["checks"]` counts none of [`DELIVERY_CHECKS`] and none of
/// `also`; `context` goes into the failure message.
pub fn assert_checks_clean(report: &serde_json::Value, at: &[&str], also: &[&str], context: &str) {
    for field in DELIVERY_CHECKS.iter().chain(also) {
        let path = [at, &["checks", field]].concat();
        assert_eq!(num(report, &path), 0.0, "{}: {context}", path.join("."));
    }
}

/// `--addr ADDR` and a short measured window (1 s after 200 ms of warm-up, 3 s to
/// drain): the arguments every broadcast scenario in these tests shares.
pub fn short_run(addr: &str) -> Vec<String> {
    [
        "--addr",
        addr,
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--drain",
        "3s",
        "--setup-timeout",
        "20s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `scenario` followed by `common`.
pub fn args<'a>(scenario: &[&'a str], common: &'a [String]) -> Vec<&'a str> {
    scenario
        .iter()
        .copied()
        .chain(common.iter().map(String::as_str))
        .collect()
}

/// How long one harness run in these tests may take.
pub const LIMIT: Duration = Duration::from_secs(60);

/// A short churn run with the arguments `common` (address, target, window): it passes,
/// churners join and leave, and nothing unexpected arrives.
pub fn churn_is_clean(common: &[String]) {
    let churn = [
        "churn",
        "--members",
        "10",
        "--senders",
        "2",
        "--churners",
        "5",
        "--churn-rate",
        "100",
        "--rate",
        "300",
    ];
    let run = harness(&args(&churn, common), LIMIT);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(num(&run.report, &["churn_ops"]) > 50.0, "{}", run.stdout);
    assert_eq!(
        num(&run.report, &["checks", "unexpected"]),
        0.0,
        "{}",
        run.stdout
    );
}
