//! `LocalNotify`: a wake-up flag for exactly one waiting task on the same shard. No
//! atomics and no allocation: the shard is single-threaded.

use std::cell::Cell;
use std::future::Future;
use std::task::{Poll, Waker};

/// One task waits, any code on the same thread notifies. A notification that arrives
/// while nobody waits is kept until the next wait.
#[derive(Default)]
pub struct LocalNotify {
    notified: Cell<bool>,
    waiter: Cell<Option<Waker>>,
}

impl std::fmt::Debug for LocalNotify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNotify")
            .field("notified", &self.notified.get())
            .finish()
    }
}

impl LocalNotify {
    /// Wakes the waiter, or lets the next wait return at once.
    pub fn notify(&self) {
        self.notified.set(true);
        if let Some(waker) = self.waiter.take() {
            waker.wake();
        }
    }

    /// Resolves at the next notification (or at once if one is pending).
    pub fn notified(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.notified.replace(false) {
                Poll::Ready(())
            } else {
                self.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn a_notification_before_the_wait_is_kept() {
        let n = LocalNotify::default();
        n.notify();
        future::block_on(n.notified());
        assert!(
            future::block_on(future::poll_once(n.notified())).is_none(),
            "consumed"
        );
    }

    #[test]
    fn a_notification_wakes_a_pending_waiter() {
        let n = LocalNotify::default();
        let mut wait = Box::pin(n.notified());
        assert!(future::block_on(future::poll_once(&mut wait)).is_none());
        n.notify();
        assert!(future::block_on(future::poll_once(&mut wait)).is_some());
    }
}
