//! Image GC on the fake runtime, a fake filesystem whose usage follows the images
//! present, and the fake API (events).

use std::sync::Mutex;

use super::*;
use crate::agent::kubelet::api::FakePodApi;
use crate::agent::runtime::{ContainerConfig, FakeCall, FakeRuntime};

const MI: u64 = 1 << 20;

/// 100 MiB; `base` bytes used by other things plus the sizes of the images present.
struct FakeFs {
    runtime: Arc<FakeRuntime>,
    base: Mutex<u64>,
    sizes: BTreeMap<String, u64>,
}

impl ImageFs for FakeFs {
    fn usage(&self) -> Result<FsUsage, ImageGcError> {
        let images: u64 = self
            .runtime
            .image_names()
            .iter()
            .map(|n| self.sizes.get(n).copied().unwrap_or(0))
            .sum();
        let used = *self.base.lock().unwrap() + images;
        Ok(FsUsage {
            capacity: 100 * MI,
            available: (100 * MI).saturating_sub(used),
        })
    }
}

struct Setup {
    runtime: Arc<FakeRuntime>,
    fs: Arc<FakeFs>,
    api: Arc<FakePodApi>,
    dir: tempfile::TempDir,
}

/// Images `a` … `d`, 10 MiB each, distinct ids; `base` MiB used besides.
fn setup(base: u64) -> Setup {
    let runtime = Arc::new(FakeRuntime::new());
    let mut sizes = BTreeMap::new();
    for n in ["a", "b", "c", "d"] {
        let name = format!("docker.io/library/{n}:1");
        runtime.add_image_with(&name, &format!("sha256:{n}"), (10 * MI) as i64);
        sizes.insert(name, 10 * MI);
    }
    let fs = Arc::new(FakeFs {
        runtime: runtime.clone(),
        base: Mutex::new(base * MI),
        sizes,
    });
    Setup {
        runtime,
        fs,
        api: Arc::new(FakePodApi::new()),
        dir: tempfile::tempdir().unwrap(),
    }
}

fn gc(s: &Setup, policy: ImageGcPolicy) -> ImageGc {
    ImageGc::new(
        s.runtime.clone(),
        s.fs.clone(),
        s.api.clone(),
        policy,
        "n1",
        s.dir.path(),
    )
}

fn policy() -> ImageGcPolicy {
    ImageGcPolicy {
        high_threshold: 85,
        low_threshold: 80,
        min_age: Duration::from_secs(60),
        period: Duration::from_secs(1),
    }
}

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
}

async fn use_image(runtime: &FakeRuntime, id: &str, image: &str) {
    let cfg = ContainerConfig::new(id, image, "/tmp/x.log".into());
    runtime.create_container(&cfg).await.unwrap();
}

fn removed(runtime: &FakeRuntime) -> Vec<String> {
    runtime
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            FakeCall::RemoveImage(n) => Some(n),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn nothing_is_removed_below_the_high_threshold() {
    let s = setup(40); // 80% in use
    let mut gc = gc(&s, policy());
    gc.collect(t(0)).await.unwrap();
    assert_eq!(gc.collect(t(600)).await.unwrap(), Collected::default());
    assert!(removed(&s.runtime).is_empty());
}

#[tokio::test]
async fn least_recently_used_unused_images_go_until_below_the_low_threshold() {
    let s = setup(30);
    use_image(&s.runtime, "c1", "docker.io/library/a:1").await;
    use_image(&s.runtime, "c2", "docker.io/library/b:1").await;
    use_image(&s.runtime, "c3", "docker.io/library/c:1").await;
    let mut gc = gc(&s, policy());
    gc.collect(t(0)).await.unwrap();
    // b stops being used first, then c; d was never used.
    s.runtime.remove("c2").await.unwrap();
    gc.collect(t(10)).await.unwrap();
    s.runtime.remove("c3").await.unwrap();
    gc.collect(t(20)).await.unwrap();
    // 30 + 4 x 10 = 70%: now push it to 95%.
    *s.fs.base.lock().unwrap() = 55 * MI;
    let collected = gc.collect(t(200)).await.unwrap();
    // 95% → 80%: d (never used), then b (used longest ago) are enough; c stays.
    assert_eq!(
        collected.removed,
        vec!["docker.io/library/d:1", "docker.io/library/b:1"]
    );
    assert_eq!(collected.freed, 20 * MI);
    assert!(s
        .runtime
        .image_names()
        .contains(&"docker.io/library/a:1".to_string()));
    assert!(s.api.event_reasons().is_empty());
}

#[tokio::test]
async fn images_in_use_or_unused_for_less_than_the_minimum_age_stay_and_the_node_hears_of_it() {
    // 75 MiB of other data: even with every unused image gone it stays past 80%.
    let s = setup(75);
    use_image(&s.runtime, "c1", "docker.io/library/a:1").await;
    let mut gc = gc(&s, policy());
    // Full; b, c and d were just detected: too young to go.
    let e = gc.collect(t(0)).await.unwrap_err();
    assert!(
        matches!(e, ImageGcError::NotEnoughFreed { freed: 0, .. }),
        "{e}"
    );
    assert!(removed(&s.runtime).is_empty());
    assert_eq!(s.api.event_reasons(), vec![FREE_DISK_SPACE_FAILED]);
    assert!(
        s.api.events()[0]
            .1
            .starts_with("Failed to garbage collect required amount of images. Attempted to free"),
        "{:?}",
        s.api.events()
    );
    // Old enough now: everything unused goes, the used image stays, and it is still
    // not enough: a second failure in a row is ImageGCFailed too.
    assert!(gc.tick(t(61)).await.is_none());
    let mut gone = removed(&s.runtime);
    gone.sort();
    assert_eq!(
        gone,
        vec![
            "docker.io/library/b:1",
            "docker.io/library/c:1",
            "docker.io/library/d:1"
        ]
    );
    assert_eq!(
        s.api.event_reasons(),
        vec![FREE_DISK_SPACE_FAILED, FREE_DISK_SPACE_FAILED]
    );
    assert!(gc.tick(t(62)).await.is_none());
    assert_eq!(s.api.event_reasons().last().unwrap(), IMAGE_GC_FAILED);
    assert_eq!(s.runtime.image_names(), vec!["docker.io/library/a:1"]);
}

#[tokio::test]
async fn usage_history_survives_a_restart() {
    let s = setup(30);
    use_image(&s.runtime, "c1", "docker.io/library/a:1").await;
    let mut first = gc(&s, policy());
    first.collect(t(0)).await.unwrap();
    s.runtime.remove("c1").await.unwrap();
    first.collect(t(5)).await.unwrap();
    let before = first.records().clone();
    assert_eq!(before["sha256:a"].last_used, Some(t(0)));
    assert_eq!(before["sha256:b"].first_detected, t(0));
    // A new agent: the images are not new to it.
    let mut second = gc(&s, policy());
    second.collect(t(100)).await.unwrap();
    assert_eq!(second.records(), &before);
}

#[test]
fn candidates_are_ordered_least_recently_used_first() {
    let image = |n: &str| ImageInfo {
        name: format!("{n}:1"),
        digest: String::new(),
        config_digest: n.to_string(),
        size: 1,
        user: String::new(),
    };
    let images = [image("new"), image("old"), image("never"), image("used")];
    let rec = |first: i64, used: Option<i64>| ImageRecord {
        first_detected: t(first),
        last_used: used.map(t),
    };
    let records = BTreeMap::from([
        ("new".to_string(), rec(0, Some(90))),
        ("old".to_string(), rec(0, Some(10))),
        ("never".to_string(), rec(5, None)),
        ("used".to_string(), rec(0, Some(100))),
    ]);
    let in_use = HashSet::from(["used".to_string()]);
    let ids: Vec<String> = candidates(&images, &in_use, &records, t(100), Duration::from_secs(30))
        .into_iter()
        .map(|c| c.id)
        .collect();
    // "new" was used 10 s ago: younger than the minimum age.
    assert_eq!(ids, vec!["never", "old"]);
}

#[test]
fn usage_and_policy_arithmetic_as_upstream() {
    let u = FsUsage {
        capacity: 1000,
        available: 100,
    };
    assert_eq!(u.used_percent(), 90);
    assert_eq!(u.to_free_for(80), 100);
    assert_eq!(u.to_free_for(95), 0);
    assert!(ImageGcPolicy::default().validate().is_ok());
    let bad = ImageGcPolicy {
        low_threshold: 90,
        ..Default::default()
    };
    assert_eq!(
        bad.validate().unwrap_err().to_string(),
        "--image-gc-low-threshold 90 must be less than --image-gc-high-threshold 85"
    );
    let bad = ImageGcPolicy {
        high_threshold: 101,
        ..Default::default()
    };
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .starts_with("--image-gc-high-threshold"));
}
