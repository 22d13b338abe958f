//! Leader election over a coordination.k8s.io/v1 Lease, as upstream's
//! `client-go/tools/leaderelection`: the work that must run once per cluster (scheduler,
//! controllers, compaction) runs only on the server holding the Lease.
//!
//! A candidate acquires the Lease when it is free or its holder has not renewed it for
//! `leaseDurationSeconds` *as observed on the candidate's own monotonic clock* (from the
//! moment it last saw the record change; the record's timestamps are informational, so
//! clock skew between servers does not matter). The holder renews every retry period and
//! steps down — stopping its work — when it has not renewed for the renew deadline, which
//! is shorter than the lease duration: by the time another server may take over, the old
//! leader has already stopped. Every write carries the Lease's resourceVersion, so two
//! candidates racing for a free Lease cannot both win.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::clock::Clock;
use super::framework::client::def_of;
use super::framework::Client;
use crate::api::status::ApiError;

/// Upstream defaults (kube-controller-manager `--leader-elect-*`).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// Where the Lease lives and its name.
pub const LEASE_NAMESPACE: &str = "kube-system";
pub const LEASE_NAME: &str = "orc-controllers";

type Lease = k8s_openapi::api::coordination::v1::Lease;

#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("--leader-elect-renew-deadline ({renew:?}) must be shorter than --leader-elect-lease-duration ({lease:?})")]
    RenewNotBeforeExpiry { renew: Duration, lease: Duration },
    #[error("--leader-elect-retry-period ({retry:?}) must be shorter than --leader-elect-renew-deadline ({renew:?})")]
    RetryNotBeforeDeadline { retry: Duration, renew: Duration },
    #[error("--leader-elect-lease-duration must be whole seconds of at least 1s (a Lease counts seconds)")]
    LeaseDurationNotSeconds,
}

/// Who competes for which Lease, and the timings.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate's `holderIdentity`: unique per server process.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl ElectionConfig {
    /// The controllers' election for `server_name`, with a random suffix so that a
    /// restarted server is a new candidate (as upstream's `hostname_<uuid>`).
    pub fn controllers(
        server_name: &str,
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Result<ElectionConfig, ElectionError> {
        let config = ElectionConfig {
            namespace: LEASE_NAMESPACE.into(),
            name: LEASE_NAME.into(),
            identity: format!("{server_name}_{}", uuid::Uuid::new_v4()),
            lease_duration,
            renew_deadline,
            retry_period,
        };
        config.check()?;
        Ok(config)
    }

    /// Upstream's checks: retry < renew deadline < lease duration.
    pub fn check(&self) -> Result<(), ElectionError> {
        if self.lease_duration.subsec_nanos() != 0 || self.lease_duration.as_secs() == 0 {
            return Err(ElectionError::LeaseDurationNotSeconds);
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(ElectionError::RenewNotBeforeExpiry {
                renew: self.renew_deadline,
                lease: self.lease_duration,
            });
        }
        if self.retry_period >= self.renew_deadline {
            return Err(ElectionError::RetryNotBeforeDeadline {
                retry: self.retry_period,
                renew: self.renew_deadline,
            });
        }
        Ok(())
    }
}

/// The election part of a Lease's spec.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaderRecord {
    pub holder: String,
    pub lease_duration_seconds: i64,
    pub acquire_time: Option<String>,
    pub renew_time: Option<String>,
    pub transitions: i64,
}

impl LeaderRecord {
    fn from_lease(lease: &Value) -> LeaderRecord {
        let spec = &lease["spec"];
        LeaderRecord {
            holder: spec["holderIdentity"].as_str().unwrap_or_default().into(),
            lease_duration_seconds: spec["leaseDurationSeconds"].as_i64().unwrap_or(0),
            acquire_time: spec["acquireTime"].as_str().map(str::to_owned),
            renew_time: spec["renewTime"].as_str().map(str::to_owned),
            transitions: spec["leaseTransitions"].as_i64().unwrap_or(0),
        }
    }

    fn to_spec(&self) -> Value {
        json!({
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
            "leaseTransitions": self.transitions,
        })
    }
}

/// The record as last seen, and when (on this candidate's monotonic clock) it changed.
#[derive(Debug, Clone)]
pub struct Observed {
    pub record: LeaderRecord,
    pub since: Instant,
}

fn micro_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The pure decision of one attempt: the record `me` should write, or `None` while
/// another holder's Lease is still valid. `observed` is the record last seen and when
/// it last changed; `now` is the monotonic time, `wall` the time written in the record.
pub fn next_record(
    observed: &Observed,
    me: &str,
    config: &ElectionConfig,
    now: Instant,
    wall: DateTime<Utc>,
) -> Option<LeaderRecord> {
    let current = &observed.record;
    let held_by_other = !current.holder.is_empty() && current.holder != me;
    if held_by_other {
        let duration = match current.lease_duration_seconds {
            s if s > 0 => Duration::from_secs(s as u64),
            _ => config.lease_duration,
        };
        if observed.since + duration > now {
            return None;
        }
    }
    let wall = micro_time(wall);
    let mut next = LeaderRecord {
        holder: me.to_owned(),
        lease_duration_seconds: config.lease_duration.as_secs() as i64,
        acquire_time: Some(wall.clone()),
        renew_time: Some(wall),
        transitions: current.transitions,
    };
    if current.holder == me {
        next.acquire_time = current.acquire_time.clone().or(next.acquire_time);
    } else if !current.holder.is_empty() {
        next.transitions += 1;
    }
    Some(next)
}

/// One candidate. [`LeaderElector::run`] competes for the Lease for ever, running the
/// leader's work while it holds it; [`LeaderElector::release`] gives the Lease up at
/// shutdown so that another server takes over at once.
pub struct LeaderElector {
    client: Arc<dyn Client>,
    config: ElectionConfig,
    clock: Arc<dyn Clock>,
    observed: Mutex<Option<(Observed, String)>>,
    leading: watch::Sender<bool>,
}

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// This candidate holds the Lease (acquired or renewed).
    Held,
    /// Another candidate holds a valid Lease.
    HeldByOther,
}

impl LeaderElector {
    pub fn new(
        client: Arc<dyn Client>,
        config: ElectionConfig,
        clock: Arc<dyn Clock>,
    ) -> Arc<LeaderElector> {
        Arc::new(LeaderElector {
            client,
            config,
            clock,
            observed: Mutex::new(None),
            leading: watch::channel(false).0,
        })
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// Whether this candidate leads now (and a way to follow changes).
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// The holder of the Lease as last observed.
    pub fn observed_holder(&self) -> Option<String> {
        let observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        observed.as_ref().map(|(o, _)| o.record.holder.clone())
    }

    /// Competes for the Lease; while it is held, the tasks `lead` starts run, and they
    /// are aborted as soon as the Lease is lost (or this future is dropped).
    pub async fn run(self: Arc<Self>, mut lead: impl FnMut() -> JoinSet<()> + Send) {
        tracing::info!(identity = %self.config.identity, lease = %self.config.name, "waiting to become the leader");
        loop {
            self.acquire().await;
            tracing::info!(identity = %self.config.identity, lease = %self.config.name, "became the leader: starting the controllers");
            self.leading.send_replace(true);
            let mut tasks = lead();
            self.renew_until_lost().await;
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            self.leading.send_replace(false);
            tracing::warn!(identity = %self.config.identity, lease = %self.config.name, "lost the leadership: controllers stopped");
        }
    }

    /// Returns once this candidate holds the Lease.
    async fn acquire(&self) {
        loop {
            match tokio::time::timeout(self.config.renew_deadline, self.try_acquire_or_renew())
                .await
            {
                Ok(Ok(Attempt::Held)) => return,
                Ok(Ok(Attempt::HeldByOther)) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "leader election attempt failed"),
                Err(_) => tracing::debug!("leader election attempt timed out"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews every retry period; returns when no renewal succeeded for the renew
    /// deadline, or another holder took the Lease.
    async fn renew_until_lost(&self) {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let deadline = last_renewed + self.config.renew_deadline;
            match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                Ok(Ok(Attempt::Held)) => last_renewed = Instant::now(),
                Ok(Ok(Attempt::HeldByOther)) => return,
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew the leader lease"),
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    renew_deadline = ?self.config.renew_deadline,
                    "leader lease not renewed within the renew deadline"
                );
                return;
            }
        }
    }

    /// One round of upstream's `tryAcquireOrRenew`.
    async fn try_acquire_or_renew(&self) -> Result<Attempt, ApiError> {
        let def = def_of::<Lease>();
        let ns = Some(self.config.namespace.as_str());
        let now = Instant::now();
        let wall = self.clock.now();
        let (observed, resource_version) = match self.client.get(def, ns, &self.config.name) {
            Ok(kv) => {
                let record = LeaderRecord::from_lease(&kv.value);
                let rv = kv.mod_revision.to_string();
                let mut last = self.observed.lock().unwrap_or_else(|e| e.into_inner());
                let observed = match last.as_ref() {
                    Some((seen, _)) if seen.record == record => seen.clone(),
                    _ => Observed { record, since: now },
                };
                *last = Some((observed.clone(), rv.clone()));
                (observed, Some(rv))
            }
            Err(e) if e.code == 404 => (
                Observed {
                    record: LeaderRecord::default(),
                    since: now,
                },
                None,
            ),
            Err(e) => return Err(e),
        };
        let Some(next) = next_record(&observed, &self.config.identity, &self.config, now, wall)
        else {
            return Ok(Attempt::HeldByOther);
        };
        let written = match resource_version {
            None => {
                let body = json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.config.name, "namespace": self.config.namespace},
                    "spec": next.to_spec(),
                });
                self.client.create(def, ns, body).await?
            }
            Some(rv) => {
                let body = json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": self.config.name,
                        "namespace": self.config.namespace,
                        "resourceVersion": rv,
                    },
                    "spec": next.to_spec(),
                });
                self.client.update(def, ns, &self.config.name, body).await?
            }
        };
        let record = LeaderRecord::from_lease(&written.kv.value);
        *self.observed.lock().unwrap_or_else(|e| e.into_inner()) = Some((
            Observed {
                record,
                since: Instant::now(),
            },
            written.kv.mod_revision.to_string(),
        ));
        Ok(Attempt::Held)
    }

    /// Gives the Lease up if this candidate holds it (upstream's `ReleaseOnCancel`): an
    /// empty holder and a 1 s duration, so the next candidate acquires it at once. Call it
    /// after the leader's work has stopped.
    pub async fn release(&self) {
        if !*self.leading.borrow() {
            return;
        }
        let def = def_of::<Lease>();
        let ns = Some(self.config.namespace.as_str());
        let Ok(kv) = self.client.get(def, ns, &self.config.name) else {
            return;
        };
        let mut record = LeaderRecord::from_lease(&kv.value);
        if record.holder != self.config.identity {
            return;
        }
        record.holder.clear();
        record.lease_duration_seconds = 1;
        record.renew_time = Some(micro_time(self.clock.now()));
        let body = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.config.name,
                "namespace": self.config.namespace,
                "resourceVersion": kv.mod_revision.to_string(),
            },
            "spec": record.to_spec(),
        });
        match self.client.update(def, ns, &self.config.name, body).await {
            Ok(_) => tracing::info!("released the leader lease"),
            Err(e) => tracing::warn!(error = %e, "cannot release the leader lease"),
        }
        self.leading.send_replace(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::clock::TokioClock;
    use crate::controllers::testutil;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn config(identity: &str) -> ElectionConfig {
        ElectionConfig {
            namespace: "default".into(),
            name: "test-lease".into(),
            identity: identity.into(),
            lease_duration: LEASE_DURATION,
            renew_deadline: RENEW_DEADLINE,
            retry_period: RETRY_PERIOD,
        }
    }

    fn held_by(holder: &str, since: Instant) -> Observed {
        Observed {
            record: LeaderRecord {
                holder: holder.into(),
                lease_duration_seconds: 15,
                acquire_time: Some("2026-01-01T00:00:00.000000Z".into()),
                renew_time: Some("2026-01-01T00:00:00.000000Z".into()),
                transitions: 3,
            },
            since,
        }
    }

    #[test]
    fn upstream_timing_rules_are_checked() {
        assert!(config("a").check().is_ok());
        let mut c = config("a");
        c.renew_deadline = Duration::from_secs(15);
        assert!(matches!(
            c.check(),
            Err(ElectionError::RenewNotBeforeExpiry { .. })
        ));
        let mut c = config("a");
        c.retry_period = Duration::from_secs(10);
        assert!(matches!(
            c.check(),
            Err(ElectionError::RetryNotBeforeDeadline { .. })
        ));
        let mut c = config("a");
        c.lease_duration = Duration::from_millis(15_500);
        assert!(c.check().is_err());
        let id = ElectionConfig::controllers("srv1", LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD)
            .unwrap()
            .identity;
        assert!(
            id.starts_with("srv1_") && id.len() > "srv1_".len() + 30,
            "{id}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_valid_lease_of_another_holder_is_respected_until_it_expires() {
        let c = config("me");
        let seen = Instant::now();
        let wall = Utc::now();
        let observed = held_by("other", seen);
        assert_eq!(next_record(&observed, "me", &c, seen, wall), None);
        let almost = seen + Duration::from_secs(14);
        assert_eq!(next_record(&observed, "me", &c, almost, wall), None);
        let expired = seen + Duration::from_secs(15);
        let next = next_record(&observed, "me", &c, expired, wall).expect("takes over");
        assert_eq!(next.holder, "me");
        assert_eq!(next.transitions, 4, "a change of holder is a transition");
        assert_eq!(next.acquire_time, next.renew_time);
        assert_eq!(next.lease_duration_seconds, 15);
    }

    #[tokio::test(start_paused = true)]
    async fn the_holder_renews_and_a_free_lease_is_taken_at_once() {
        let c = config("me");
        let now = Instant::now();
        let wall = Utc::now();
        let mine = held_by("me", now);
        let renewed = next_record(&mine, "me", &c, now, wall).expect("renews");
        assert_eq!(renewed.acquire_time, mine.record.acquire_time);
        assert_eq!(renewed.transitions, 3, "a renewal is no transition");
        assert_ne!(renewed.renew_time, mine.record.renew_time);
        // Released (empty holder) or never held: no waiting.
        let released = held_by("", now);
        let next = next_record(&released, "me", &c, now, wall).expect("acquires");
        assert_eq!(next.transitions, 3);
        let absent = Observed {
            record: LeaderRecord::default(),
            since: now,
        };
        assert!(next_record(&absent, "me", &c, now, wall).is_some());
    }

    /// Runs a candidate whose "controllers" count how many are active at once.
    fn candidate(
        client: Arc<dyn Client>,
        identity: &str,
        active: Arc<AtomicUsize>,
        max_active: Arc<AtomicUsize>,
    ) -> (Arc<LeaderElector>, tokio::task::JoinHandle<()>) {
        let elector = LeaderElector::new(client, config(identity), Arc::new(TokioClock::new()));
        let run = elector.clone().run(move || {
            let mut set = JoinSet::new();
            let active = active.clone();
            let max_active = max_active.clone();
            set.spawn(async move {
                struct Guard(Arc<AtomicUsize>);
                impl Drop for Guard {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                max_active.fetch_max(now, Ordering::SeqCst);
                let _guard = Guard(active);
                std::future::pending::<()>().await;
            });
            set
        });
        (elector, tokio::spawn(run))
    }

    #[tokio::test(start_paused = true)]
    async fn one_leader_at_a_time_and_a_takeover_within_the_lease_duration() {
        tokio::time::timeout(Duration::from_secs(600), async {
            let registry = testutil::registry().await;
            let client: Arc<dyn Client> = registry;
            let active = Arc::new(AtomicUsize::new(0));
            let max_active = Arc::new(AtomicUsize::new(0));
            let (a, run_a) = candidate(client.clone(), "a", active.clone(), max_active.clone());
            let mut a_leads = a.leading();
            a_leads.wait_for(|l| *l).await.unwrap();
            let (b, run_b) = candidate(client.clone(), "b", active.clone(), max_active.clone());
            // b keeps waiting while a renews.
            tokio::time::sleep(Duration::from_secs(60)).await;
            assert!(*a.leading().borrow());
            assert!(!*b.leading().borrow());
            assert_eq!(b.observed_holder().as_deref(), Some("a"));
            let lease = client
                .get(def_of::<Lease>(), Some("default"), "test-lease")
                .unwrap();
            assert_eq!(lease.value["spec"]["holderIdentity"], "a");

            // a dies without releasing: b takes over within the lease duration (+ a retry).
            run_a.abort();
            let died = Instant::now();
            let mut b_leads = b.leading();
            b_leads.wait_for(|l| *l).await.unwrap();
            let took = died.elapsed();
            assert!(
                took <= LEASE_DURATION + RETRY_PERIOD,
                "takeover after {took:?}"
            );
            assert!(took >= LEASE_DURATION - RETRY_PERIOD, "too early: {took:?}");
            let lease = client
                .get(def_of::<Lease>(), Some("default"), "test-lease")
                .unwrap();
            assert_eq!(lease.value["spec"]["holderIdentity"], "b");
            assert_eq!(lease.value["spec"]["leaseTransitions"], 1);

            // A clean shutdown releases: a new candidate takes over at once.
            run_b.abort();
            let _ = run_b.await;
            b.release().await;
            let (c, _run_c) = candidate(client.clone(), "c", active.clone(), max_active.clone());
            let started = Instant::now();
            c.leading().wait_for(|l| *l).await.unwrap();
            assert!(started.elapsed() < RETRY_PERIOD, "{:?}", started.elapsed());
            assert_eq!(max_active.load(Ordering::SeqCst), 1, "never two leaders");
        })
        .await
        .expect("election deadlocked");
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_lease_is_taken_stops_its_work() {
        tokio::time::timeout(Duration::from_secs(600), async {
            let registry = testutil::registry().await;
            let client: Arc<dyn Client> = registry;
            let active = Arc::new(AtomicUsize::new(0));
            let max_active = Arc::new(AtomicUsize::new(0));
            let (a, _run) = candidate(client.clone(), "a", active.clone(), max_active);
            a.leading().wait_for(|l| *l).await.unwrap();
            assert_eq!(active.load(Ordering::SeqCst), 1);
            // Someone else writes the Lease (as another server would after a partition).
            let def = def_of::<Lease>();
            let kv = client.get(def, Some("default"), "test-lease").unwrap();
            let mut lease = (*kv.value).clone();
            lease["spec"]["holderIdentity"] = json!("intruder");
            client
                .update(def, Some("default"), "test-lease", lease)
                .await
                .unwrap();
            a.leading().wait_for(|l| !*l).await.unwrap();
            testutil::wait_for("controllers stopped", Duration::from_secs(1), || {
                active.load(Ordering::SeqCst) == 0
            })
            .await;
        })
        .await
        .expect("election deadlocked");
    }
}
