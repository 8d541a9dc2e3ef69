//! Triage for `session` inputs: `cargo run --bin replay -- FILE...` prints each
//! input's settings and ops, then runs it (a failing check panics with the details).

use corecast_fuzz::script;
use corecast_fuzz::session_model::Sim;

fn main() -> std::io::Result<()> {
    for path in std::env::args().skip(1) {
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
