//! Bounded waiting: poll a condition until it holds under a deadline, or watch that a
//! condition keeps holding for a whole window. No test proves anything with a bare sleep.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// How often a condition is polled unless the caller says otherwise.
pub const POLL_EVERY: Duration = Duration::from_millis(50);

/// What a polled condition observed: whether it holds, and if not, what was seen
/// instead (printed when the wait fails). `bool`, `Option` and `Result` qualify.
pub trait Observation {
    type Value;
    fn holds(self) -> Result<Self::Value, String>;
}

impl Observation for bool {
    type Value = ();
    fn holds(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("false".to_string())
        }
    }
}

impl<T> Observation for Option<T> {
    type Value = T;
    fn holds(self) -> Result<T, String> {
        self.ok_or_else(|| "nothing yet".to_string())
    }
}

impl<T, E: Debug> Observation for Result<T, E> {
    type Value = T;
    fn holds(self) -> Result<T, String> {
        self.map_err(|seen| format!("{seen:?}"))
    }
}

/// Polls `condition` until it holds and returns what it observed then; panics after
/// `deadline`, naming `what` and the last thing the condition saw.
pub fn wait_until<O: Observation>(
    deadline: Duration,
    what: &str,
    condition: impl FnMut() -> O,
) -> O::Value {
    wait_until_every(deadline, POLL_EVERY, what, condition)
}

/// [`wait_until`], polling every `every` (for conditions that are costly to check).
pub fn wait_until_every<O: Observation>(
    deadline: Duration,
    every: Duration,
    what: &str,
    mut condition: impl FnMut() -> O,
) -> O::Value {
    let start = Instant::now();
    loop {
        match condition().holds() {
            Ok(value) => return value,
            Err(seen) => assert!(
                start.elapsed() < deadline,
                "timed out after {deadline:?} waiting for {what}; last observed: {seen}"
            ),
        }
        std::thread::sleep(every);
    }
}

/// Watches `condition` for the whole `window`, polling it throughout, and panics the
/// first time it does not hold, naming `what` and what was seen. The proof that
/// something does NOT happen: it stays true for as long as the test looks.
pub fn assert_stays_for<O: Observation>(
    window: Duration,
    what: &str,
    condition: impl FnMut() -> O,
) {
    assert_stays_for_every(window, POLL_EVERY, what, condition)
}

/// [`assert_stays_for`], polling every `every` (for conditions that are costly to check).
pub fn assert_stays_for_every<O: Observation>(
    window: Duration,
    every: Duration,
    what: &str,
    mut condition: impl FnMut() -> O,
) {
    let start = Instant::now();
    loop {
        if let Err(seen) = condition().holds() {
            panic!(
                "expected {what} for {window:?}, but after {:?} observed: {seen}",
                start.elapsed()
            );
        }
        if start.elapsed() >= window {
            return;
        }
        std::thread::sleep(every.min(window));
    }
}

/// Async [`wait_until`] for tests on a tokio runtime: polls `condition` (a future
/// per call) until it holds; panics after `deadline` with `what` and the last observation.
pub async fn wait_until_async<O: Observation, F: std::future::Future<Output = O>>(
    deadline: Duration,
    what: &str,
    mut condition: impl FnMut() -> F,
) -> O::Value {
    let start = Instant::now();
    loop {
        match condition().await.holds() {
            Ok(value) => return value,
            Err(seen) => assert!(
                start.elapsed() < deadline,
                "timed out after {deadline:?} waiting for {what}; last observed: {seen}"
            ),
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
