//! The JSONPath subset custom resources' printer columns use (kubectl's template syntax
//! without the braces): fields (`.spec.replicas`, `['app.kubernetes.io/name']`), indexes
//! (`[0]`, `[-1]`), wildcards (`[*]`, `.*`) and filters (`[?(@.type=="Ready")]`).

use serde_json::Value;

/// A parsed path.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    /// `[?(@.a.b == "x")]` (or `!=`; without an operator: the field exists).
    Filter {
        path: Vec<String>,
        op: Option<(bool, Value)>,
    },
}

/// Why a path does not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("unsupported JSONPath {path:?}: {reason}")]
pub struct JsonPathError {
    pub path: String,
    pub reason: String,
}

impl JsonPath {
    pub fn parse(path: &str) -> Result<JsonPath, JsonPathError> {
        let fail = |reason: &str| JsonPathError {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let text = path.trim();
        let text = text
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(text);
        let text = text.strip_prefix('$').unwrap_or(text);
        let chars: Vec<char> = text.chars().collect();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    i += 1;
                    let start = i;
                    while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                        i += 1;
                    }
                    let name: String = chars[start..i].iter().collect();
                    match name.as_str() {
                        "" => return Err(fail("empty field name")),
                        "*" => steps.push(Step::Wildcard),
                        _ => steps.push(Step::Field(name)),
                    }
                }
                '[' => {
                    let close = matching_bracket(&chars, i).ok_or_else(|| fail("unclosed ["))?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    steps.push(bracket_step(inner.trim()).ok_or_else(|| fail("bad [...]"))?);
                    i = close + 1;
                }
                _ if steps.is_empty() && i == 0 => {
                    // `spec.replicas` without the leading dot.
                    let start = i;
                    while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                        i += 1;
                    }
                    steps.push(Step::Field(chars[start..i].iter().collect()));
                }
                c => return Err(fail(&format!("unexpected {c:?}"))),
            }
        }
        if steps.is_empty() {
            return Err(fail("empty path"));
        }
        Ok(JsonPath { steps })
    }

    /// Every value the path reaches in `root`, in document order.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in current {
                match step {
                    Step::Field(name) => next.extend(v.get(name.as_str())),
                    Step::Index(i) => {
                        if let Some(items) = v.as_array() {
                            let idx = if *i < 0 { items.len() as i64 + i } else { *i };
                            next.extend(usize::try_from(idx).ok().and_then(|i| items.get(i)));
                        }
                    }
                    Step::Wildcard => match v {
                        Value::Array(items) => next.extend(items.iter()),
                        Value::Object(map) => next.extend(map.values()),
                        _ => {}
                    },
                    Step::Filter { path, op } => {
                        let Some(items) = v.as_array() else { continue };
                        next.extend(items.iter().filter(|item| {
                            let found = path.iter().try_fold(*item, |o, f| o.get(f.as_str()));
                            match (found, op) {
                                (None, _) => false,
                                (Some(_), None) => true,
                                (Some(x), Some((equal, want))) => (x == want) == *equal,
                            }
                        }));
                    }
                }
            }
            current = next;
        }
        current
    }

    /// The first value the path reaches.
    pub fn first<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.find(root).into_iter().next()
    }
}

fn matching_bracket(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|t| t.strip_suffix('"')))
}

fn bracket_step(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::Wildcard);
    }
    if let Some(name) = unquote(inner) {
        return Some(Step::Field(name.to_string()));
    }
    if let Ok(i) = inner.parse::<i64>() {
        return Some(Step::Index(i));
    }
    let expr = inner.strip_prefix("?(")?.strip_suffix(')')?.trim();
    let (lhs, op) = match expr.find("==").or_else(|| expr.find("!=")) {
        Some(at) => {
            let equal = &expr[at..at + 2] == "==";
            let rhs = expr[at + 2..].trim();
            let want = match unquote(rhs) {
                Some(s) => Value::String(s.to_string()),
                None => serde_json::from_str(rhs).ok()?,
            };
            (expr[..at].trim(), Some((equal, want)))
        }
        // Another operator (`<`, `=~`, a lone `=`) is not supported.
        None if expr.contains(['=', '<', '>', '!']) => return None,
        None => (expr, None),
    };
    let path = lhs
        .strip_prefix("@.")?
        .split('.')
        .map(String::from)
        .collect::<Vec<_>>();
    (!path.iter().any(String::is_empty)).then_some(Step::Filter { path, op })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn first(path: &str, v: &Value) -> Option<Value> {
        JsonPath::parse(path).unwrap().first(v).cloned()
    }

    #[test]
    fn fields_indexes_wildcards_and_filters_find_values() {
        let obj = json!({
            "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"replicas": 3, "ports": [{"port": 80}, {"port": 443}]},
            "status": {"conditions": [
                {"type": "Synced", "status": "False"},
                {"type": "Ready", "status": "True"}]}
        });
        assert_eq!(first(".spec.replicas", &obj), Some(json!(3)));
        assert_eq!(first("spec.replicas", &obj), Some(json!(3)));
        assert_eq!(first("{.spec.replicas}", &obj), Some(json!(3)));
        assert_eq!(
            first(".metadata.labels['app.kubernetes.io/name']", &obj),
            Some(json!("web"))
        );
        assert_eq!(first(".spec.ports[1].port", &obj), Some(json!(443)));
        assert_eq!(first(".spec.ports[-1].port", &obj), Some(json!(443)));
        let all = JsonPath::parse(".spec.ports[*].port").unwrap();
        assert_eq!(all.find(&obj), [&json!(80), &json!(443)]);
        assert_eq!(
            first(".status.conditions[?(@.type==\"Ready\")].status", &obj),
            Some(json!("True"))
        );
        assert_eq!(
            first(".status.conditions[?(@.type != 'Ready')].status", &obj),
            Some(json!("False"))
        );
        assert_eq!(first(".spec.missing.deeper", &obj), None);
        assert_eq!(first(".spec.ports[9]", &obj), None);
    }

    #[test]
    fn malformed_paths_are_refused() {
        for bad in [
            "",
            ".",
            ".spec..x",
            ".spec[",
            ".spec[?(@.a=)]",
            ".spec[?(x)]",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad:?}");
        }
    }
}
