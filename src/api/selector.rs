//! Label and field selectors: upstream string syntax, metav1.LabelSelector conversion, matching.

use std::fmt;

use serde_json::{Map, Value};
use thiserror::Error;

use super::validation::{go_quote, is_qualified_name, is_valid_label_value, FieldError};

/// Why a selector was rejected; the messages are upstream's, which kubectl shows as is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectorError {
    /// A label requirement did not parse or validate.
    #[error("unable to parse requirement: {0}")]
    Requirement(String),
    /// The label selector string is malformed between requirements.
    #[error("{0}")]
    Syntax(String),
    /// A requirement built from a metav1.LabelSelector is invalid.
    #[error("{0}")]
    InvalidRequirement(String),
    #[error("{} is not a valid label selector operator", go_quote(.0))]
    UnknownOperator(String),
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldTerm { selector: String, term: String },
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    #[error("invalid field selector: unescaped character in value: {0}")]
    UnescapedChar(char),
    #[error("field label not supported: {0}")]
    FieldLabelNotSupported(String),
}

// ---------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------

/// A label requirement operator (upstream `selection.Operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One `key op values` requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    /// Upstream `NewRequirement`: validates key, values and their count for the operator.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, String> {
        let mut errs: Vec<FieldError> = Vec::new();
        let key_errs = is_qualified_name(key);
        if !key_errs.is_empty() {
            errs.push(FieldError::invalid("key", key, key_errs.join("; ")));
        }
        let render_values = || {
            format!(
                "[]string{{{}}}",
                values
                    .iter()
                    .map(|v| go_quote(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                errs.push(FieldError::invalid_rendered(
                    "values",
                    render_values(),
                    "for 'in', 'notin' operators, values set can't be empty",
                ))
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                errs.push(FieldError::invalid_rendered(
                    "values",
                    render_values(),
                    "exact-match compatibility requires one single value",
                ))
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                errs.push(FieldError::invalid_rendered(
                    "values",
                    render_values(),
                    "values set must be empty for exists and does not exist",
                ))
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(FieldError::invalid_rendered(
                        "values",
                        render_values(),
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(FieldError::invalid(
                            format!("values[{i}]"),
                            v,
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = is_valid_label_value(v);
            if !msgs.is_empty() {
                errs.push(FieldError::invalid(
                    format!("values[{i}][{key}]"),
                    v,
                    msgs.join("; "),
                ));
            }
        }
        match errs.len() {
            0 => Ok(Requirement {
                key: key.to_string(),
                operator,
                values,
            }),
            1 => Err(errs[0].to_string()),
            _ => Err(format!(
                "[{}]",
                errs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    fn has_value(&self, v: &str) -> bool {
        self.values.iter().any(|x| x == v)
    }

    /// Whether the requirement holds for `labels` (upstream `Requirement.Matches`).
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let value = labels.and_then(|l| l.get(&self.key));
        self.matches_value(value.map(|v| v.as_str().unwrap_or("")))
    }

    /// Whether the requirement holds when its label has the value `text` (None: the
    /// object has no such label; a label that is not a string reads as "").
    pub fn matches_value(&self, text: Option<&str>) -> bool {
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                text.is_some_and(|t| self.has_value(t))
            }
            Operator::NotIn | Operator::NotEquals => !text.is_some_and(|t| self.has_value(t)),
            Operator::Exists => text.is_some(),
            Operator::DoesNotExist => text.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(Ok(have)), [want]) =
                    (text.map(str::parse::<i64>), self.values.as_slice())
                else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
        };
        f.write_str(op)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        let mut sorted = self.values.clone();
        sorted.sort();
        f.write_str(&sorted.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A label selector: all requirements must hold. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements }
    }

    /// Parses the upstream string syntax (`a=b,c!=d,e in (x,y),!f,g`).
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let mut parser = Parser {
            items: lex(s),
            pos: 0,
        };
        parser.parse().map(Self::from_requirements)
    }

    /// Converts a metav1.LabelSelector (`matchLabels`, `matchExpressions`).
    /// An absent (null) or empty selector matches everything here; callers that need
    /// upstream's "nil selector matches nothing" decide that before calling.
    pub fn from_k8s(sel: &Value) -> Result<LabelSelector, SelectorError> {
        let mut reqs = Vec::new();
        if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                let v = v.as_str().unwrap_or("").to_string();
                reqs.push(
                    Requirement::new(k, Operator::Equals, vec![v])
                        .map_err(SelectorError::InvalidRequirement)?,
                );
            }
        }
        let exprs = sel.get("matchExpressions").and_then(Value::as_array);
        for expr in exprs.into_iter().flatten() {
            let op_name = expr.get("operator").and_then(Value::as_str).unwrap_or("");
            let op = match op_name {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(SelectorError::UnknownOperator(other.to_string())),
            };
            let key = expr.get("key").and_then(Value::as_str).unwrap_or("");
            let values = expr
                .get("values")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .map(|v| v.as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            reqs.push(
                Requirement::new(key, op, values).map_err(SelectorError::InvalidRequirement)?,
            );
        }
        Ok(Self::from_requirements(reqs))
    }

    /// A plain `key: value` selector (ReplicationController / Service style), without
    /// validation. An empty map gives the empty selector (matches everything); callers
    /// decide whether an empty map should select nothing instead.
    pub fn from_map(m: &Map<String, Value>) -> LabelSelector {
        let reqs = m
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.as_str().unwrap_or("").to_string()],
            })
            .collect();
        Self::from_requirements(reqs)
    }

    /// The selector requiring both `self` and `other` (upstream `Selector.Add`), each
    /// requirement once.
    pub fn and(&self, other: &LabelSelector) -> LabelSelector {
        let mut reqs = self.requirements.clone();
        for r in &other.requirements {
            if !reqs.contains(r) {
                reqs.push(r.clone());
            }
        }
        Self::from_requirements(reqs)
    }

    /// True when the selector has no requirements (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether an object with these `metadata.labels` is selected (None = no labels).
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether an object whose label values `label` gives is selected (the same as
    /// [`LabelSelector::matches`] on labels read elsewhere than from the object).
    pub fn matches_by<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches_value(label(&r.key)))
    }

    /// The single value `label` must have, if the selector pins it (`a=b`, `a in (b)`).
    pub fn requires_exact_match(&self, label: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == label)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Upstream's lexer: identifiers run to whitespace or a special symbol; special
/// symbols are scanned greedily into the longest operator.
fn lex(s: &str) -> Vec<(Token, String)> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < b.len() && is_space(b[pos]) {
            pos += 1;
        }
        if pos >= b.len() {
            out.push((Token::End, String::new()));
            return out;
        }
        if is_special(b[pos]) {
            // Every single special symbol is itself a token, so this always finds one.
            let mut best = (Token::Comma, pos + 1);
            let mut end = pos;
            while end < b.len() && is_special(b[end]) {
                end += 1;
                match keyword(&s[pos..end]) {
                    Some(t) => best = (t, end),
                    None => break,
                }
            }
            out.push((best.0, s[pos..best.1].to_string()));
            pos = best.1;
        } else {
            let start = pos;
            while pos < b.len() && !is_special(b[pos]) && !is_space(b[pos]) {
                pos += 1;
            }
            let lit = &s[start..pos];
            let tok = keyword(lit).unwrap_or(Token::Identifier);
            out.push((tok, lit.to_string()));
        }
    }
}

struct Parser {
    items: Vec<(Token, String)>,
    pos: usize,
}

const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

impl Parser {
    /// In the values context the keywords `in`/`notin` are plain identifiers.
    fn lookahead(&self, values: bool) -> (Token, String) {
        let (t, l) = self.items[self.pos].clone();
        (Self::contextual(t, values), l)
    }

    fn consume(&mut self, values: bool) -> (Token, String) {
        let item = self.lookahead(values);
        if self.pos + 1 < self.items.len() {
            self.pos += 1;
        }
        item
    }

    fn contextual(t: Token, values: bool) -> Token {
        match t {
            Token::In | Token::NotIn if values => Token::Identifier,
            t => t,
        }
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(true);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(SelectorError::Requirement)?;
                    reqs.push(r);
                    let (t, l) = self.consume(true);
                    match t {
                        Token::End => return Ok(reqs),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(true);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(SelectorError::Syntax(format!(
                                    "found '{l2}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError::Syntax(format!(
                                "found '{l}', expected: ',' or 'end of string'"
                            )))
                        }
                    }
                }
                Token::End => return Ok(reqs),
                _ => {
                    return Err(SelectorError::Syntax(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )))
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, op) = self.parse_key_and_infer_operator()?;
        if let Some(op) = op {
            return Requirement::new(&key, op, Vec::new());
        }
        let op = self.parse_operator()?;
        let mut values = match op {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        values.sort();
        values.dedup();
        Requirement::new(&key, op, values)
    }

    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let (mut tok, mut lit) = self.consume(true);
        let mut op = None;
        if tok == Token::DoesNotExist {
            op = Some(Operator::DoesNotExist);
            (tok, lit) = self.consume(true);
        }
        if tok != Token::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        let key_errs = is_qualified_name(&lit);
        if !key_errs.is_empty() {
            return Err(FieldError::invalid("<nil>", &lit, key_errs.join("; ")).to_string());
        }
        let (next, _) = self.lookahead(true);
        if (next == Token::End || next == Token::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((lit, op))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (tok, lit) = self.consume(false);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return Err(format!("found '{lit}', expected: {BINARY_OPERATORS}")),
        })
    }

    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(true);
        if tok != Token::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(true);
        match tok {
            Token::Identifier | Token::Comma => {
                let s = self.parse_identifiers_list()?;
                let (tok, _) = self.consume(true);
                if tok != Token::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(s)
            }
            Token::ClosedPar => {
                self.consume(true);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut s: Vec<String> = Vec::new();
        loop {
            let (tok, lit) = self.consume(true);
            match tok {
                Token::Identifier => {
                    s.push(lit);
                    let (tok2, lit2) = self.lookahead(true);
                    match tok2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(s),
                        _ => return Err(format!("found '{lit2}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if s.is_empty() {
                        s.push(String::new());
                    }
                    let (tok2, _) = self.lookahead(true);
                    if tok2 == Token::ClosedPar {
                        s.push(String::new());
                        return Ok(s);
                    }
                    if tok2 == Token::Comma {
                        s.push(String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        let (tok, _) = self.lookahead(true);
        if tok == Token::End || tok == Token::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(true);
        if tok == Token::Identifier {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

// ---------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------

/// A field selector term operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOperator {
    Equals,
    NotEquals,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub operator: FieldOperator,
    pub value: String,
}

/// A field selector (`spec.nodeName=n1,status.phase!=Failed`). Empty matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

/// Splits on unescaped commas (upstream `splitTerms`).
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Finds the first operator in a term (upstream `splitTerm`; `!=` and `==` before `=`).
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op_text, op) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(op_text) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}

/// Upstream `UnescapeValue`: `\\`, `\,` and `\=` are the only escapes.
fn unescape_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => return Err(SelectorError::InvalidEscape(format!("\\{c}"))),
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(SelectorError::UnescapedChar(c)),
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::InvalidEscape("\\".into()));
    }
    Ok(out)
}

fn escape_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
}

impl FieldSelector {
    /// Parses `f=v`, `f==v`, `f!=v` terms separated by commas (`\,` `\=` `\\` escape).
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut parts = split_terms(s);
        parts.sort_unstable();
        let mut requirements = Vec::new();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let Some((lhs, operator, rhs)) = split_term(part) else {
                return Err(SelectorError::FieldTerm {
                    selector: s.to_string(),
                    term: part.to_string(),
                });
            };
            requirements.push(FieldRequirement {
                field: lhs.to_string(),
                operator,
                value: unescape_value(rhs)?,
            });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The value `field` must equal, if the selector pins it (e.g. `spec.nodeName=n1`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }

    /// Whether `obj` satisfies every term; a missing field reads as "" (so
    /// `spec.nodeName=` selects unscheduled pods).
    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_by(|field| field_value(obj, field))
    }

    /// Whether every term holds of the values `value` gives each field (a kind's
    /// registry strategy renders some fields its own way, as upstream's `GetAttrs`).
    pub fn matches_by(&self, value: impl Fn(&str) -> String) -> bool {
        self.requirements.iter().all(|r| {
            let have = value(&r.field);
            match r.operator {
                FieldOperator::Equals => have == r.value,
                FieldOperator::NotEquals => have != r.value,
            }
        })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.operator {
                FieldOperator::Equals => "=",
                FieldOperator::NotEquals => "!=",
            };
            write!(f, "{}{op}{}", r.field, escape_value(&r.value))?;
        }
        Ok(())
    }
}

/// The selectable value of `field` on `obj`: the scalar at that path as text, "" when
/// missing. Kinds that render a field otherwise say so in their registry strategy.
pub fn field_value(obj: &Value, field: &str) -> String {
    scalar_text(lookup(obj, field))
}

/// A boolean field as upstream renders it: missing reads as `false`.
pub fn bool_field_value(obj: &Value, field: &str) -> String {
    let v = lookup(obj, field).and_then(Value::as_bool).unwrap_or(false);
    v.to_string()
}

/// An integer field as upstream renders it: missing reads as `0`.
pub fn int_field_value(obj: &Value, field: &str) -> String {
    lookup(obj, field)
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .to_string()
}

fn lookup<'a>(obj: &'a Value, field: &str) -> Option<&'a Value> {
    field.split('.').try_fold(obj, |v, part| v.get(part))
}

fn scalar_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// Rejects field labels outside `supported` (the ones the kind's registry strategy
/// lists, as upstream's `SelectableFields`).
pub fn check_supported(supported: &[&str], sel: &FieldSelector) -> Result<(), SelectorError> {
    match sel
        .requirements
        .iter()
        .find(|r| !supported.contains(&r.field.as_str()))
    {
        Some(r) => Err(SelectorError::FieldLabelNotSupported(r.field.clone())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn parse_err(s: &str) -> String {
        LabelSelector::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = sel("");
        assert!(s.is_empty());
        assert!(s.matches(None));
        assert!(s.matches(Some(&labels(json!({"a": "b"})))));
        assert!(sel("   ").is_empty());
        assert_eq!(s.to_string(), "");
    }

    #[test]
    fn equality_operators() {
        let l = labels(json!({"app": "web", "tier": "front"}));
        assert!(sel("app=web").matches(Some(&l)));
        assert!(sel("app==web").matches(Some(&l)));
        assert!(!sel("app=db").matches(Some(&l)));
        assert!(sel("app!=db").matches(Some(&l)));
        assert!(!sel("app!=web").matches(Some(&l)));
        assert!(
            sel("missing!=x").matches(Some(&l)),
            "!= matches absent keys"
        );
        assert!(!sel("app=web").matches(None));
        assert!(sel("app=web,tier=front").matches(Some(&l)));
        assert!(!sel("app=web,tier=back").matches(Some(&l)));
        assert!(sel("app=").matches(Some(&labels(json!({"app": ""})))));
    }

    #[test]
    fn set_operators() {
        let l = labels(json!({"env": "prod"}));
        assert!(sel("env in (prod,staging)").matches(Some(&l)));
        assert!(!sel("env in (dev)").matches(Some(&l)));
        assert!(sel("env notin (dev,qa)").matches(Some(&l)));
        assert!(!sel("env notin (prod)").matches(Some(&l)));
        assert!(
            sel("other notin (prod)").matches(Some(&l)),
            "notin matches absent keys"
        );
        assert!(!sel("other in (prod)").matches(Some(&l)));
        assert!(
            sel("env in ( prod , x )").matches(Some(&l)),
            "whitespace is tolerated"
        );
        assert!(
            sel("env in (in,notin,prod)").matches(Some(&l)),
            "keywords are values inside ()"
        );
    }

    #[test]
    fn existence_operators() {
        let l = labels(json!({"env": "prod"}));
        assert!(sel("env").matches(Some(&l)));
        assert!(!sel("other").matches(Some(&l)));
        assert!(sel("!other").matches(Some(&l)));
        assert!(!sel("!env").matches(Some(&l)));
        assert!(sel("!other").matches(None));
        assert!(sel("env,!other").matches(Some(&l)));
        assert!(sel(" env , ! other ").matches(Some(&l)));
    }

    #[test]
    fn numeric_comparisons() {
        let l = labels(json!({"gen": "5"}));
        assert!(sel("gen>3").matches(Some(&l)));
        assert!(!sel("gen<3").matches(Some(&l)));
        assert!(!sel("missing>1").matches(Some(&l)));
        assert!(
            parse_err("gen>x").contains("for 'Gt', 'Lt' operators, the value must be an integer")
        );
    }

    #[test]
    fn canonical_string_form() {
        assert_eq!(
            sel("z=1, b in (y,x), !c, a, d notin (q), e!=2, f==3").to_string(),
            "a,b in (x,y),!c,d notin (q),e!=2,f==3,z=1"
        );
        let round = sel("a in (x,y),b");
        assert_eq!(sel(&round.to_string()), round);
    }

    #[test]
    fn syntax_errors_match_upstream() {
        assert_eq!(
            parse_err("a b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(
            parse_err("a=b,"),
            "found '', expected: identifier after ','"
        );
        assert_eq!(
            parse_err("a=b c"),
            "found 'c', expected: ',' or 'end of string'"
        );
        assert_eq!(
            parse_err(",a"),
            "found ',', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            parse_err("a in x"),
            "unable to parse requirement: found 'x' expected: '('"
        );
        assert_eq!(
            parse_err("a in (x"),
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        assert_eq!(
            parse_err("!=a"),
            "found '!=', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            parse_err("!"),
            "unable to parse requirement: found '', expected: identifier"
        );
    }

    #[test]
    fn empty_and_comma_value_sets() {
        assert_eq!(sel("a in ()").requirements()[0].values, vec![""]);
        assert_eq!(sel("a in (,x)").requirements()[0].values, vec!["", "x"]);
        assert_eq!(sel("a in (x,)").requirements()[0].values, vec!["", "x"]);
        assert!(sel("a notin ()").matches(Some(&labels(json!({"a": "x"})))));
    }

    #[test]
    fn invalid_keys_and_values_are_rejected() {
        assert_eq!(
            parse_err("Foo_Bar!=x!"),
            "found '!', expected: ',' or 'end of string'"
        );
        let e = parse_err("bad key=1");
        assert_eq!(
            e,
            "unable to parse requirement: found 'key', expected: in, notin, =, ==, !=, gt, lt"
        );
        let e = parse_err("-a=b");
        assert!(e.starts_with("unable to parse requirement: <nil>: Invalid value: \"-a\": name part must consist of alphanumeric characters"), "{e}");
        let e = parse_err("a=-b");
        assert!(e.starts_with("unable to parse requirement: values[0][a]: Invalid value: \"-b\": a valid label must be an empty string"), "{e}");
        let long = "x".repeat(64);
        let e = parse_err(&format!("a={long}"));
        assert!(e.contains("must be no more than 63 characters"), "{e}");
        assert!(LabelSelector::parse("example.com/app=v").is_ok());
        assert!(LabelSelector::parse("a/b/c=v").is_err());
    }

    #[test]
    fn from_k8s_converts_label_selector() {
        let s = LabelSelector::from_k8s(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "staging"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "tier", "operator": "Exists"},
                {"key": "zone", "operator": "NotIn", "values": ["b"]}
            ]
        }))
        .unwrap();
        assert_eq!(
            s.to_string(),
            "app=web,!canary,env in (prod,staging),tier,zone notin (b)"
        );
        assert!(s.matches(Some(&labels(
            json!({"app": "web", "env": "prod", "tier": "x"})
        ))));
        assert!(!s.matches(Some(&labels(
            json!({"app": "web", "env": "prod", "tier": "x", "canary": "1"})
        ))));
        assert!(!s.matches(Some(&labels(
            json!({"app": "web", "env": "prod", "tier": "x", "zone": "b"})
        ))));
        assert!(LabelSelector::from_k8s(&json!({})).unwrap().is_empty());
        assert!(LabelSelector::from_k8s(&Value::Null).unwrap().is_empty());
    }

    #[test]
    fn from_k8s_rejects_bad_selectors() {
        let e = LabelSelector::from_k8s(
            &json!({"matchExpressions": [{"key": "a", "operator": "Like"}]}),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"Like\" is not a valid label selector operator"
        );
        let e = LabelSelector::from_k8s(
            &json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty");
        let e = LabelSelector::from_k8s(
            &json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
        )
        .unwrap_err();
        assert!(e
            .to_string()
            .contains("values set must be empty for exists and does not exist"));
        let e = LabelSelector::from_k8s(&json!({"matchLabels": {"bad key": "v"}})).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("key: Invalid value: \"bad key\": name part must consist of"),
            "{e}"
        );
    }

    #[test]
    fn from_map_is_plain_equality() {
        let m = labels(json!({"app": "web", "tier": "front"}));
        let s = LabelSelector::from_map(&m);
        assert_eq!(s.to_string(), "app=web,tier=front");
        assert!(s.matches(Some(&m)));
        assert!(!s.matches(Some(&labels(json!({"app": "web"})))));
        assert!(LabelSelector::from_map(&Map::new()).is_empty());
    }

    #[test]
    fn exact_match_lookup() {
        assert_eq!(
            sel("a=1,b in (2),c in (3,4),d!=5").requires_exact_match("a"),
            Some("1")
        );
        assert_eq!(sel("b in (2)").requires_exact_match("b"), Some("2"));
        assert_eq!(sel("c in (3,4)").requires_exact_match("c"), None);
        assert_eq!(sel("d!=5").requires_exact_match("d"), None);
    }

    // --- Field selectors -----------------------------------------------------------------

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler", "serviceAccountName": "default"},
            "status": {"phase": "Running", "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}]}
        })
    }

    fn fsel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn field_selector_matches_pod_fields() {
        let p = pod();
        assert!(fsel("").matches(&p));
        assert!(fsel("metadata.name=web-1").matches(&p));
        assert!(fsel("metadata.name==web-1,metadata.namespace=default").matches(&p));
        assert!(fsel("spec.nodeName=n1,status.phase!=Failed").matches(&p));
        assert!(!fsel("status.phase=Pending").matches(&p));
        assert!(fsel("status.podIP=10.42.0.5").matches(&p));
        assert!(fsel("spec.restartPolicy=Always,spec.schedulerName=default-scheduler,spec.serviceAccountName=default").matches(&p));
        let unscheduled = json!({"metadata": {"name": "x"}, "spec": {}});
        assert!(
            fsel("spec.nodeName=").matches(&unscheduled),
            "missing reads as empty"
        );
        assert!(!fsel("spec.nodeName=").matches(&p));
        assert!(fsel("spec.nodeName!=").matches(&p));
        assert!(fsel("status.nominatedNodeName=").matches(&p));
    }

    #[test]
    fn booleans_and_integers_read_missing_as_their_zero_value() {
        let empty = json!({"spec": {}});
        assert_eq!(bool_field_value(&empty, "spec.hostNetwork"), "false");
        let node = json!({"spec": {"unschedulable": true}});
        assert_eq!(bool_field_value(&node, "spec.unschedulable"), "true");
        assert_eq!(int_field_value(&empty, "status.replicas"), "0");
        assert_eq!(field_value(&empty, "status.replicas"), "");
        let counted = |n: &str| {
            let rs = json!({"status": {"replicas": 3}});
            fsel(&format!("status.replicas={n}")).matches_by(|field| int_field_value(&rs, field))
        };
        assert!(counted("3"));
        assert!(!counted("0"));
    }

    #[test]
    fn field_selector_matches_other_kinds() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        assert!(fsel("spec.unschedulable=true").matches(&node));
        let secret = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls"});
        assert!(fsel("type=kubernetes.io/tls").matches(&secret));
        let event = json!({
            "involvedObject": {"kind": "Pod", "namespace": "ns", "name": "p", "uid": "u1", "apiVersion": "v1", "resourceVersion": "7", "fieldPath": "spec.containers{a}"},
            "reason": "Started", "type": "Normal", "source": {"component": "kubelet"}, "reportingComponent": "kubelet"
        });
        assert!(fsel("involvedObject.kind=Pod,involvedObject.namespace=ns,involvedObject.name=p,involvedObject.uid=u1").matches(&event));
        assert!(fsel("involvedObject.apiVersion=v1,involvedObject.resourceVersion=7,involvedObject.fieldPath=spec.containers{a}").matches(&event));
        assert!(fsel("reason=Started,type=Normal,reportingComponent=kubelet").matches(&event));
        let ns = json!({"metadata": {"name": "kube-system"}, "status": {"phase": "Active"}});
        assert!(fsel("status.phase=Active").matches(&ns));
    }

    #[test]
    fn field_selector_syntax() {
        assert_eq!(
            FieldSelector::parse("spec.nodeName")
                .unwrap_err()
                .to_string(),
            "invalid selector: 'spec.nodeName'; can't understand 'spec.nodeName'"
        );
        assert_eq!(
            FieldSelector::parse("a=b\\x").unwrap_err().to_string(),
            "invalid field selector: invalid escape sequence: \\x"
        );
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err().to_string(),
            "invalid field selector: unescaped character in value: ="
        );
        assert_eq!(
            FieldSelector::parse("a=b\\").unwrap_err().to_string(),
            "invalid field selector: invalid escape sequence: \\"
        );
        let s = fsel("metadata.name=a\\,b\\=c\\\\d");
        assert_eq!(s.requirements()[0].value, "a,b=c\\d");
        assert_eq!(s.to_string(), "metadata.name=a\\,b\\=c\\\\d");
        assert!(s.matches(&json!({"metadata": {"name": "a,b=c\\d"}})));
        assert!(
            fsel("a=b,").requirements().len() == 1,
            "empty terms are skipped"
        );
        assert_eq!(
            fsel("b!=2,a==1").to_string(),
            "a=1,b!=2",
            "terms are sorted, == normalised"
        );
        assert_eq!(
            fsel("spec.nodeName=n1").requires_exact_match("spec.nodeName"),
            Some("n1")
        );
        assert_eq!(
            fsel("spec.nodeName!=n1").requires_exact_match("spec.nodeName"),
            None
        );
    }

    #[test]
    fn field_labels_outside_the_supported_ones_are_rejected_by_name() {
        let supported = ["metadata.name", "spec.nodeName", "status.phase"];
        assert!(
            check_supported(&supported, &fsel("spec.nodeName=n1,status.phase=Running")).is_ok()
        );
        assert!(check_supported(&supported, &fsel("")).is_ok());
        assert_eq!(
            check_supported(&supported, &fsel("metadata.name=a,spec.type=x"))
                .unwrap_err()
                .to_string(),
            "field label not supported: spec.type"
        );
    }
}
