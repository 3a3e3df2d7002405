//! Waiting on conditions with deadlines: every wait in the edge and fleet tests polls a
//! condition (or awaits an event) and fails with a description when its deadline passes.
//! Nothing sleeps in place of synchronisation.

use std::{future::Future, time::Duration};

use tokio::time::{Instant, sleep};

/// How often [`wait_until`] re-checks its condition.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it yields a value; panics with `what` once `limit` has passed.
pub async fn wait_until<T, F, Fut>(what: &str, limit: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match try_wait_until(limit, check).await {
        Some(v) => v,
        None => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Polls `check` until it yields a value, or returns `None` once `limit` has passed.
pub async fn try_wait_until<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        sleep(POLL).await;
    }
}

/// Milliseconds with one decimal, for the figures the tests print.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
