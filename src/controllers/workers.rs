//! Runs a controller's reconcile function over its work queue: a few workers, never two
//! on the same key at once, failures retried with exponential back-off.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::runtime::WorkQueue;
use crate::api::status::ApiError;

/// First retry delay after a failed reconcile; doubles per consecutive failure.
const RETRY_BASE: Duration = Duration::from_millis(100);
/// Longest retry delay.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What a reconcile asks for: `Some(d)` = look again after `d` even without a change.
pub type Reconciled = Result<Option<Duration>, ApiError>;

#[derive(Default)]
struct KeyState {
    /// Keys a worker is reconciling right now.
    active: HashSet<String>,
    /// Keys queued again while active: re-queued when the active reconcile ends.
    dirty: HashSet<String>,
    failures: HashMap<String, u32>,
}

/// Aborts the tasks it holds when dropped (informers die with their controller).
pub struct AbortOnDrop(pub Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

fn retry_delay(failures: u32) -> Duration {
    RETRY_BASE
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(RETRY_MAX)
}

/// Reconciles keys from `queue` with `workers` concurrent workers, forever.
pub async fn run_workers<F, Fut>(name: &'static str, queue: Arc<WorkQueue>, workers: usize, f: F)
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reconciled> + Send + 'static,
{
    let f = Arc::new(f);
    let state = Arc::new(Mutex::new(KeyState::default()));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (f, queue, state) = (f.clone(), queue.clone(), state.clone());
        set.spawn(async move {
            loop {
                let key = queue.next().await;
                {
                    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                    if !s.active.insert(key.clone()) {
                        s.dirty.insert(key);
                        continue;
                    }
                }
                let result = f(key.clone()).await;
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                s.active.remove(&key);
                match result {
                    Ok(after) => {
                        s.failures.remove(&key);
                        if let Some(after) = after {
                            queue.add_after(key.clone(), after);
                        }
                    }
                    Err(e) => {
                        let n = s.failures.entry(key.clone()).or_default();
                        *n += 1;
                        let delay = retry_delay(*n);
                        tracing::debug!(controller = name, object = %key, error = %e, ?delay, "reconcile failed; retrying");
                        queue.add_after(key.clone(), delay);
                    }
                }
                if s.dirty.remove(&key) {
                    queue.add(key);
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn retry_delay_grows_and_is_capped() {
        assert_eq!(retry_delay(1), RETRY_BASE);
        assert_eq!(retry_delay(2), RETRY_BASE * 2);
        assert_eq!(retry_delay(40), RETRY_MAX);
    }

    #[tokio::test]
    async fn one_key_is_never_reconciled_concurrently() {
        let queue = WorkQueue::new();
        let running = Arc::new(AtomicUsize::new(0));
        let overlap = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let (r, o, d) = (running.clone(), overlap.clone(), done.clone());
        let task = tokio::spawn(run_workers("test", queue.clone(), 4, move |_key| {
            let (r, o, d) = (r.clone(), o.clone(), d.clone());
            async move {
                if r.fetch_add(1, Ordering::SeqCst) > 0 {
                    o.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                d.fetch_add(1, Ordering::SeqCst);
                Ok(None)
            }
        }));
        for _ in 0..20 {
            queue.add("k");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::timeout(Duration::from_secs(5), async {
            while !queue.is_empty() || running.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("workers deadlocked");
        task.abort();
        assert_eq!(overlap.load(Ordering::SeqCst), 0);
        assert!(done.load(Ordering::SeqCst) >= 2);
    }
}
