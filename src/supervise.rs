//! Supervision of long-lived tasks and threads: a panic is caught, logged
//! with the task's name, counted (`hepflow_task_restarts_total{task}`),
//! and the task goes on. Used by the sink engine (a plugin that panics is
//! built again), the UDP receive threads (restarted on their socket), the
//! stream and Kafka listeners (async tasks: [`supervise`], from the SDK,
//! which plugins use for their own tasks too).

use hepflow_sdk::metrics::Counter;
pub use hepflow_sdk::supervise::{panic_message, restarts_counter, supervise};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Run `body` on this thread until it returns, restarting it (with a
/// capped backoff) each time it panics, until `stop` is set: a panic is
/// logged with `task`'s name and counted, and the thread keeps serving
/// (a receive loop keeps its socket).
pub fn supervised(task: &str, restarts: &Counter, stop: &AtomicBool, mut body: impl FnMut()) {
    let mut backoff = Duration::from_millis(10);
    loop {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut body)) {
            Ok(()) => return,
            Err(p) => {
                restarts.inc();
                tracing::error!(task, panic = %panic_message(p.as_ref()), "task panicked; restarting it");
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hepflow_sdk::metrics::Registry;

    #[test]
    fn a_panicking_body_is_restarted_and_counted_until_it_returns() {
        let r = Registry::new();
        let restarts = restarts_counter(&r, "udp:test:0");
        let stop = AtomicBool::new(false);
        let mut runs = 0;
        supervised("udp:test:0", &restarts, &stop, || {
            runs += 1;
            if runs <= 2 {
                panic!("injected fault {runs}");
            }
        });
        assert_eq!(runs, 3);
        assert_eq!(
            r.value("hepflow_task_restarts_total", &[("task", "udp:test:0")]),
            Some(2.0)
        );
    }
}
