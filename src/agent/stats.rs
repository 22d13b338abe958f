//! Resource usage of the node, its pods and their containers, read from cgroups (v1 and
//! v2): cumulative CPU time and the memory working set (usage − inactive file, as
//! cadvisor), rendered as the kubelet's `/metrics/resource` (Prometheus text, upstream's
//! metric names) for the API server's resource-metrics collector.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::eviction::signals::{working_set_v1, working_set_v2, working_set_v2_root};
use super::kubelet::container::{
    CONTAINER_NAME_LABEL, POD_NAMESPACE_LABEL, POD_NAME_LABEL, POD_UID_LABEL,
};
use super::runtime::containerd::CGROUP_PATH_LABEL;
use super::runtime::{ContainerState, ContainerSummary};

/// Clock ticks per second of `/proc/stat` (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: u64 = 100;

/// What one cgroup (or the node) used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// CPU time consumed since the cgroup was made, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory working set in bytes.
    pub memory_bytes: i64,
}

/// A running container's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUsage {
    pub name: String,
    pub usage: Usage,
}

/// A pod's usage: its own cgroup (when readable) and its running containers'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    pub namespace: String,
    pub name: String,
    pub pod: Option<Usage>,
    pub containers: Vec<ContainerUsage>,
}

/// One reading of everything on the node.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub node: Option<Usage>,
    pub pods: Vec<PodUsage>,
}

/// Cumulative CPU nanoseconds from a v2 `cpu.stat` (`usage_usec`).
pub fn cpu_ns_v2(cpu_stat: &str) -> Option<u64> {
    cpu_stat.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == "usage_usec").then(|| v.trim().parse::<u64>().ok().map(|us| us * 1000))?
    })
}

/// Cumulative CPU nanoseconds from a v1 `cpuacct.usage`.
pub fn cpu_ns_v1(cpuacct_usage: &str) -> Option<u64> {
    cpuacct_usage.trim().parse().ok()
}

/// Cumulative busy CPU nanoseconds of the host from `/proc/stat`'s `cpu` line: user, nice,
/// system, irq, softirq and steal (idle and iowait are not usage), as cadvisor's root.
pub fn cpu_ns_proc_stat(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let field = |i: usize| ticks.get(i).copied().unwrap_or(0);
    let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
    Some(busy * (1_000_000_000 / USER_HZ))
}

/// Reads cgroup statistics below `root` (`/sys/fs/cgroup`; a test points it at files of
/// its own). Paths are relative to each hierarchy's root, e.g. `/orc/pod<uid>/<id>`.
#[derive(Debug, Clone)]
pub struct CgroupReader {
    pub root: PathBuf,
    pub proc_root: PathBuf,
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

impl CgroupReader {
    pub fn new(root: impl Into<PathBuf>) -> CgroupReader {
        CgroupReader {
            root: root.into(),
            proc_root: PathBuf::from("/proc"),
        }
    }

    fn is_v2(&self) -> bool {
        self.root.join("cgroup.controllers").exists()
    }

    /// The directory of cgroup `rel` in v1 controller `controller` (the controller may be
    /// mounted alone or co-mounted, as `cpu,cpuacct`).
    fn v1_dir(&self, controllers: &[&str], rel: &str) -> Option<PathBuf> {
        let rel = rel.trim_start_matches('/');
        controllers
            .iter()
            .map(|c| self.root.join(c).join(rel))
            .find(|d| d.is_dir())
    }

    /// Cumulative CPU nanoseconds of cgroup `rel`.
    pub fn cpu_ns(&self, rel: &str) -> Option<u64> {
        if self.is_v2() {
            cpu_ns_v2(&read(
                &self.root.join(rel.trim_start_matches('/')).join("cpu.stat"),
            )?)
        } else {
            let dir = self.v1_dir(&["cpuacct", "cpu,cpuacct", "cpuacct,cpu"], rel)?;
            cpu_ns_v1(&read(&dir.join("cpuacct.usage"))?)
        }
    }

    /// Memory working set of cgroup `rel`, in bytes.
    pub fn memory_working_set(&self, rel: &str) -> Option<i64> {
        if self.is_v2() {
            let dir = self.root.join(rel.trim_start_matches('/'));
            working_set_v2(
                &read(&dir.join("memory.current"))?,
                &read(&dir.join("memory.stat"))?,
            )
        } else {
            let dir = self.v1_dir(&["memory"], rel)?;
            working_set_v1(
                &read(&dir.join("memory.usage_in_bytes"))?,
                &read(&dir.join("memory.stat"))?,
            )
        }
    }

    /// Usage of cgroup `rel`; `None` when either figure cannot be read.
    pub fn usage(&self, rel: &str) -> Option<Usage> {
        Some(Usage {
            cpu_ns: self.cpu_ns(rel)?,
            memory_bytes: self.memory_working_set(rel)?,
        })
    }

    /// The node's usage: the root cgroup (v2's root has no `memory.current`: usage comes
    /// from `/proc/meminfo`; a root without `cpu.stat` is read from `/proc/stat`).
    pub fn node(&self) -> Option<Usage> {
        if self.is_v2() {
            let cpu_ns = read(&self.root.join("cpu.stat"))
                .and_then(|s| cpu_ns_v2(&s))
                .or_else(|| cpu_ns_proc_stat(&read(&self.proc_root.join("stat"))?))?;
            let memory_bytes = working_set_v2_root(
                &read(&self.proc_root.join("meminfo"))?,
                &read(&self.root.join("memory.stat"))?,
            )?;
            Some(Usage {
                cpu_ns,
                memory_bytes,
            })
        } else {
            self.usage("/")
        }
    }
}

/// The cgroup of pod `uid` (the kubelet's parent of its containers' cgroups).
pub fn pod_cgroup(uid: &str) -> String {
    format!("/orc/pod{uid}")
}

/// Reads the node and every running container of `containers` (the runtime's listing),
/// grouped by pod. Containers the kubelet did not make (no pod labels) are left out.
pub fn sample(reader: &CgroupReader, containers: &[ContainerSummary], at: DateTime<Utc>) -> Sample {
    let mut pods: BTreeMap<String, PodUsage> = BTreeMap::new();
    for c in containers {
        if !matches!(c.state, ContainerState::Running { .. }) {
            continue;
        }
        let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
        let (uid, name) = (label(POD_UID_LABEL), label(CONTAINER_NAME_LABEL));
        if uid.is_empty() || name.is_empty() {
            continue;
        }
        let path = c
            .labels
            .get(CGROUP_PATH_LABEL)
            .cloned()
            .unwrap_or_else(|| format!("{}/{}", pod_cgroup(&uid), c.id));
        let Some(usage) = reader.usage(&path) else {
            continue;
        };
        pods.entry(uid.clone())
            .or_insert_with(|| PodUsage {
                namespace: label(POD_NAMESPACE_LABEL),
                name: label(POD_NAME_LABEL),
                pod: reader.usage(&pod_cgroup(&uid)),
                containers: Vec::new(),
            })
            .containers
            .push(ContainerUsage { name, usage });
    }
    let mut pods: Vec<PodUsage> = pods.into_values().collect();
    for p in &mut pods {
        p.containers.sort_by(|a, b| a.name.cmp(&b.name));
    }
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Sample {
        at,
        node: reader.node(),
        pods,
    }
}

/// A label value escaped for the Prometheus text format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// `sample` as the kubelet's `/metrics/resource` (Prometheus text format 0.0.4, values
/// with the sample's timestamp in milliseconds), with upstream's names and help texts.
pub fn render(sample: &Sample) -> String {
    let ts = sample.at.timestamp_millis();
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} [STABLE] {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{labels} {value} {ts}");
        }
    };
    let container_labels = |p: &PodUsage, c: &ContainerUsage| {
        format!(
            "{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}}",
            escape(&c.name),
            escape(&p.namespace),
            escape(&p.name)
        )
    };
    let pod_labels = |p: &PodUsage| {
        format!(
            "{{namespace=\"{}\",pod=\"{}\"}}",
            escape(&p.namespace),
            escape(&p.name)
        )
    };
    let containers = || {
        sample
            .pods
            .iter()
            .flat_map(|p| p.containers.iter().map(move |c| (p, c)))
    };
    family(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
        containers()
            .map(|(p, c)| (container_labels(p, c), seconds(c.usage.cpu_ns)))
            .collect(),
    );
    family(
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set of the container in bytes",
        containers()
            .map(|(p, c)| (container_labels(p, c), c.usage.memory_bytes as f64))
            .collect(),
    );
    family(
        "node_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the node in core-seconds",
        sample
            .node
            .iter()
            .map(|n| (String::new(), seconds(n.cpu_ns)))
            .collect(),
    );
    family(
        "node_memory_working_set_bytes",
        "gauge",
        "Current working set of the node in bytes",
        sample
            .node
            .iter()
            .map(|n| (String::new(), n.memory_bytes as f64))
            .collect(),
    );
    let pods_with_cgroup = || sample.pods.iter().filter_map(|p| Some((p, p.pod?)));
    family(
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
        pods_with_cgroup()
            .map(|(p, u)| (pod_labels(p), seconds(u.cpu_ns)))
            .collect(),
    );
    family(
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
        pods_with_cgroup()
            .map(|(p, u)| (pod_labels(p), u.memory_bytes as f64))
            .collect(),
    );
    let _ = writeln!(
        out,
        "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise"
    );
    let _ = writeln!(out, "# TYPE resource_scrape_error gauge");
    let _ = writeln!(
        out,
        "resource_scrape_error {}",
        u8::from(sample.node.is_none())
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: PathBuf, contents: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    fn running(id: &str, uid: &str, pod: &str, name: &str) -> ContainerSummary {
        let labels = [
            (POD_UID_LABEL, uid),
            (POD_NAME_LABEL, pod),
            (POD_NAMESPACE_LABEL, "default"),
            (CONTAINER_NAME_LABEL, name),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        ContainerSummary {
            id: id.into(),
            image: "busybox".into(),
            labels,
            state: ContainerState::Running { pid: 1 },
        }
    }

    #[test]
    fn cpu_counters_parse_in_both_hierarchies_and_from_proc_stat() {
        let v2 = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n";
        assert_eq!(cpu_ns_v2(v2), Some(1_500_000));
        assert_eq!(cpu_ns_v2("user_usec 3\n"), None);
        assert_eq!(cpu_ns_v1("123456789\n"), Some(123_456_789));
        assert_eq!(cpu_ns_v1("x"), None);
        let stat = "cpu  100 20 30 4000 50 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 1\n";
        // user + nice + system + irq + softirq + steal, ticks of 10 ms.
        assert_eq!(
            cpu_ns_proc_stat(stat),
            Some((100 + 20 + 30 + 6 + 7 + 8) * 10_000_000)
        );
        assert_eq!(cpu_ns_proc_stat("intr 1\n"), None);
    }

    #[test]
    fn a_v1_hierarchy_gives_node_pod_and_container_usage() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root.join("cpuacct/cpuacct.usage"), "9000000000\n");
        write(root.join("memory/memory.usage_in_bytes"), "8000\n");
        write(
            root.join("memory/memory.stat"),
            "total_inactive_file 3000\n",
        );
        write(root.join("cpuacct/orc/podu1/cpuacct.usage"), "700\n");
        write(
            root.join("memory/orc/podu1/memory.usage_in_bytes"),
            "4096\n",
        );
        write(
            root.join("memory/orc/podu1/memory.stat"),
            "total_inactive_file 96\n",
        );
        write(root.join("cpuacct/orc/podu1/c1/cpuacct.usage"), "500\n");
        write(
            root.join("memory/orc/podu1/c1/memory.usage_in_bytes"),
            "2048\n",
        );
        write(
            root.join("memory/orc/podu1/c1/memory.stat"),
            "total_inactive_file 48\n",
        );
        let reader = CgroupReader::new(root);
        assert_eq!(
            reader.node(),
            Some(Usage {
                cpu_ns: 9_000_000_000,
                memory_bytes: 5000
            })
        );
        let mut exited = running("c2", "u1", "web", "gone");
        exited.state = ContainerState::Created;
        let mut foreign = running("c3", "", "", "");
        foreign.labels.clear();
        let at = Utc::now();
        let s = sample(
            &reader,
            &[running("c1", "u1", "web", "app"), exited, foreign],
            at,
        );
        assert_eq!(
            s.pods,
            vec![PodUsage {
                namespace: "default".into(),
                name: "web".into(),
                pod: Some(Usage {
                    cpu_ns: 700,
                    memory_bytes: 4000
                }),
                containers: vec![ContainerUsage {
                    name: "app".into(),
                    usage: Usage {
                        cpu_ns: 500,
                        memory_bytes: 2000
                    }
                }],
            }]
        );
    }

    #[test]
    fn a_v2_hierarchy_reads_cpu_stat_memory_current_and_meminfo_at_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let (root, proc) = (dir.path().join("cg"), dir.path().join("proc"));
        write(root.join("cgroup.controllers"), "cpu memory pids\n");
        write(root.join("memory.stat"), "anon 1\ninactive_file 1024\n");
        write(proc.join("meminfo"), "MemTotal: 8 kB\nMemFree: 2 kB\n");
        write(proc.join("stat"), "cpu  10 0 10 100 0 0 0 0 0 0\n");
        write(
            root.join("orc/podu1/c1/cpu.stat"),
            "usage_usec 250\nuser_usec 200\n",
        );
        write(root.join("orc/podu1/c1/memory.current"), "10000\n");
        write(
            root.join("orc/podu1/c1/memory.stat"),
            "inactive_file 2000\n",
        );
        let reader = CgroupReader {
            root: root.clone(),
            proc_root: proc,
        };
        // No root cpu.stat (older kernels): /proc/stat.
        assert_eq!(
            reader.node(),
            Some(Usage {
                cpu_ns: 200_000_000,
                memory_bytes: 6 * 1024 - 1024
            })
        );
        write(root.join("cpu.stat"), "usage_usec 42\n");
        assert_eq!(reader.node().unwrap().cpu_ns, 42_000);
        assert_eq!(
            reader.usage("/orc/podu1/c1"),
            Some(Usage {
                cpu_ns: 250_000,
                memory_bytes: 8000
            })
        );
        assert_eq!(reader.usage("/orc/podu2"), None);
    }

    #[test]
    fn render_uses_upstream_names_labels_and_millisecond_timestamps() {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&Utc);
        let sample = Sample {
            at,
            node: Some(Usage {
                cpu_ns: 2_500_000_000,
                memory_bytes: 1 << 20,
            }),
            pods: vec![PodUsage {
                namespace: "ns".into(),
                name: "p\"q".into(),
                pod: None,
                containers: vec![ContainerUsage {
                    name: "c".into(),
                    usage: Usage {
                        cpu_ns: 1_000_000,
                        memory_bytes: 4096,
                    },
                }],
            }],
        };
        let text = render(&sample);
        let ts = at.timestamp_millis();
        assert!(text.contains(&format!(
            "container_cpu_usage_seconds_total{{container=\"c\",namespace=\"ns\",pod=\"p\\\"q\"}} 0.001 {ts}\n"
        )));
        assert!(text.contains(&format!(
            "container_memory_working_set_bytes{{container=\"c\",namespace=\"ns\",pod=\"p\\\"q\"}} 4096 {ts}\n"
        )));
        assert!(text.contains(&format!("node_cpu_usage_seconds_total 2.5 {ts}\n")));
        assert!(text.contains(&format!("node_memory_working_set_bytes 1048576 {ts}\n")));
        assert!(text.contains("# TYPE pod_cpu_usage_seconds_total counter\n"));
        assert!(
            !text.contains("pod_cpu_usage_seconds_total{"),
            "no pod cgroup read"
        );
        assert!(text.ends_with("resource_scrape_error 0\n"));
    }
}
