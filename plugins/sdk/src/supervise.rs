//! Supervision of long-lived tasks, for the hub and for plugins: a panic
//! is caught, logged with the task's name, counted
//! (`hepflow_task_restarts_total{task}`), and the task is started again
//! with a capped backoff, from where its queue (or spool) stands.

use crate::metrics::{Counter, Registry};
use futures::FutureExt;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// `hepflow_task_restarts_total{task}`: restarts of a supervised task or
/// thread after a panic.
pub fn restarts_counter(registry: &Registry, task: &str) -> Counter {
    registry.counter(
        "hepflow_task_restarts_total",
        "Long-lived tasks and threads restarted after a panic",
        &[("task", task)],
    )
}

/// The message a panic carried (`panic!("...")` gives a `&str` or a
/// `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic".into())
}

/// First wait before a restart; doubled per panic in a row, capped.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Run the task `make` builds until it ends, building and running it
/// again each time it panics: each panic is logged with `task` and
/// counted in `restarts`, and the next run waits a backoff (10 ms
/// doubling to 5 s). Returns what the run that ended returned.
pub async fn supervise<T, F, Fut>(task: &str, restarts: &Counter, mut make: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        match AssertUnwindSafe(make()).catch_unwind().await {
            Ok(out) => return out,
            Err(p) => {
                restarts.inc();
                tracing::error!(task, panic = %panic_message(p.as_ref()), "task panicked; restarting it");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_panicking_task_is_restarted_and_counted_until_it_ends() {
        let r = Registry::new();
        let restarts = restarts_counter(&r, "test");
        let runs = AtomicUsize::new(0);
        let out = supervise("test", &restarts, || async {
            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= 2 {
                panic!("injected fault {n}");
            }
            n
        })
        .await;
        assert_eq!(out, 3);
        assert_eq!(
            r.value("hepflow_task_restarts_total", &[("task", "test")]),
            Some(2.0)
        );
    }
}
