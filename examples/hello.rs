//! Try a running server by hand: `cargo run --example hello -- [ADDR] [NAME] [ROOM]`.
//! Logs in, joins the room, says hello, then prints whatever arrives for 30 s.

use std::time::{Duration, Instant};

use corecast::client::{Client, ClientError};

fn main() -> Result<(), ClientError> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7878".into());
    let name = args
        .next()
        .unwrap_or_else(|| format!("guest-{}", std::process::id()));
    let room = args.next().unwrap_or_else(|| "lobby".into());
    let mut client = Client::connect(&addr)?;
    client.login(&name, std::env::var("CORECAST_AUTH_TOKEN").ok().as_deref())?;
    let joined = client.join(&room, None)?;
    println!(
        "{name} joined {room}; members: {:?}",
        joined.current_players
    );
    println!("round trip: {:?}", client.ping(1)?);
    client.send_message(&room, &[], format!("hello from {name}"))?;
    client.set_timeout(Duration::from_secs(1));
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        match client.recv() {
            Ok(msg) => println!("{:?}", msg.data),
            Err(ClientError::Timeout) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
