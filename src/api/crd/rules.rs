//! Running a schema's `x-kubernetes-validations` over an object (upstream `cel.Validator`):
//! which rules see which value, `oldSelf` correlation, messages, reasons and the cost budget.

use serde_json::Value;

use super::cel::{self, Outcome, Sizes, PER_CALL_LIMIT, RUNTIME_COST_BUDGET};
use super::schema::{Rule, Structural};
use super::FieldPath;
use crate::api::validation::{go_quote, FieldError};

/// Upstream `celconfig.MaxEvaluatedMessageExpressionSizeBytes`.
const MAX_MESSAGE_EXPRESSION_BYTES: usize = 5 * 1024;

/// Evaluates every rule in `schema` over `obj`; `old` enables transition rules.
pub fn validate_rules(schema: &Structural, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    if !schema.has_rules() {
        return Vec::new();
    }
    let mut run = Run {
        errs: Vec::new(),
        budget: RUNTIME_COST_BUDGET,
        exhausted: false,
    };
    run.node(schema, obj, old, &FieldPath::root(), true);
    run.errs
}

struct Run {
    errs: Vec<FieldError>,
    budget: u64,
    exhausted: bool,
}

impl Run {
    fn node(
        &mut self,
        s: &Structural,
        v: &Value,
        old: Option<&Value>,
        p: &FieldPath,
        resource_root: bool,
    ) {
        if self.exhausted || v.is_null() {
            return;
        }
        let old = old.filter(|o| !o.is_null());
        self.rules(s, &s.rules, v, old, p, resource_root);
        for branch in &s.all_of {
            self.rules(s, &branch.rules, v, old, p, resource_root);
        }
        match v {
            Value::Object(m) => {
                let correlatable = s.x_map_type.as_deref() != Some("atomic");
                for (k, x) in m {
                    let old_x = if correlatable {
                        old.and_then(|o| o.get(k))
                    } else {
                        None
                    };
                    if let Some(ps) = s.properties.get(k) {
                        self.node(ps, x, old_x, &p.child(k), ps.x_embedded_resource);
                    } else if let Some(ap) = s.additional_schema() {
                        self.node(ap, x, old_x, &p.key(k), ap.x_embedded_resource);
                    }
                }
            }
            Value::Array(items) => {
                let Some(is) = s.items.as_deref() else { return };
                let old_items = old.and_then(Value::as_array);
                for (i, item) in items.iter().enumerate() {
                    let old_item = match (s.x_list_type.as_deref(), old_items) {
                        (Some("map"), Some(olds)) => olds
                            .iter()
                            .find(|o| same_map_keys(&s.x_list_map_keys, o, item)),
                        _ => None,
                    };
                    self.node(is, item, old_item, &p.index(i), is.x_embedded_resource);
                }
            }
            _ => {}
        }
    }

    fn rules(
        &mut self,
        s: &Structural,
        rules: &[Rule],
        v: &Value,
        old: Option<&Value>,
        p: &FieldPath,
        resource_root: bool,
    ) {
        if rules.is_empty() {
            return;
        }
        let type_ = go_quote(&s.type_);
        let sizes = Sizes::of(v).max(old.map(Sizes::of).unwrap_or_default());
        for rule in rules {
            if self.exhausted {
                return;
            }
            let compiled = match &rule.compiled {
                None => continue,
                Some(Err(e)) => {
                    self.errs.push(FieldError::invalid_rendered(
                        p.field.clone(),
                        type_.clone(),
                        format!("rule compile error: {e}"),
                    ));
                    continue;
                }
                Some(Ok(c)) => c,
            };
            let optional_old_self = rule.optional_old_self == Some(true);
            if compiled.uses_old_self && old.is_none() && !optional_old_self {
                // Transition rules need a previous value to compare with.
                continue;
            }
            let cost = compiled.cost_bound(sizes);
            if cost > PER_CALL_LIMIT {
                self.errs.push(FieldError::invalid_rendered(
                    p.field.clone(),
                    type_.clone(),
                    format!(
                        "'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: {}",
                        rule_error_string(rule)
                    ),
                ));
                self.exhausted = true;
                return;
            }
            if cost > self.budget {
                self.errs.push(FieldError::invalid_rendered(
                    p.field.clone(),
                    type_.clone(),
                    "validation failed due to running out of cost budget, no further validation rules will be run",
                ));
                self.exhausted = true;
                return;
            }
            self.budget -= cost;
            let self_val = cel::to_cel(v, Some(s), resource_root);
            let old_val = old.map(|o| cel::to_cel(o, Some(s), resource_root));
            match cel::check(compiled, self_val, old_val, optional_old_self) {
                Outcome::Pass => {}
                Outcome::Error(e)
                    if e.starts_with("no such overload") || e.contains("NoSuchOverload") =>
                {
                    self.errs.push(FieldError::invalid_rendered(
                        p.field.clone(),
                        type_.clone(),
                        format!(
                            "'{e}': call arguments did not match a supported operator, function or macro signature for rule: {}",
                            rule_error_string(rule)
                        ),
                    ));
                }
                Outcome::Error(e) => {
                    self.errs.push(FieldError::invalid_rendered(
                        p.field.clone(),
                        type_.clone(),
                        format!("{e} evaluating rule: {}", rule_error_string(rule)),
                    ));
                }
                Outcome::Fail | Outcome::NotBool => {
                    let at = match rule.field_path.trim() {
                        "" => p.clone(),
                        fp => normalize_field_path(s, fp)
                            .map(|rel| append(p, &rel))
                            .unwrap_or_else(|| p.clone()),
                    };
                    let detail = self
                        .message_expression(rule, s, v, old, resource_root, sizes)
                        .unwrap_or_else(|| rule_message_or_default(rule));
                    self.errs.push(error_for_reason(
                        rule.reason.as_deref(),
                        &at,
                        &type_,
                        detail,
                    ));
                }
            }
        }
    }

    /// Upstream `evalMessageExpression`: a usable message, or `None` to fall back.
    fn message_expression(
        &mut self,
        rule: &Rule,
        s: &Structural,
        v: &Value,
        old: Option<&Value>,
        resource_root: bool,
        sizes: Sizes,
    ) -> Option<String> {
        let Some(Ok(compiled)) = &rule.compiled_message else {
            return None;
        };
        let cost = compiled.cost_bound(sizes);
        if cost > self.budget || cost > PER_CALL_LIMIT {
            return None;
        }
        self.budget -= cost;
        let self_val = cel::to_cel(v, Some(s), resource_root);
        let old_val = old.map(|o| cel::to_cel(o, Some(s), resource_root));
        let result = cel::evaluate(compiled, self_val, old_val, false).ok()?;
        let msg = cel::as_message(&result)?.trim().to_string();
        if msg.is_empty() || msg.contains('\n') || msg.len() > MAX_MESSAGE_EXPRESSION_BYTES {
            return None;
        }
        Some(msg)
    }
}

fn same_map_keys(keys: &[String], a: &Value, b: &Value) -> bool {
    keys.iter().all(|k| a.get(k) == b.get(k))
}

fn rule_error_string(rule: &Rule) -> String {
    if rule.message.is_empty() {
        rule.rule.trim().to_string()
    } else {
        rule.message.trim().to_string()
    }
}

fn rule_message_or_default(rule: &Rule) -> String {
    if rule.message.is_empty() {
        format!("failed rule: {}", rule_error_string(rule))
    } else {
        rule.message.trim().to_string()
    }
}

/// Upstream `fieldErrorForReason`.
fn error_for_reason(
    reason: Option<&str>,
    p: &FieldPath,
    type_: &str,
    detail: String,
) -> FieldError {
    match reason {
        Some("FieldValueForbidden") => FieldError::forbidden(p.field.clone(), detail),
        Some("FieldValueRequired") => FieldError::required(p.field.clone(), detail),
        Some("FieldValueDuplicate") => FieldError::duplicate_rendered(p.field.clone(), type_),
        _ => FieldError::invalid_rendered(p.field.clone(), type_, detail),
    }
}

/// One step of a rule's `fieldPath`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Child(String),
    Key(String),
}

fn append(base: &FieldPath, steps: &[Step]) -> FieldPath {
    steps.iter().fold(base.clone(), |p, s| match s {
        Step::Child(c) => p.child(c),
        Step::Key(k) => p.key(k),
    })
}

/// Upstream `ValidFieldPath`: `.a.b`, `['key']` steps into properties (named fields) or
/// `additionalProperties` (keys) of `s`; `None` when the path does not fit the schema.
pub fn normalize_field_path(s: &Structural, path: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    let mut node = s;
    let mut rest = path;
    while !rest.is_empty() {
        let name = if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            rest = &r[end..];
            r[..end].to_string()
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']")?;
            rest = &r[end + 2..];
            r[..end].replace("\\'", "'").replace("\\\\", "\\")
        } else {
            return None;
        };
        if name.is_empty() {
            return None;
        }
        if !node.properties.is_empty() {
            node = node.properties.get(&name)?;
            steps.push(Step::Child(name));
        } else if let Some(ap) = node.additional_schema() {
            node = ap;
            steps.push(Step::Key(name));
        } else {
            return None;
        }
    }
    Some(steps)
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
