//! STUB (replaced by the api-pure branch).
use serde_json::{Map, Value};
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(String);
#[derive(Debug, Clone, Default)]
pub struct LabelSelector { reqs: Vec<(String, String)> }
impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut reqs = vec![];
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| SelectorError(format!("unable to parse requirement: {part}")))?;
            reqs.push((k.trim().to_string(), v.trim_start_matches('=').trim().to_string()));
        }
        Ok(LabelSelector { reqs })
    }
    pub fn from_map(m: &Map<String, Value>) -> LabelSelector { LabelSelector { reqs: m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect() } }
    pub fn is_empty(&self) -> bool { self.reqs.is_empty() }
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.reqs.iter().all(|(k, v)| labels.and_then(|l| l.get(k)).and_then(|x| x.as_str()) == Some(v.as_str()))
    }
}
#[derive(Debug, Clone, Default)]
pub struct FieldSelector { reqs: Vec<(String, String)> }
impl FieldSelector {
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> { let l = LabelSelector::parse(s)?; Ok(FieldSelector { reqs: l.reqs }) }
    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|(k, v)| { let p = format!("/{}", k.replace('.', "/")); obj.pointer(&p).and_then(|x| x.as_str()).unwrap_or("") == v })
    }
}
pub fn check_supported(_kind: &str, _sel: &FieldSelector) -> Result<(), SelectorError> { Ok(()) }
impl LabelSelector {
    pub fn from_k8s(sel: &Value) -> Result<LabelSelector, SelectorError> { Ok(sel.get("matchLabels").and_then(|m| m.as_object()).map(LabelSelector::from_map).unwrap_or_default()) }
}
impl std::fmt::Display for LabelSelector { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{}", self.reqs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")) } }
