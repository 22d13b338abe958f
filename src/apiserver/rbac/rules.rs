//! Policy rule matching as upstream's RBAC authorizer (`RuleAllows`) and escalation check
//! (`Covers`, `BreakdownRule`, `CompactRules`, `CompactString`): no I/O, no state.

use k8s_openapi::api::rbac::v1::PolicyRule;

use super::{Attributes, ResourceAttrs};

const ALL: &str = "*";

fn list(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or(&[])
}

fn has(items: &[String], wanted: &str) -> bool {
    items.iter().any(|i| i == wanted)
}

fn has_all(items: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| has(items, w))
}

fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == ALL || v == verb)
}

fn group_matches(rule: &PolicyRule, group: &str) -> bool {
    list(&rule.api_groups)
        .iter()
        .any(|g| g == ALL || g == group)
}

/// `resource`, `resource/subresource`, `*`, or `*/subresource` (upstream
/// `ResourceMatches`).
fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    list(&rule.resources).iter().any(|r| {
        if r == ALL {
            return true;
        }
        if subresource.is_empty() {
            return r == resource;
        }
        match r.split_once('/') {
            Some((res, sub)) => sub == subresource && (res == resource || res == ALL),
            None => false,
        }
    })
}

fn name_matches(rule: &PolicyRule, name: &str) -> bool {
    let names = list(&rule.resource_names);
    names.is_empty() || has(names, name)
}

/// A non-resource URL rule: exact, `*`, or a prefix ending in `*`.
fn url_matches(rule: &PolicyRule, path: &str) -> bool {
    list(&rule.non_resource_urls).iter().any(|u| {
        u == ALL
            || u == path
            || u.strip_suffix('*')
                .is_some_and(|prefix| path.starts_with(prefix))
    })
}

/// Whether `rule` allows the request `attrs` (upstream `RuleAllows`).
pub fn rule_allows(rule: &PolicyRule, attrs: &Attributes) -> bool {
    if !verb_matches(rule, &attrs.verb) {
        return false;
    }
    match (&attrs.resource, &attrs.path) {
        (Some(r), _) => resource_rule_allows(rule, r),
        (None, Some(path)) => url_matches(rule, path),
        (None, None) => false,
    }
}

fn resource_rule_allows(rule: &PolicyRule, r: &ResourceAttrs) -> bool {
    group_matches(rule, &r.group)
        && resource_matches(rule, &r.resource, &r.subresource)
        && name_matches(rule, &r.name)
}

/// The rule split into atomic rules: one group, resource, verb and name each (upstream
/// `BreakdownRule`).
pub fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| Some(vec![s.clone()]);
    let mut out = Vec::new();
    for group in list(&rule.api_groups) {
        for resource in list(&rule.resources) {
            for verb in &rule.verbs {
                let names = list(&rule.resource_names);
                let base = PolicyRule {
                    api_groups: one(group),
                    resources: one(resource),
                    verbs: vec![verb.clone()],
                    ..Default::default()
                };
                if names.is_empty() {
                    out.push(base);
                } else {
                    out.extend(names.iter().map(|n| PolicyRule {
                        resource_names: one(n),
                        ..base.clone()
                    }));
                }
            }
        }
    }
    for url in list(&rule.non_resource_urls) {
        for verb in &rule.verbs {
            out.push(PolicyRule {
                non_resource_urls: one(url),
                verbs: vec![verb.clone()],
                ..Default::default()
            });
        }
    }
    out
}

fn resource_covers_all(owner: &[String], wanted: &[String]) -> bool {
    if has(owner, ALL) || has_all(owner, wanted) {
        return true;
    }
    wanted.iter().all(|path| {
        has(owner, path)
            || path
                .split_once('/')
                .is_some_and(|(_, sub)| has(owner, &format!("*/{sub}")))
    })
}

fn url_covers(owner: &str, sub: &str) -> bool {
    owner == sub
        || owner
            .strip_suffix('*')
            .is_some_and(|prefix| sub.starts_with(prefix.trim_end_matches('*')))
}

/// Whether `owner` grants everything `sub` does (upstream `ruleCovers`).
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, ALL) || has_all(&owner.verbs, &sub.verbs);
    let groups = has(list(&owner.api_groups), ALL)
        || has_all(list(&owner.api_groups), list(&sub.api_groups));
    let resources = resource_covers_all(list(&owner.resources), list(&sub.resources));
    let urls = list(&sub.non_resource_urls).iter().all(|path| {
        list(&owner.non_resource_urls)
            .iter()
            .any(|o| url_covers(o, path))
    });
    let owner_names = list(&owner.resource_names);
    let names = owner_names.is_empty()
        || (!list(&sub.resource_names).is_empty()
            && has_all(owner_names, list(&sub.resource_names)));
    verbs && groups && resources && urls && names
}

/// The atomic rules of `wanted` that no rule of `owner` covers (upstream `Covers`);
/// empty when `owner` holds all of `wanted`.
pub fn uncovered(owner: &[PolicyRule], wanted: &[PolicyRule]) -> Vec<PolicyRule> {
    wanted
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect()
}

/// Merges atomic rules on one resource (and at most one name) into one rule with all
/// their verbs (upstream `CompactRules`).
pub fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    let mut simple: Vec<PolicyRule> = Vec::new();
    for rule in rules {
        let is_simple = list(&rule.resource_names).len() <= 1
            && list(&rule.non_resource_urls).is_empty()
            && list(&rule.api_groups).len() == 1
            && list(&rule.resources).len() == 1;
        if !is_simple {
            out.push(rule);
            continue;
        }
        let same = simple.iter_mut().find(|s| {
            s.api_groups == rule.api_groups
                && s.resources == rule.resources
                && list(&s.resource_names) == list(&rule.resource_names)
        });
        match same {
            Some(s) => s.verbs.extend(rule.verbs),
            None => simple.push(rule),
        }
    }
    out.extend(simple);
    out
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| crate::api::validation::go_quote(s))
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// One rule as upstream prints it in escalation errors (`CompactString`):
/// `{APIGroups:[""], Resources:["pods"], Verbs:["get"]}`.
pub fn compact_string(rule: &PolicyRule) -> String {
    let mut parts = Vec::new();
    for (label, items) in [
        ("APIGroups", list(&rule.api_groups)),
        ("Resources", list(&rule.resources)),
        ("NonResourceURLs", list(&rule.non_resource_urls)),
        ("ResourceNames", list(&rule.resource_names)),
        ("Verbs", rule.verbs.as_slice()),
    ] {
        if !items.is_empty() {
            parts.push(format!("{label}:{}", go_list(items)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// Go's `%q` of a `[]string`, for the groups in escalation errors.
pub fn go_string_list(items: &[String]) -> String {
    go_list(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| (!s.is_empty()).then(|| s.iter().map(|x| x.to_string()).collect());
        PolicyRule {
            verbs: verbs.iter().map(|x| x.to_string()).collect(),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: v(names),
            non_resource_urls: None,
        }
    }

    fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: verbs.iter().map(|x| x.to_string()).collect(),
            non_resource_urls: Some(urls.iter().map(|x| x.to_string()).collect()),
            ..Default::default()
        }
    }

    fn res(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes::resource(verb, "default", group, resource, sub, name)
    }

    #[test]
    fn wildcards_subresources_and_names_match_as_upstream() {
        let pods = rule(&["get", "list"], &[""], &["pods"], &[]);
        assert!(rule_allows(&pods, &res("get", "", "pods", "", "p")));
        assert!(!rule_allows(&pods, &res("delete", "", "pods", "", "p")));
        assert!(!rule_allows(&pods, &res("get", "apps", "pods", "", "p")));
        assert!(!rule_allows(&pods, &res("get", "", "pods", "log", "p")));
        let all = rule(&["*"], &["*"], &["*"], &[]);
        assert!(rule_allows(
            &all,
            &res("escalate", "x.io", "things", "status", "n")
        ));
        let logs = rule(&["get"], &[""], &["pods/log"], &[]);
        assert!(rule_allows(&logs, &res("get", "", "pods", "log", "p")));
        assert!(!rule_allows(&logs, &res("get", "", "pods", "", "p")));
        let any_status = rule(&["update"], &["apps"], &["*/status"], &[]);
        assert!(rule_allows(
            &any_status,
            &res("update", "apps", "deployments", "status", "d")
        ));
        assert!(!rule_allows(
            &any_status,
            &res("update", "apps", "deployments", "", "d")
        ));
        let named = rule(&["get"], &[""], &["configmaps"], &["a"]);
        assert!(rule_allows(&named, &res("get", "", "configmaps", "", "a")));
        assert!(!rule_allows(&named, &res("get", "", "configmaps", "", "b")));
        assert!(!rule_allows(&named, &res("list", "", "configmaps", "", "")));
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_star_prefix() {
        let r = url_rule(&["get"], &["/healthz", "/openapi/*"]);
        let path = |p: &str| Attributes::non_resource("get", p);
        assert!(rule_allows(&r, &path("/healthz")));
        assert!(!rule_allows(&r, &path("/healthz/ready")));
        assert!(rule_allows(&r, &path("/openapi/v3")));
        assert!(rule_allows(&r, &path("/openapi/")));
        assert!(!rule_allows(&r, &path("/openapi")));
        assert!(!rule_allows(
            &r,
            &Attributes::non_resource("post", "/healthz")
        ));
        assert!(!rule_allows(&r, &res("get", "", "pods", "", "")));
    }

    #[test]
    fn covers_finds_what_the_owner_lacks_and_compacts_it() {
        let owner = [rule(&["get", "list"], &[""], &["pods"], &[])];
        assert!(uncovered(&owner, &[rule(&["get"], &[""], &["pods"], &["a"])]).is_empty());
        let missing = uncovered(
            &owner,
            &[rule(
                &["get", "delete", "watch"],
                &[""],
                &["pods", "secrets"],
                &[],
            )],
        );
        let mut shown: Vec<String> = compact(missing).iter().map(compact_string).collect();
        shown.sort();
        assert_eq!(
            shown,
            [
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete" "watch"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete" "watch"]}"#,
            ]
        );
        let named_owner = [rule(&["get"], &[""], &["pods"], &["a"])];
        assert_eq!(
            uncovered(&named_owner, &[rule(&["get"], &[""], &["pods"], &[])]).len(),
            1
        );
        let status_owner = [rule(&["*"], &["*"], &["*/status"], &[])];
        assert!(uncovered(
            &status_owner,
            &[rule(&["get"], &["apps"], &["deployments/status"], &[])]
        )
        .is_empty());
        let urls = [url_rule(&["get"], &["/api/*"])];
        assert!(uncovered(&urls, &[url_rule(&["get"], &["/api/v1"])]).is_empty());
        assert_eq!(
            compact_string(&uncovered(&urls, &[url_rule(&["get"], &["/metrics"])])[0]),
            r#"{NonResourceURLs:["/metrics"], Verbs:["get"]}"#
        );
    }
}
