//! The cache's side of a pod's own placement rules: the PodTopologySpread and
//! InterPodAffinity states of one scheduling attempt and their scores, built from the
//! cache's placed pods (pods without rules never get here: see `Cache::select_node`).

use serde_json::Value;

use super::info::{NodeInfo, PodInfo};
use super::pod_affinity::{self, AffinityFilter, Incoming};
use super::scores::RawScores;
use super::topology_spread::{self, SpreadFilter};
use super::{Cache, Placed};
use crate::api::object;
use crate::api::selector::LabelSelector;

impl Cache {
    /// The placed pods of namespace `ns` matching `selector`, per node index (kept
    /// incrementally in the spread groups, as the default spreading's).
    pub(super) fn per_node_counts(&mut self, ns: &str, selector: &LabelSelector) -> Vec<u32> {
        let len = self.nodes.len();
        let Cache {
            groups,
            placed,
            node_index,
            ..
        } = self;
        let group = groups.group(
            ns,
            selector,
            placed.values().filter_map(|p| {
                let i = *node_index.get(&p.node)?;
                Some((
                    object::namespace(&p.obj).unwrap_or(""),
                    object::labels(&p.obj),
                    i,
                ))
            }),
        );
        (0..len).map(|i| group.on_node(i)).collect()
    }

    /// Every known node with its index.
    fn known(&self) -> Vec<(usize, &NodeInfo)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i, e.info.as_ref()?)))
            .collect()
    }

    /// The PodTopologySpread filter of a pod with `DoNotSchedule` constraints.
    pub(super) fn spread_filter<'p>(
        &self,
        obj: &Value,
        pod: &'p PodInfo,
        counts: &[Vec<u32>],
    ) -> Option<SpreadFilter<'p>> {
        if !pod.spread_constraints.iter().any(|c| c.hard) {
            return None;
        }
        let per_node: Vec<Box<dyn Fn(usize) -> u32 + '_>> = counts
            .iter()
            .map(|c| Box::new(move |i: usize| c.get(i).copied().unwrap_or(0)) as Box<_>)
            .collect();
        let refs: Vec<&dyn Fn(usize) -> u32> = per_node.iter().map(|b| b.as_ref()).collect();
        Some(SpreadFilter::new(
            pod,
            object::labels(obj),
            &pod.spread_constraints,
            &self.known(),
            &refs,
        ))
    }

    /// The placed pods InterPodAffinity reads: those with terms, or all of them.
    fn placed_for_affinity<'a>(
        &'a self,
        only_with_terms: bool,
    ) -> impl Iterator<Item = pod_affinity::PlacedPod<'a>> + 'a {
        let keys: Box<dyn Iterator<Item = &Placed> + 'a> = if only_with_terms {
            Box::new(self.with_affinity.iter().filter_map(|k| self.placed.get(k)))
        } else {
            Box::new(self.placed.values())
        };
        keys.filter_map(|p| {
            let i = *self.node_index.get(&p.node)?;
            Some(pod_affinity::PlacedPod {
                ns: object::namespace(&p.obj).unwrap_or(""),
                labels: object::labels(&p.obj),
                node: self.nodes[i].info.as_ref()?,
                affinity: p.info.pod_affinity.as_deref(),
            })
        })
    }

    /// The InterPodAffinity filter, when the pod has required terms or placed pods have
    /// required anti-affinity that selects it.
    pub(super) fn affinity_filter<'p>(
        &self,
        obj: &'p Value,
        pod: &'p PodInfo,
    ) -> Option<AffinityFilter<'p>> {
        let own = pod.pod_affinity.as_deref().is_some_and(|a| a.filters());
        if !own && self.with_affinity.is_empty() {
            return None;
        }
        let incoming = Incoming {
            ns: object::namespace(obj).unwrap_or(""),
            labels: object::labels(obj),
            affinity: pod.pod_affinity.as_deref(),
        };
        let all = self.placed_for_affinity(!own);
        let filter = AffinityFilter::new(
            incoming,
            self.placed_for_affinity(true),
            all,
            &self.namespaces,
        );
        (!filter.is_trivial()).then_some(filter)
    }

    /// Fills in the score of the pod's own `ScheduleAnyway` constraints.
    pub(super) fn score_own_spread(
        &self,
        pod: &PodInfo,
        counts: &[Vec<u32>],
        feasible: &mut [(usize, RawScores)],
    ) {
        let per_node: Vec<Box<dyn Fn(usize) -> u32 + '_>> = counts
            .iter()
            .map(|c| Box::new(move |i: usize| c.get(i).copied().unwrap_or(0)) as Box<_>)
            .collect();
        let refs: Vec<&dyn Fn(usize) -> u32> = per_node.iter().map(|b| b.as_ref()).collect();
        let nodes: Vec<(usize, &NodeInfo)> = feasible
            .iter()
            .filter_map(|(i, _)| Some((*i, self.nodes[*i].info.as_ref()?)))
            .collect();
        if nodes.len() != feasible.len() {
            return;
        }
        let Some(scores) = topology_spread::soft_scores(
            pod,
            &pod.spread_constraints,
            &nodes,
            &self.known(),
            &refs,
        ) else {
            return;
        };
        for ((_, raw), score) in feasible.iter_mut().zip(scores) {
            raw.pod_spread = Some(score);
        }
    }

    /// Fills in InterPodAffinity's score: the pod's preferred terms, and the placed
    /// pods' terms that select it. Nothing to do (and nothing read) for a pod without
    /// preferred terms while no placed pod has terms.
    pub(super) fn score_inter_pod_affinity(
        &self,
        obj: &Value,
        pod: &PodInfo,
        feasible: &mut [(usize, RawScores)],
    ) {
        let prefers = pod
            .pod_affinity
            .as_deref()
            .is_some_and(|a| !a.preferred.is_empty() || !a.preferred_anti.is_empty());
        if !prefers && self.with_affinity.is_empty() {
            return;
        }
        let incoming = Incoming {
            ns: object::namespace(obj).unwrap_or(""),
            labels: object::labels(obj),
            affinity: pod.pod_affinity.as_deref(),
        };
        let domains = pod_affinity::domain_scores(
            incoming,
            self.placed_for_affinity(true),
            self.placed_for_affinity(!prefers),
            &self.namespaces,
        );
        if domains.is_empty() {
            return;
        }
        let raw: Vec<i64> = feasible
            .iter()
            .map(|(i, _)| {
                self.nodes[*i]
                    .info
                    .as_ref()
                    .map_or(0, |n| pod_affinity::node_score(n, &domains))
            })
            .collect();
        for ((_, r), score) in feasible.iter_mut().zip(pod_affinity::normalize(&raw)) {
            r.inter_pod_affinity = score;
        }
    }
}
