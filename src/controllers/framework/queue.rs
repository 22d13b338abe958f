//! The work queue: de-duplicated keys waiting to be reconciled, delayed requeues, and
//! the rate limiting applied to retries (per key exponential back-off under an overall
//! token bucket, upstream's default controller rate limiter).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::metrics::QueueHandle;

/// First retry delay after a failed reconcile; doubles per consecutive failure.
pub const RETRY_BASE: Duration = Duration::from_millis(100);
/// Longest retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// Retries allowed per second across all keys of one queue, once the burst is spent.
const RETRY_RATE: f64 = 10.0;
/// Retries allowed at once before `RETRY_RATE` applies.
const RETRY_BURST: f64 = 100.0;

/// Keys waiting to be reconciled; a key queued twice is reconciled once.
pub struct WorkQueue {
    /// The keys in order, and when each was queued.
    inner: Mutex<(VecDeque<String>, HashMap<String, std::time::Instant>)>,
    notify: Notify,
    limiter: RateLimiter,
    /// Upstream's `workqueue_*` series of this queue, once given by [`WorkQueue::attach_metrics`].
    metrics: OnceLock<QueueHandle>,
}

impl WorkQueue {
    pub fn new() -> Arc<WorkQueue> {
        Arc::new(WorkQueue {
            inner: Mutex::default(),
            notify: Notify::new(),
            limiter: RateLimiter::new(RETRY_RATE, RETRY_BURST),
            metrics: OnceLock::new(),
        })
    }

    /// Reports this queue's depth, adds and latencies through `handle` (the first
    /// handle given wins).
    pub fn attach_metrics(&self, handle: QueueHandle) {
        let _ = self.metrics.set(handle);
    }

    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !inner.1.contains_key(&key) {
            inner.1.insert(key.clone(), std::time::Instant::now());
            inner.0.push_back(key);
            if let Some(m) = self.metrics.get() {
                m.adds.inc();
                m.depth.set(inner.0.len() as i64);
            }
            drop(inner);
            self.notify.notify_one();
        }
    }

    /// Counts one reconcile of a key taken from this queue (`workqueue_work_duration_seconds`).
    pub fn observe_work(&self, elapsed: Duration) {
        if let Some(m) = self.metrics.get() {
            m.work_duration.observe(elapsed.as_secs_f64());
        }
    }

    /// Queues `key` again after `delay` ("requeue after").
    pub fn add_after(self: &Arc<Self>, key: impl Into<String>, delay: Duration) {
        let key = key.into();
        let queue = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Queues `key` again after its rate-limited retry delay (a reconcile of it failed);
    /// returns that delay.
    pub fn add_rate_limited(self: &Arc<Self>, key: &str) -> Duration {
        let delay = self.limiter.when(key);
        self.add_after(key, delay);
        delay
    }

    /// Resets the back-off of `key` (its reconcile succeeded).
    pub fn forget(&self, key: &str) {
        self.limiter.forget(key);
    }

    /// The next key to reconcile (waits until there is one).
    pub async fn next(&self) -> String {
        loop {
            let notified = self.notify.notified();
            {
                let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(key) = inner.0.pop_front() {
                    let queued = inner.1.remove(&key);
                    if let (Some(m), Some(queued)) = (self.metrics.get(), queued) {
                        m.depth.set(inner.0.len() as i64);
                        m.queue_duration.observe(queued.elapsed().as_secs_f64());
                    }
                    if !inner.0.is_empty() {
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Exponential back-off per key, taken as the larger of it and a token bucket shared by
/// all keys (so many failing keys cannot hammer the API server together).
struct RateLimiter {
    failures: Mutex<HashMap<String, u32>>,
    bucket: Mutex<TokenBucket>,
}

impl RateLimiter {
    fn new(rate: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            failures: Mutex::default(),
            bucket: Mutex::new(TokenBucket::new(rate, burst)),
        }
    }

    fn when(&self, key: &str) -> Duration {
        let failures = {
            let mut all = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            let n = all.entry(key.to_string()).or_default();
            *n += 1;
            *n
        };
        let wait = self
            .bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reserve(Instant::now());
        backoff(failures).max(wait)
    }

    fn forget(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The per-key retry delay after `failures` consecutive failures.
pub fn backoff(failures: u32) -> Duration {
    RETRY_BASE
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(RETRY_MAX)
}

/// `rate` tokens per second, at most `burst` saved up; a reservation may go into debt
/// and returns how long until its token exists.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    fn new(rate: f64, burst: f64) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: None,
        }
    }

    fn reserve(&mut self, now: Instant) -> Duration {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.burst);
        }
        self.last = Some(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_nanos((-self.tokens / self.rate * 1e9).round() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn queue_deduplicates_and_delivers_in_order() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        let next = tokio::time::timeout(Duration::from_secs(1), q.next())
            .await
            .expect("queue deadlocked");
        assert_eq!(next, "a");
        assert_eq!(q.next().await, "b");
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_requeues_once_the_delay_passed() {
        let q = WorkQueue::new();
        q.add_after("x", Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(q.is_empty());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(q.next().await, "x");
    }

    #[tokio::test(start_paused = true)]
    async fn an_instrumented_queue_reports_depth_adds_and_latencies() {
        let metrics = crate::metrics::ServerMetrics::new(None);
        let q = WorkQueue::new();
        q.attach_metrics(metrics.workqueue.queue("test-controller"));
        q.add("a");
        q.add("b");
        q.add("a");
        let text = metrics.encode();
        assert!(
            text.contains("workqueue_adds_total{name=\"test-controller\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("workqueue_depth{name=\"test-controller\"} 2\n"));
        assert_eq!(q.next().await, "a");
        q.observe_work(Duration::from_millis(5));
        let text = metrics.encode();
        assert!(text.contains("workqueue_depth{name=\"test-controller\"} 1\n"));
        assert!(
            text.contains("workqueue_queue_duration_seconds_count{name=\"test-controller\"} 1\n")
        );
        assert!(
            text.contains("workqueue_work_duration_seconds_count{name=\"test-controller\"} 1\n")
        );
    }

    #[test]
    fn retry_delay_grows_per_failure_and_is_capped() {
        assert_eq!(backoff(1), RETRY_BASE);
        assert_eq!(backoff(2), RETRY_BASE * 2);
        assert_eq!(backoff(40), RETRY_MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_back_off_of_its_key_only() {
        let q = WorkQueue::new();
        assert_eq!(q.add_rate_limited("a"), RETRY_BASE);
        assert_eq!(q.add_rate_limited("a"), RETRY_BASE * 2);
        assert_eq!(q.add_rate_limited("b"), RETRY_BASE);
        q.forget("a");
        assert_eq!(q.add_rate_limited("a"), RETRY_BASE);
        assert_eq!(q.add_rate_limited("b"), RETRY_BASE * 2);
    }

    #[test]
    fn retries_beyond_the_burst_are_spread_at_the_bucket_rate() {
        let mut bucket = TokenBucket::new(10.0, 2.0);
        let now = Instant::now();
        assert_eq!(bucket.reserve(now), Duration::ZERO);
        assert_eq!(bucket.reserve(now), Duration::ZERO);
        assert_eq!(bucket.reserve(now), Duration::from_millis(100));
        assert_eq!(bucket.reserve(now), Duration::from_millis(200));
        let later = now + Duration::from_secs(1);
        assert_eq!(bucket.reserve(later), Duration::ZERO, "refilled");
    }
}
