//! cel-go's sets extension (`ext.Sets`, in Kubernetes' base environment since 1.29):
//! `sets.contains`, `sets.equivalent` and `sets.intersects` on lists.

use cel::common::types::{CelBool, LIST_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::{elements, take};

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    let lists = || vec![LIST_TYPE, LIST_TYPE];
    env.add_overload(
        "sets.contains",
        "list_sets_contains_list",
        lists(),
        contains,
    )?;
    env.add_overload(
        "sets.equivalent",
        "list_sets_equivalent_list",
        lists(),
        equivalent,
    )?;
    env.add_overload(
        "sets.intersects",
        "list_sets_intersects_list",
        lists(),
        intersects,
    )?;
    Ok(())
}

fn has(items: &[&dyn Val], wanted: &dyn Val) -> bool {
    items.iter().any(|item| item.equals(wanted))
}

fn includes(function: &str, outer: &dyn Val, inner: &dyn Val) -> Result<bool, ExecutionError> {
    let outer = elements(function, outer)?;
    Ok(elements(function, inner)?
        .into_iter()
        .all(|item| has(&outer, item)))
}

fn boolean<'b, 'v>(b: bool) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(CowVal::owned(CelBool::from(b)))
}

/// Whether the first list holds every element of the second.
fn contains<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a, b] = take(args)?;
    boolean(includes("sets.contains", a.as_ref(), b.as_ref())?)
}

/// Whether both lists hold the same elements, duplicates and order aside.
fn equivalent<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a, b] = take(args)?;
    let both = includes("sets.equivalent", a.as_ref(), b.as_ref())?
        && includes("sets.equivalent", b.as_ref(), a.as_ref())?;
    boolean(both)
}

/// Whether the lists share an element.
fn intersects<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [a, b] = take(args)?;
    let a = elements("sets.intersects", a.as_ref())?;
    let b = elements("sets.intersects", b.as_ref())?;
    boolean(b.into_iter().any(|item| has(&a, item)))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{check, Want::*};

    /// Cases from cel-go's `ext/sets_test.go`.
    #[test]
    fn set_functions_behave_as_cel_go() {
        check(&[
            ("sets.contains([], [])", True),
            ("sets.contains([1], [])", True),
            ("sets.contains([1, 2, 3], [3, 2])", True),
            ("sets.contains([1, 2], [2, 2, 1])", True),
            ("sets.contains([1], [1, 2])", False),
            ("sets.contains(['a', 'b'], ['c'])", False),
            ("sets.equivalent([], [])", True),
            ("sets.equivalent([1, 2, 3], [3, 2, 1])", True),
            ("sets.equivalent([1, 1], [1])", True),
            ("sets.equivalent([1, 2], [1])", False),
            ("sets.intersects([1], [1])", True),
            ("sets.intersects([1, 2], [2, 3])", True),
            ("sets.intersects([], [1])", False),
            ("sets.intersects([1], [2])", False),
        ]);
    }
}
