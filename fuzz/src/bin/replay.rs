//! Triage for `session` inputs: `cargo run --bin replay -- FILE...` prints each
//! input's settings and ops, then runs it (a failing check panics with the details).
//! `cargo run --bin replay -- token FILE...` does the same for `token` inputs.

use corecast_fuzz::script;
use corecast_fuzz::session_model::Sim;
use corecast_fuzz::token;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "token") {
        for path in args.skip(1) {
            let data = std::fs::read(&path)?;
            println!("{path}\n{}", token::explain(&data));
            token::check(&data);
            println!("ok");
        }
        return Ok(());
    }
    for path in args {
        let data = std::fs::read(&path)?;
        let (settings, ops) = script::parse(&data);
        println!("{path}\n{settings:?}");
        for (i, op) in ops.iter().enumerate() {
            println!("{i:4}: {op:?}");
        }
        Sim::new(settings).run(&ops);
        println!("ok");
    }
    Ok(())
}
