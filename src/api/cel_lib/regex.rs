//! Kubernetes' regex library (`library.Regex`): `find` and `findAll` on strings.

use std::sync::Arc;

use cel::common::types::{CelList, CelString, INT_TYPE, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};
use regex::Regex;

use super::{int_arg, string_arg, take};

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_member_overload(
        "find",
        "string_find_string",
        STRING_TYPE,
        vec![STRING_TYPE],
        find,
    )?;
    env.add_member_overload(
        "findAll",
        "string_find_all_string",
        STRING_TYPE,
        vec![STRING_TYPE],
        find_all,
    )?;
    env.add_member_overload(
        "findAll",
        "string_find_all_string_int",
        STRING_TYPE,
        vec![STRING_TYPE, INT_TYPE],
        find_all_limited,
    )?;
    Ok(())
}

/// The pattern read as Go's RE2 reads it (upstream compiles it with Go's `regexp`).
fn compile(function: &str, pattern: &str) -> Result<Regex, ExecutionError> {
    Regex::new(&crate::api::crd::re2::from_re2(pattern))
        .map_err(|e| ExecutionError::function_error(function, e))
}

fn string<'b, 'v>(s: &str) -> CowVal<'b, 'v> {
    CowVal::owned(CelString::from(Arc::new(s.to_string())))
}

/// The first match, or `''`.
fn find<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s, pattern] = take(args)?;
    let re = compile("find", string_arg("find", pattern.as_ref())?)?;
    let found = re.find(string_arg("find", s.as_ref())?);
    Ok(string(found.map_or("", |m| m.as_str())))
}

fn matches<'b, 'v>(
    s: &dyn Val,
    pattern: &dyn Val,
    limit: Option<i64>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let re = compile("findAll", string_arg("findAll", pattern)?)?;
    let text = string_arg("findAll", s)?;
    // Upstream: a negative limit means all matches, zero none.
    let limit = match limit {
        Some(n) if n >= 0 => n as usize,
        _ => usize::MAX,
    };
    let found: Vec<Box<dyn Val + 'v>> = re
        .find_iter(text)
        .take(limit)
        .map(|m| Box::new(CelString::from(Arc::new(m.as_str().to_string()))) as Box<dyn Val>)
        .collect();
    Ok(CowVal::owned(CelList::from(found)))
}

fn find_all<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s, pattern] = take(args)?;
    matches(s.as_ref(), pattern.as_ref(), None)
}

fn find_all_limited<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [s, pattern, limit] = take(args)?;
    let limit = int_arg("findAll", limit.as_ref())?;
    matches(s.as_ref(), pattern.as_ref(), Some(limit))
}

#[cfg(test)]
mod tests {
    use cel::Value;

    use super::super::test_support::{check, Want::*};

    #[test]
    fn find_and_find_all_behave_as_upstream() {
        let s = |v: &str| Value(Value::String(v.to_string().into()));
        check(&[
            ("'abc 123'.find('[0-9]+')", s("123")),
            ("'abc'.find('[0-9]+')", s("")),
            ("'123 abc 456'.findAll('[0-9]+') == ['123', '456']", True),
            ("'123 abc 456'.findAll('[0-9]+', 1) == ['123']", True),
            ("'123 abc 456'.findAll('[0-9]+', 0) == []", True),
            ("'123 abc 456'.findAll('[0-9]+', -1).size() == 2", True),
            ("'abc'.findAll('x') == []", True),
            ("'abc'.find('[')", Error("regex parse error")),
        ]);
    }
}
