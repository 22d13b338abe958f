//! Kubernetes' lists library (`library.Lists`): `isSorted`, `sum`, `min`, `max`,
//! `indexOf` and `lastIndexOf` on lists. (`slice`, `flatten`, `distinct`… are cel-go's
//! lists extension, which the crate provides.)

use std::cmp::Ordering;

use cel::common::types::{CelBool, CelInt, DYN_TYPE, LIST_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::{elements, take};

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_member_overload("isSorted", "list_is_sorted", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload("sum", "list_sum", LIST_TYPE, vec![], sum)?;
    env.add_member_overload("min", "list_min", LIST_TYPE, vec![], min)?;
    env.add_member_overload("max", "list_max", LIST_TYPE, vec![], max)?;
    env.add_member_overload(
        "indexOf",
        "list_index_of",
        LIST_TYPE,
        vec![DYN_TYPE],
        index_of,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "list_last_index_of",
        LIST_TYPE,
        vec![DYN_TYPE],
        last_index_of,
    )?;
    Ok(())
}

fn compare(function: &str, a: &dyn Val, b: &dyn Val) -> Result<Ordering, ExecutionError> {
    a.as_comparer()
        .ok_or_else(|| {
            ExecutionError::function_error(
                function,
                format!(
                    "no such overload: {} is not comparable",
                    a.get_type().name()
                ),
            )
        })?
        .compare(b)
}

fn is_sorted<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list] = take(args)?;
    let items = elements("isSorted", list.as_ref())?;
    for pair in items.windows(2) {
        if compare("isSorted", pair[0], pair[1])? == Ordering::Greater {
            return Ok(CowVal::owned(CelBool::from(false)));
        }
    }
    Ok(CowVal::owned(CelBool::from(true)))
}

/// The sum of the elements, by their own `+` (ints, uints, doubles, durations); `0` for
/// an empty list, as for upstream's `list(int)`.
fn sum<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list] = take(args)?;
    let items = elements("sum", list.as_ref())?;
    let Some((first, rest)) = items.split_first() else {
        return Ok(CowVal::owned(CelInt::from(0)));
    };
    let mut total: Box<dyn Val + 'v> = first.clone_as_boxed();
    for item in rest {
        let next = total
            .as_adder()
            .ok_or_else(|| {
                ExecutionError::function_error(
                    "sum",
                    format!(
                        "no such overload: {} cannot be summed",
                        total.get_type().name()
                    ),
                )
            })?
            .add(*item)?
            .into_owned();
        total = next;
    }
    Ok(CowVal::Owned(total))
}

/// Upstream `cmp`: the first element no other one is preferred to.
fn extreme<'b, 'v>(
    function: &str,
    args: Vec<CowVal<'b, 'v>>,
    prefer: Ordering,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list] = take(args)?;
    let items = elements(function, list.as_ref())?;
    let Some((first, rest)) = items.split_first() else {
        return Err(ExecutionError::function_error(
            function,
            format!("{function} called on empty list"),
        ));
    };
    let mut best = *first;
    for item in rest {
        if compare(function, *item, best)? == prefer {
            best = *item;
        }
    }
    Ok(CowVal::Owned(best.clone_as_boxed()))
}

fn min<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme("min", args, Ordering::Less)
}

fn max<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme("max", args, Ordering::Greater)
}

fn index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list, wanted] = take(args)?;
    let items = elements("indexOf", list.as_ref())?;
    let at = items.iter().position(|item| item.equals(wanted.as_ref()));
    Ok(CowVal::owned(CelInt::from(at.map_or(-1, |i| i as i64))))
}

fn last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [list, wanted] = take(args)?;
    let items = elements("lastIndexOf", list.as_ref())?;
    let at = items.iter().rposition(|item| item.equals(wanted.as_ref()));
    Ok(CowVal::owned(CelInt::from(at.map_or(-1, |i| i as i64))))
}

#[cfg(test)]
mod tests {
    use cel::Value;

    use super::super::test_support::{check, Want::*};

    /// Cases from upstream's `lists_test.go` / `library_compatibility_test.go`.
    #[test]
    fn list_functions_behave_as_upstream() {
        check(&[
            ("[1, 2, 3].isSorted()", True),
            ("[1, 3, 2].isSorted()", False),
            ("['a', 'b', 'b', 'c'].isSorted()", True),
            ("[2.0, 1.0].isSorted()", False),
            ("[].isSorted()", True),
            ("[1, 2, 3].sum()", Value(Value::Int(6))),
            ("[1.5, 2.5].sum()", Value(Value::Float(4.0))),
            ("[].sum()", Value(Value::Int(0))),
            (
                "[duration('1s'), duration('2m')].sum() == duration('121s')",
                True,
            ),
            ("[3, 1, 2].min()", Value(Value::Int(1))),
            ("[3, 1, 2].max()", Value(Value::Int(3))),
            (
                "['b', 'a'].min()",
                Value(Value::String("a".to_string().into())),
            ),
            ("[].min()", Error("min called on empty list")),
            ("[].max()", Error("max called on empty list")),
            ("[1, 2, 2, 3].indexOf(2)", Value(Value::Int(1))),
            ("[1, 2, 2, 3].lastIndexOf(2)", Value(Value::Int(2))),
            ("[1, 2].indexOf(5)", Value(Value::Int(-1))),
            ("['a', 'b'].lastIndexOf('a')", Value(Value::Int(0))),
            // The strings extension keeps its own `indexOf`.
            ("'hello'.indexOf('l')", Value(Value::Int(2))),
            ("'hello'.lastIndexOf('l')", Value(Value::Int(3))),
            // And the crate's lists extension is there too.
            ("[1, 2, 3, 4].slice(1, 3) == [2, 3]", True),
        ]);
    }
}
