//! `x-kubernetes-validations`: compiling CEL rules once, turning JSON into CEL values the
//! way upstream types them from the schema, and evaluating a rule within a cost bound.
//!
//! Built on the `cel` crate (stdlib macros `has`/`all`/`exists`/`exists_one`/`map`/`filter`,
//! `size`, string `matches`/`startsWith`/`endsWith`/`contains`, `timestamp`/`duration`
//! and their comparisons and accessors, optional types) with Kubernetes' libraries as
//! [`crate::api::cel_lib`] registers them: strings and lists extensions, `sets`, the
//! Kubernetes `lists`, `regex`, `quantity`, `url`, `ip`, `cidr` and `format` libraries.
//! Strings of `format: duration`, `date`, `date-time` and `byte` are durations,
//! timestamps and bytes, as upstream types them. Missing against upstream: type-checking
//! (only identifiers are checked at compile time; an unknown function or a wrong argument
//! type shows when a rule runs), the `authz` library, and cel-go's exact cost accounting.
//!
//! Cost: cel-go counts steps while it evaluates; this crate has no such hook, so a rule's
//! cost is bounded *before* it runs: every AST node costs 1, and the loop body of a
//! comprehension costs as many times as the longest collection it may range over, taken
//! as the longest list, map or (for rules that split or search strings) string in the
//! value the rule sees, times the number of concatenations in the rule. That bounds the
//! work a rule can do by a polynomial the caller can refuse up front.
//! The list library's functions count as one loop over their list, `sets.*` as two
//! (upstream's estimates are linear and the product of the two sizes).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError, Program, Value as CelValue};
use serde_json::Value;

use super::schema::Structural;
use crate::api::cel_lib;

/// Upstream `celconfig.PerCallLimit`: the most one rule evaluation may cost.
pub const PER_CALL_LIMIT: u64 = 1_000_000;
/// Upstream `celconfig.RuntimeCELCostBudget`: the most all rules on one object may cost.
pub const RUNTIME_COST_BUDGET: u64 = 10_000_000;

/// Names a rule may use besides its own comprehension variables.
const DECLARED: [&str; 2] = ["self", "oldSelf"];

/// The type names every expression may use.
const TYPE_NAMES: [&str; 12] = [
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
    "optional",
];

/// Functions whose work grows with the length of a string argument.
const STRING_SCANNING: [&str; 6] = [
    "split",
    "findAll",
    "replace",
    "join",
    "indexOf",
    "lastIndexOf",
];

/// Library functions that walk a whole list argument once, like a comprehension would.
const LIST_SCANNING: [&str; 6] = ["isSorted", "sum", "min", "max", "indexOf", "lastIndexOf"];

/// A compiled rule (or `messageExpression`) and what its evaluation needs to know.
#[derive(Debug)]
pub struct CompiledRule {
    program: Program,
    pub uses_old_self: bool,
    /// The names the expression reads from `variables` (`variables.name`).
    pub variables_used: Vec<String>,
    /// Loops nest this deep at most (0: no comprehension).
    depth: u32,
    /// AST nodes, each weighted by the loops around it: `weights[d]` nodes sit under `d` loops.
    weights: Vec<u64>,
    /// `+` operations (collections can grow by concatenation).
    concatenations: u64,
    scans_strings: bool,
}

fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        cel_lib::register(&mut env).expect("the libraries register once on a fresh environment");
        Arc::new(env)
    })
    .clone()
}

/// Compiles a rule; the error reads as upstream's compiler output (`ERROR: <input>:1:5: …`).
pub fn compile_rule(source: &str) -> Result<CompiledRule, String> {
    compile_with(source, &DECLARED)
}

/// Compiles an expression that may use the variables `declared` (besides the type names
/// and its own comprehension variables): the admission policies' environment.
pub fn compile_with(source: &str, declared: &[&str]) -> Result<CompiledRule, String> {
    let program = env().compile(source).map_err(|e| e.to_string())?;
    let mut shape = Shape::default();
    let mut scope: Vec<String> = declared
        .iter()
        .chain(TYPE_NAMES.iter())
        .map(|s| s.to_string())
        .collect();
    walk(program.expression(), 0, &mut scope, &mut shape)?;
    Ok(CompiledRule {
        uses_old_self: shape.uses_old_self,
        variables_used: std::mem::take(&mut shape.variables_used),
        depth: shape.weights.len().saturating_sub(1) as u32,
        weights: shape.weights,
        concatenations: shape.concatenations,
        scans_strings: shape.scans_strings,
        program,
    })
}

#[derive(Default)]
struct Shape {
    weights: Vec<u64>,
    concatenations: u64,
    uses_old_self: bool,
    scans_strings: bool,
    variables_used: Vec<String>,
}

fn walk(
    e: &IdedExpr,
    depth: usize,
    scope: &mut Vec<String>,
    shape: &mut Shape,
) -> Result<(), String> {
    if shape.weights.len() <= depth {
        shape.weights.resize(depth + 1, 0);
    }
    shape.weights[depth] += 1;
    match &e.expr {
        Expr::Ident(name) => {
            if name == "oldSelf" {
                shape.uses_old_self = true;
            }
            let declared = scope.iter().any(|v| v == name) || name.starts_with('@');
            if !declared {
                return Err(format!(
                    "ERROR: <input>:1:1: undeclared reference to '{name}' (in container '')"
                ));
            }
        }
        Expr::Call(call) => {
            if call.func_name == "_+_" {
                shape.concatenations += 1;
            }
            if STRING_SCANNING.contains(&call.func_name.as_str()) {
                shape.scans_strings = true;
            }
            // `ip.isCanonical(s)`: `ip` names the function's namespace, not a variable.
            let namespaced = call.target.as_ref().is_some_and(|t| {
                matches!(&t.expr, Expr::Ident(ns) if cel_lib::NAMESPACES.contains(&ns.as_str())
                    && !scope.iter().any(|v| v == ns))
            });
            if let Some(t) = call.target.as_ref().filter(|_| !namespaced) {
                walk(t, depth, scope, shape)?;
            }
            // Their cost as loops of their own: the list functions one pass over their
            // list, `sets.*` one list against the other (upstream estimates the product).
            let loops = match &call.target {
                Some(t) if namespaced => {
                    usize::from(matches!(&t.expr, Expr::Ident(ns) if ns == "sets")) * 2
                }
                Some(_) if LIST_SCANNING.contains(&call.func_name.as_str()) => 1,
                _ => 0,
            };
            if loops > 0 {
                if shape.weights.len() <= depth + loops {
                    shape.weights.resize(depth + loops + 1, 0);
                }
                shape.weights[depth + loops] += 1;
            }
            for a in &call.args {
                walk(a, depth, scope, shape)?;
            }
        }
        Expr::Select(sel) => {
            if matches!(&sel.operand.expr, Expr::Ident(n) if n == "variables")
                && !shape.variables_used.contains(&sel.field)
            {
                shape.variables_used.push(sel.field.clone());
            }
            walk(&sel.operand, depth, scope, shape)?
        }
        Expr::List(list) => {
            for el in &list.elements {
                walk(el, depth, scope, shape)?;
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(me) = &entry.expr {
                    walk(&me.key, depth, scope, shape)?;
                    walk(&me.value, depth, scope, shape)?;
                }
            }
        }
        Expr::Struct(st) => {
            for entry in &st.entries {
                if let EntryExpr::StructField(f) = &entry.expr {
                    walk(&f.value, depth, scope, shape)?;
                }
            }
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, depth, scope, shape)?;
            walk(&c.accu_init, depth, scope, shape)?;
            // The loop sees the accumulator and the iteration variables; the result only
            // the accumulator.
            let outer = scope.len();
            scope.push(c.accu_var.clone());
            scope.push(c.iter_var.clone());
            scope.extend(c.iter_var2.clone());
            walk(&c.loop_cond, depth + 1, scope, shape)?;
            walk(&c.loop_step, depth + 1, scope, shape)?;
            scope.truncate(outer + 1);
            walk(&c.result, depth, scope, shape)?;
            scope.truncate(outer);
        }
        Expr::Literal(_) | Expr::Unspecified => {}
    }
    Ok(())
}

impl CompiledRule {
    /// The most this rule can cost on `self`/`oldSelf` of these sizes.
    pub fn cost_bound(&self, sizes: Sizes) -> u64 {
        let longest = if self.scans_strings {
            sizes.longest_collection.max(sizes.longest_string)
        } else {
            sizes.longest_collection
        };
        let n = longest.max(1).saturating_mul(1 + self.concatenations);
        let mut total: u64 = 0;
        let mut factor: u64 = 1;
        for (d, w) in self.weights.iter().enumerate() {
            if d > 0 {
                factor = factor.saturating_mul(n);
            }
            total = total.saturating_add(w.saturating_mul(factor));
        }
        debug_assert!(self.depth as usize + 1 >= self.weights.len().min(1));
        total
    }
}

/// The sizes a rule's cost bound depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sizes {
    pub longest_collection: u64,
    pub longest_string: u64,
}

impl Sizes {
    pub fn of(v: &Value) -> Sizes {
        let mut s = Sizes::default();
        s.visit(v);
        s
    }

    pub fn max(self, other: Sizes) -> Sizes {
        Sizes {
            longest_collection: self.longest_collection.max(other.longest_collection),
            longest_string: self.longest_string.max(other.longest_string),
        }
    }

    fn visit(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.longest_string = self.longest_string.max(s.len() as u64),
            Value::Array(a) => {
                self.longest_collection = self.longest_collection.max(a.len() as u64);
                a.iter().for_each(|x| self.visit(x));
            }
            Value::Object(m) => {
                self.longest_collection = self.longest_collection.max(m.len() as u64);
                m.values().for_each(|x| self.visit(x));
            }
            _ => {}
        }
    }
}

/// What evaluating a rule gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Evaluation failed (`no such key: x`, a type error, …).
    Error(String),
    /// The result was not a boolean.
    NotBool,
}

/// Evaluates a compiled rule with `self` and, when given, `oldSelf`. With
/// `optional_old_self`, `oldSelf` is bound to an optional (`optional.none()` on create).
pub fn evaluate(
    rule: &CompiledRule,
    self_val: CelValue,
    old_self: Option<CelValue>,
    optional_old_self: bool,
) -> Result<CelValue, String> {
    let mut ctx = Context::with_env(env());
    ctx.add_variable_from_value("self", self_val);
    if optional_old_self {
        let wrapped = wrap_optional(old_self)?;
        ctx.add_variable_from_value("oldSelf", wrapped);
    } else if let Some(old) = old_self {
        ctx.add_variable_from_value("oldSelf", old);
    }
    rule.program.execute(&ctx).map_err(error_message)
}

/// An evaluation error as upstream words it: a library function's own message, without
/// the crate's `Error executing function` preamble.
fn error_message(e: ExecutionError) -> String {
    match e {
        ExecutionError::FunctionError { message, .. } => message,
        e => e.to_string(),
    }
}

/// Evaluates a compiled expression with the given variables bound (the admission
/// policies' `object`, `oldObject`, `request`, …); the Kubernetes libraries are the
/// environment's.
pub fn evaluate_with<'a>(
    rule: &CompiledRule,
    variables: impl IntoIterator<Item = (&'a str, CelValue)>,
) -> Result<CelValue, String> {
    let mut ctx = Context::with_env(env());
    for (name, value) in variables {
        ctx.add_variable_from_value(name, value);
    }
    rule.program.execute(&ctx).map_err(error_message)
}

/// Evaluates a validation rule to its outcome.
pub fn check(
    rule: &CompiledRule,
    self_val: CelValue,
    old_self: Option<CelValue>,
    optional_old_self: bool,
) -> Outcome {
    match evaluate(rule, self_val, old_self, optional_old_self) {
        Ok(CelValue::Bool(true)) => Outcome::Pass,
        Ok(CelValue::Bool(false)) => Outcome::Fail,
        Ok(_) => Outcome::NotBool,
        Err(e) => Outcome::Error(e),
    }
}

fn wrap_optional(old: Option<CelValue>) -> Result<CelValue, String> {
    static OF: OnceLock<Program> = OnceLock::new();
    static NONE: OnceLock<Program> = OnceLock::new();
    let mut ctx = Context::with_env(env());
    let program = match old {
        Some(v) => {
            ctx.add_variable_from_value("v", v);
            OF.get_or_init(|| {
                env()
                    .compile("optional.of(v)")
                    .expect("constant expression")
            })
        }
        None => NONE.get_or_init(|| {
            env()
                .compile("optional.none()")
                .expect("constant expression")
        }),
    };
    program.execute(&ctx).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------
// JSON to CEL, typed by the schema
// ---------------------------------------------------------------------------

/// Upstream `UnstructuredToVal`: integers stay `int`, `number` fields become `double`,
/// property names are escaped as upstream's `cel.Escape`, and at a resource root
/// `metadata` shows only `name` and `generateName`.
pub fn to_cel(v: &Value, s: Option<&Structural>, resource_root: bool) -> CelValue {
    match v {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => {
            let wants_double = s.is_some_and(|s| s.type_ == "number");
            match (n.as_i64(), wants_double) {
                (Some(i), false) => CelValue::Int(i),
                (Some(i), true) => CelValue::Float(i as f64),
                (None, _) => match n.as_u64() {
                    Some(u) if !wants_double => CelValue::UInt(u),
                    _ => CelValue::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
            }
        }
        Value::String(st) => match s.filter(|s| s.type_ == "string" && !s.x_int_or_string) {
            Some(s) => typed_string(st, &s.format),
            None => CelValue::String(Arc::new(st.clone())),
        },
        Value::Array(a) => {
            let item_schema = s.and_then(|s| s.items.as_deref());
            let embedded = item_schema.is_some_and(|i| i.x_embedded_resource);
            CelValue::List(Arc::new(
                a.iter().map(|x| to_cel(x, item_schema, embedded)).collect(),
            ))
        }
        Value::Object(m) => {
            let mut out: HashMap<Key, CelValue> = HashMap::with_capacity(m.len());
            let escape_names = s.is_some_and(|s| !s.properties.is_empty());
            for (k, x) in m {
                let child = s.and_then(|s| s.child(k));
                let embedded = child.is_some_and(|c| c.x_embedded_resource);
                let value = if resource_root && k == "metadata" {
                    root_metadata(x)
                } else {
                    to_cel(x, child, embedded)
                };
                let key = if escape_names {
                    match escape(k) {
                        Some(e) => e,
                        // Upstream leaves unescapable names out of the object.
                        None => continue,
                    }
                } else {
                    k.clone()
                };
                out.insert(Key::String(Arc::new(key)), value);
            }
            CelValue::Map(Map { map: Arc::new(out) })
        }
    }
}

/// Upstream `UnstructuredToVal` for strings: `format: duration` is a duration, `date` and
/// `date-time` are timestamps, `byte` is the decoded bytes. A value that does not parse
/// (the schema's format check refuses it anyway) stays a string, where upstream would
/// give an error value.
fn typed_string(st: &str, format: &str) -> CelValue {
    let typed = match format {
        "duration" => parse_duration(st).map(CelValue::Duration),
        "date" => chrono::NaiveDate::parse_from_str(st, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| CelValue::Timestamp(t.and_utc().fixed_offset())),
        "date-time" => parse_date_time(st).map(CelValue::Timestamp),
        "byte" => base64::engine::general_purpose::STANDARD
            .decode(st)
            .ok()
            .map(|b| CelValue::Bytes(Arc::new(b))),
        _ => None,
    };
    typed.unwrap_or_else(|| CelValue::String(Arc::new(st.to_string())))
}

/// strfmt's `ParseDuration`: a Go duration (`1h30m`, `1.5s`, `-2m`, as CEL's `duration()`
/// reads it) or `<n> <unit>` (`3 days`, `2w`).
fn parse_duration(s: &str) -> Option<chrono::Duration> {
    static PROGRAM: OnceLock<Program> = OnceLock::new();
    let program =
        PROGRAM.get_or_init(|| env().compile("duration(v)").expect("constant expression"));
    let mut ctx = Context::with_env(env());
    ctx.add_variable_from_value("v", s.to_string());
    if let Ok(CelValue::Duration(d)) = program.execute(&ctx) {
        return Some(d);
    }
    let digits = s.find(|c: char| !c.is_ascii_digit()).filter(|&i| i > 0)?;
    let n: i64 = s[..digits].parse().ok()?;
    let unit = s[digits..].trim_start();
    let per_unit = match unit {
        "ns" | "nanosecond" | "nanoseconds" => chrono::Duration::nanoseconds(1),
        "us" | "µs" | "μs" | "microsecond" | "microseconds" => chrono::Duration::microseconds(1),
        "ms" | "millisecond" | "milliseconds" => chrono::Duration::milliseconds(1),
        "s" | "second" | "seconds" => chrono::Duration::seconds(1),
        "m" | "minute" | "minutes" => chrono::Duration::minutes(1),
        "h" | "hour" | "hours" => chrono::Duration::hours(1),
        "d" | "day" | "days" => chrono::Duration::days(1),
        "w" | "wk" | "week" | "weeks" => chrono::Duration::weeks(1),
        _ => return None,
    };
    per_unit.checked_mul(i32::try_from(n).ok()?)
}

/// strfmt's `ParseDateTime`: RFC 3339, with or without fractional seconds, offsets with or
/// without a colon.
fn parse_date_time(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(s).ok().or_else(|| {
        ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"]
            .iter()
            .find_map(|f| chrono::DateTime::parse_from_str(s, f).ok())
    })
}

fn root_metadata(meta: &Value) -> CelValue {
    let mut out: HashMap<Key, CelValue> = HashMap::new();
    for key in ["name", "generateName"] {
        if let Some(Value::String(s)) = meta.get(key) {
            out.insert(
                Key::String(Arc::new(key.to_string())),
                CelValue::String(Arc::new(s.clone())),
            );
        }
    }
    CelValue::Map(Map { map: Arc::new(out) })
}

/// CEL's reserved words: no identifier (property name, variable) may be one.
pub const CEL_RESERVED: [&str; 19] = [
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
];

/// Upstream `cel.Escape`: the name a property has in CEL, or `None` when it has none.
pub fn escape(name: &str) -> Option<String> {
    if CEL_RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut chars = name.chars();
    let first = chars.next()?;
    let ok_first = first.is_ascii_alphabetic() || matches!(first, '_' | '.' | '-' | '/');
    let ok_rest = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'));
    if !ok_first || !ok_rest {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("__") {
            out.push_str("__underscores__");
            rest = r;
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        match c {
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    Some(out)
}

/// A CEL value as a message string (for `messageExpression`).
pub fn as_message(v: &CelValue) -> Option<&str> {
    match v {
        CelValue::String(s) => Some(s.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(rule: &str, self_json: Value) -> Outcome {
        let compiled = compile_rule(rule).unwrap();
        check(&compiled, to_cel(&self_json, None, false), None, false)
    }

    #[test]
    fn standard_macros_and_string_functions_work() {
        let v = json!({"items": [1, 2, 3], "name": "web-1", "labels": {"a": "b"}});
        for rule in [
            "self.items.all(i, i > 0)",
            "self.items.exists(i, i == 2)",
            "self.items.exists_one(i, i == 3)",
            "self.items.map(i, i * 2) == [2, 4, 6]",
            "self.items.filter(i, i > 1).size() == 2",
            "size(self.items) == 3",
            "has(self.name) && !has(self.missing)",
            "self.name.matches('^[a-z]+-[0-9]$')",
            "self.name.startsWith('web') && self.name.endsWith('1') && self.name.contains('b-')",
            "'a' in self.labels",
            "self.name.lowerAscii() == 'web-1'",
            "self.items.isSorted()",
            "self.items.sum() == 6",
            "self.items.max() == 3 && self.items.min() == 1",
            "self.name.find('[0-9]') == '1'",
            "self.name.split('-').size() == 2",
        ] {
            assert_eq!(run(rule, v.clone()), Outcome::Pass, "{rule}");
        }
        assert_eq!(run("self.items.all(i, i > 1)", v.clone()), Outcome::Fail);
        assert!(matches!(
            run("self.nope == 1", v.clone()),
            Outcome::Error(_)
        ));
        assert_eq!(run("self.name", v), Outcome::NotBool);
    }

    #[test]
    fn durations_and_timestamps_compare_as_upstream() {
        // Gateway API's HTTPRoute timeouts rule, valid and invalid.
        let rule = "!(has(self.request) && has(self.backendRequest) && \
                    duration(self.request) != duration('0s') && \
                    duration(self.backendRequest) > duration(self.request))";
        assert_eq!(
            run(rule, json!({"request": "10s", "backendRequest": "2s"})),
            Outcome::Pass
        );
        assert_eq!(
            run(rule, json!({"request": "1s", "backendRequest": "1m30s"})),
            Outcome::Fail
        );
        assert_eq!(
            run(rule, json!({"request": "0s", "backendRequest": "1h"})),
            Outcome::Pass
        );
        assert_eq!(
            run(
                "timestamp(self.at) < timestamp('2030-01-01T00:00:00Z') && \
                 duration('1h30m').getMinutes() == 90",
                json!({"at": "2026-12-05T05:00:00Z"})
            ),
            Outcome::Pass
        );
        assert!(matches!(
            run("duration(self.d) > duration('1s')", json!({"d": "soon"})),
            Outcome::Error(_)
        ));
    }

    #[test]
    fn is_ip_accepts_what_upstream_parses() {
        // Gateway API's TLSRoute hostnames rule.
        let rule = "self.all(h, !isIP(h))";
        assert_eq!(
            run(rule, json!(["foo.example.com", "*.example.com"])),
            Outcome::Pass
        );
        for ip in ["10.0.0.1", "2001:db8::1", "::1"] {
            assert_eq!(run(rule, json!(["a.example", ip])), Outcome::Fail, "{ip}");
        }
        // Leading zeros, zones and IPv4-mapped IPv6 addresses are no IPs upstream.
        for not_ip in ["010.0.0.1", "fe80::1%eth0", "::ffff:10.0.0.1", "10.0.0", ""] {
            assert_eq!(run(rule, json!([not_ip])), Outcome::Pass, "{not_ip}");
        }
    }

    #[test]
    fn compile_errors_read_like_cel_go() {
        let err = compile_rule("self.x >").unwrap_err();
        assert!(err.starts_with("ERROR: <input>:1:"), "{err}");
        assert_eq!(
            compile_rule("foo == 1").unwrap_err(),
            "ERROR: <input>:1:1: undeclared reference to 'foo' (in container '')"
        );
        assert!(compile_rule("self.all(x, x > 0)").is_ok());
        assert!(compile_rule("self.map(k, self[k] > 0).all(b, b)").is_ok());
    }

    #[test]
    fn old_self_is_detected_and_bound() {
        let c = compile_rule("self == oldSelf").unwrap();
        assert!(c.uses_old_self);
        assert_eq!(
            check(&c, CelValue::Int(1), Some(CelValue::Int(1)), false),
            Outcome::Pass
        );
        let opt = compile_rule("!oldSelf.hasValue() || self >= oldSelf.value()").unwrap();
        assert_eq!(check(&opt, CelValue::Int(1), None, true), Outcome::Pass);
        assert_eq!(
            check(&opt, CelValue::Int(1), Some(CelValue::Int(2)), true),
            Outcome::Fail
        );
    }

    #[test]
    fn formatted_strings_are_typed_as_upstream() {
        let string = |format: &str| Structural {
            type_: "string".into(),
            format: format.into(),
            ..Structural::default()
        };
        let typed = |v: &str, format: &str| to_cel(&json!(v), Some(&string(format)), false);
        assert_eq!(
            typed("1h30m", "duration"),
            CelValue::Duration(chrono::Duration::minutes(90))
        );
        assert_eq!(
            typed("3 days", "duration"),
            CelValue::Duration(chrono::Duration::days(3))
        );
        assert!(matches!(
            typed("2024-01-02", "date"),
            CelValue::Timestamp(_)
        ));
        assert!(matches!(
            typed("2024-01-02T03:04:05Z", "date-time"),
            CelValue::Timestamp(_)
        ));
        assert_eq!(
            typed("aGVsbG8=", "byte"),
            CelValue::Bytes(Arc::new(b"hello".to_vec()))
        );
        // Other formats, and values that do not parse, stay strings.
        assert_eq!(
            typed("10.0.0.1", "ipv4"),
            CelValue::String(Arc::new("10.0.0.1".into()))
        );
        assert_eq!(
            typed("soon", "duration"),
            CelValue::String(Arc::new("soon".into()))
        );
        // A rule sees a typed field as its type: compared as a duration, not a string.
        let rule = compile_rule(
            "self.timeout > duration('1m') && self.at < timestamp('2030-01-01T00:00:00Z')",
        )
        .unwrap();
        let mut schema = Structural {
            type_: "object".into(),
            ..Structural::default()
        };
        schema
            .properties
            .insert("timeout".into(), string("duration"));
        schema.properties.insert("at".into(), string("date-time"));
        let value = json!({"timeout": "90s", "at": "2026-12-05T08:00:00Z"});
        assert_eq!(
            check(&rule, to_cel(&value, Some(&schema), false), None, false),
            Outcome::Pass
        );
    }

    #[test]
    fn library_namespaces_are_no_undeclared_references() {
        for rule in [
            "ip.isCanonical(self.ip)",
            "format.dns1123Label().validate(self.name).hasValue()",
            "sets.contains(self.a, self.b)",
            "strings.quote(self.name) != ''",
            "optional.of(self.x).hasValue()",
            "quantity(self.q).isLessThan(quantity('1Gi')) && url(self.u).getScheme() == 'https'",
            "cidr(self.net).containsIP(self.ip)",
        ] {
            assert!(compile_rule(rule).is_ok(), "{rule}");
        }
        // A comprehension variable shadowing a namespace is still a variable.
        assert!(compile_rule("self.l.all(ip, ip.family() == 4)").is_ok());
        assert!(compile_rule("net.isCanonical(self.ip)").is_err());
    }

    #[test]
    fn numbers_follow_the_schema_type() {
        let s = Structural {
            type_: "number".into(),
            ..Structural::default()
        };
        assert_eq!(to_cel(&json!(1), Some(&s), false), CelValue::Float(1.0));
        assert_eq!(to_cel(&json!(1), None, false), CelValue::Int(1));
    }

    #[test]
    fn property_names_are_escaped_as_upstream() {
        assert_eq!(escape("foo-bar").as_deref(), Some("foo__dash__bar"));
        assert_eq!(escape("a.b/c").as_deref(), Some("a__dot__b__slash__c"));
        assert_eq!(escape("x__y").as_deref(), Some("x__underscores__y"));
        assert_eq!(escape("namespace").as_deref(), Some("__namespace__"));
        assert_eq!(escape("1abc"), None);
    }

    #[test]
    fn cost_bound_grows_with_loop_nesting() {
        let flat = compile_rule("self.a == 1").unwrap();
        let one = compile_rule("self.l.all(x, x > 0)").unwrap();
        let two = compile_rule("self.l.all(x, self.l.all(y, x != y))").unwrap();
        let sizes = Sizes {
            longest_collection: 1000,
            longest_string: 0,
        };
        assert!(flat.cost_bound(sizes) < 10);
        assert!(one.cost_bound(sizes) < 10_000);
        assert!(two.cost_bound(sizes) > PER_CALL_LIMIT);
        // Library functions cost as the loops they run.
        let sum = compile_rule("self.l.sum() > 0").unwrap();
        assert!(sum.cost_bound(sizes) >= 1000);
        let sets = compile_rule("sets.contains(self.a, self.b)").unwrap();
        assert!(sets.cost_bound(sizes) >= 1_000_000);
        let big = Sizes {
            longest_collection: 10_000,
            longest_string: 0,
        };
        assert!(sets.cost_bound(big) > PER_CALL_LIMIT);
    }
}
