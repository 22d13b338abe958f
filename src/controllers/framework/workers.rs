//! Runs a controller's reconcile function over its work queue: a few workers, never two
//! on the same key at once, each reconcile in its own span, failures logged at warn and
//! retried with the queue's rate-limited back-off.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::Instrument;

use super::queue::WorkQueue;
use crate::api::status::ApiError;

/// What a reconcile asks for: `Some(d)` = look again after `d` even without a change.
pub type Reconciled = Result<Option<Duration>, ApiError>;

#[derive(Default)]
struct KeyState {
    /// Keys a worker is reconciling right now.
    active: HashSet<String>,
    /// Keys queued again while active: re-queued when the active reconcile ends.
    dirty: HashSet<String>,
}

tokio::task_local! {
    /// The work queue metrics of the controllers started in this task (by
    /// `controllers::start`, explicitly per task, so that each controller's `run` needs
    /// no extra parameter); without it, queues are not instrumented.
    pub static QUEUE_METRICS: crate::metrics::WorkQueueMetrics;
}

/// Reconciles keys from `queue` with `workers` concurrent workers, forever. Each call of
/// `reconcile` runs in the span `reconcile{controller = name, object = key}`; the queue
/// reports `workqueue_*{name}` when the task has [`QUEUE_METRICS`].
pub async fn run_workers<F, Fut>(
    name: &'static str,
    queue: Arc<WorkQueue>,
    workers: usize,
    reconcile: F,
) where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reconciled> + Send + 'static,
{
    if let Ok(handle) = QUEUE_METRICS.try_with(|m| m.queue(name)) {
        queue.attach_metrics(handle);
    }
    let reconcile = Arc::new(reconcile);
    let state = Arc::new(Mutex::new(KeyState::default()));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (reconcile, queue, state) = (reconcile.clone(), queue.clone(), state.clone());
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
                let span = tracing::info_span!("reconcile", controller = name, object = %key);
                let started = std::time::Instant::now();
                let result = reconcile(key.clone()).instrument(span).await;
                queue.observe_work(started.elapsed());
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                s.active.remove(&key);
                match result {
                    Ok(after) => {
                        queue.forget(&key);
                        if let Some(after) = after {
                            queue.add_after(key.clone(), after);
                        }
                    }
                    Err(e) => {
                        let delay = queue.add_rate_limited(&key);
                        tracing::warn!(controller = name, object = %key, error = %e, ?delay, "reconcile failed; retrying");
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
    use crate::controllers::testutil::wait_for;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
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
        wait_for("the queue to drain", Duration::from_secs(5), || {
            queue.is_empty() && running.load(Ordering::SeqCst) == 0
        })
        .await;
        task.abort();
        assert_eq!(overlap.load(Ordering::SeqCst), 0);
        assert!(done.load(Ordering::SeqCst) >= 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_reconcile_is_retried_with_growing_delays() {
        let queue = WorkQueue::new();
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let seen = attempts.clone();
        let start = tokio::time::Instant::now();
        let task = tokio::spawn(run_workers("test", queue.clone(), 1, move |_key| {
            let seen = seen.clone();
            async move {
                let mut seen = seen.lock().unwrap();
                seen.push(start.elapsed());
                if seen.len() < 4 {
                    Err(ApiError::internal("not yet"))
                } else {
                    Ok(None)
                }
            }
        }));
        queue.add("k");
        wait_for("four attempts", Duration::from_secs(5), || {
            attempts.lock().unwrap().len() >= 4
        })
        .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        task.abort();
        let attempts = attempts.lock().unwrap().clone();
        assert_eq!(attempts.len(), 4, "a success ends the retries");
        let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps[0] >= Duration::from_millis(100), "{gaps:?}");
        assert!(gaps[1] >= Duration::from_millis(200), "{gaps:?}");
        assert!(gaps[2] >= Duration::from_millis(400), "{gaps:?}");
    }
}
