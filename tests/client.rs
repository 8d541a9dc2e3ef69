//! The blocking client library (`corecast::client`) against a real server: what it
//! reports when the server ends the connection with an error.

mod common;

use std::time::Duration;

use common::*;
use corecast::client::ClientError;
use corecast::config::Config;
use corecast::proto::{server_message::Data, ErrorCode};

/// Over `--max-connections` the server sends SERVER_FULL and closes: the client's
/// login reports that error, not just "connection closed".
#[test]
fn a_login_refused_with_server_full_says_so() {
    let server = start_with(Config {
        max_connections: Some(1),
        ..config()
    });
    let mut first = server.login("first");
    let mut second = server.connect();
    match second.login("second", None) {
        Err(ClientError::ClosedAfterError { code, message }) => {
            assert_eq!(code, ErrorCode::ServerFull, "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected SERVER_FULL, got {other:?}"),
    }
    let shown = ClientError::ClosedAfterError {
        code: ErrorCode::ServerFull,
        message: "server is at --max-connections".into(),
    }
    .to_string();
    assert!(shown.contains("SERVER_FULL"), "{shown}");
    // The error message itself is still there to read, then the plain end.
    assert_error(&mut second, ErrorCode::ServerFull);
    assert!(matches!(second.recv(), Err(ClientError::Closed)));
    assert!(first.ping(1).is_ok(), "the first client is untouched");
    drop(first);
    // The slot comes back.
    let mut third = eventually(Duration::from_secs(5), || {
        let mut c = server.connect();
        c.login("third", None).ok().map(|()| c)
    });
    assert!(third.ping(2).is_ok());
}

/// A receiver that was handed the error gets the plain end of the connection (it
/// already has the reason); one that had not read it yet gets the reason with the end.
#[test]
fn a_split_receiver_reports_an_error_once() {
    let server = start_with(Config {
        max_connections: Some(1),
        ..config()
    });
    let _first = server.login("first");

    // Reads everything in order: the error, then the end.
    let (_sender, mut receiver) = server.connect().split().unwrap();
    match receiver.recv_timeout(Duration::from_secs(5)).unwrap().data {
        Some(Data::Error(e)) => assert_eq!(e.code(), ErrorCode::ServerFull),
        other => panic!("expected SERVER_FULL, got {other:?}"),
    }
    assert!(matches!(receiver.recv(), Err(ClientError::Closed)));

    // Waits for something else (a pong that never comes): the end carries the error.
    let mut c = server.connect();
    match c.ping(1) {
        Err(ClientError::ClosedAfterError { code, .. }) => assert_eq!(code, ErrorCode::ServerFull),
        other => panic!("expected SERVER_FULL, got {other:?}"),
    }
}
