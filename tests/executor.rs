//! The executor never parks while tasks are runnable. glommio 0.9.0 did when a
//! preemption signal was already pending as it went to run its task queues (the
//! preempt timer fired while the thread was descheduled, say): the tasks then
//! waited for unrelated I/O, and connections stalled for seconds under load. The
//! workspace uses a patched copy (vendor/glommio/PATCHED.md); these tests fail
//! against the unpatched release.
//!
//! A 1 ns preemption timer makes the pending signal certain instead of rare. Each
//! executor runs on its own thread and reports back over a channel, so a hang is a
//! timed-out receive (a failure), not a hung test binary.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use corecast::notify::LocalNotify;
use glommio::{LocalExecutorBuilder, Placement};

/// What the server gives each shard's executor (memlock is small on these machines).
const IO_MEMORY: usize = 512 << 10;
const LIMIT: Duration = Duration::from_secs(20);

fn always_preempting() -> glommio::LocalExecutor {
    LocalExecutorBuilder::new(Placement::Unbound)
        .preempt_timer(Duration::from_nanos(1))
        .io_memory(IO_MEMORY)
        .make()
        .expect("executor")
}

/// Runs `work` on a fresh thread and fails the test if it does not finish in time.
fn finishes_in_time(name: &str, work: impl FnOnce() + Send + 'static) {
    let (done_tx, done_rx) = mpsc::channel();
    let handle = thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            work();
            let _ = done_tx.send(());
        })
        .unwrap();
    match done_rx.recv_timeout(LIMIT) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{name}: executor parked with runnable work ({LIMIT:?})")
        }
        // The work panicked (dropping the sender): report its panic, not a park.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

#[test]
fn a_runnable_task_is_run_even_when_preemption_is_already_pending() {
    finishes_in_time("run-empty", || {
        let ex = always_preempting();
        for _ in 0..1000 {
            ex.run(async {});
        }
    });
}

/// The server's pattern: one task wakes another through a `LocalNotify` (a reader
/// queuing a frame for its connection's writer), back and forth.
#[test]
fn tasks_that_wake_each_other_keep_running_under_constant_preemption() {
    finishes_in_time("ping-pong", || {
        let ex = always_preempting();
        ex.run(async {
            const ROUNDS: u32 = 5000;
            let ping = Rc::new(LocalNotify::default());
            let pong = Rc::new(LocalNotify::default());
            let count = Rc::new(Cell::new(0u32));
            let responder = glommio::spawn_local({
                let (ping, pong, count) = (ping.clone(), pong.clone(), count.clone());
                async move {
                    for _ in 0..ROUNDS {
                        ping.notified().await;
                        count.set(count.get() + 1);
                        pong.notify();
                    }
                }
            });
            for _ in 0..ROUNDS {
                ping.notify();
                pong.notified().await;
            }
            responder.await;
            assert_eq!(count.get(), ROUNDS);
        });
    });
}
