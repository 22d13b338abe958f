//! Kubernetes' quantity library (`library.Quantity`): `quantity()`, `isQuantity()` and
//! the `kubernetes.Quantity` type's comparisons, arithmetic and conversions, on the one
//! quantity type orc has (`api::quantity`).

use cel::common::types::{CelBool, CelDouble, CelInt, CelString};
use cel::{DeclarationError, Env, ExecutionError};

use super::library_type;
use crate::api::quantity::{Format, Quantity as ApiQuantity};

/// A `kubernetes.Quantity` value: equal to another when their values are (`1k == 1000`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity(ApiQuantity);

library_type!(Quantity, QUANTITY_TYPE, "kubernetes.Quantity");

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    cel::add_overload!(env, fn quantity: (CelString) -> Result<Quantity>, id = "string_to_quantity")?;
    cel::add_overload!(env, fn is_quantity: (CelString) -> CelBool, id = "is_quantity_string")?;
    cel::add_member_overload!(env, fn sign: (Quantity) -> CelInt, id = "quantity_sign")?;
    cel::add_member_overload!(env, fn is_greater_than: (Quantity, Quantity) -> CelBool,
        id = "quantity_is_greater_than")?;
    cel::add_member_overload!(env, fn is_less_than: (Quantity, Quantity) -> CelBool,
        id = "quantity_is_less_than")?;
    cel::add_member_overload!(env, fn compare_to: (Quantity, Quantity) -> CelInt,
        id = "quantity_compare_to")?;
    cel::add_member_overload!(env, fn as_approximate_float: (Quantity) -> CelDouble,
        id = "quantity_get_float")?;
    cel::add_member_overload!(env, fn as_integer: (Quantity) -> Result<CelInt>,
        id = "quantity_get_int")?;
    cel::add_member_overload!(env, fn is_integer: (Quantity) -> CelBool,
        id = "quantity_is_integer")?;
    cel::add_member_overload!(env, fn add: (Quantity, Quantity) -> Result<Quantity>,
        id = "quantity_add")?;
    cel::add_member_overload!(env, fn add_int: (Quantity, CelInt) -> Result<Quantity>,
        name = "add", id = "quantity_add_int")?;
    cel::add_member_overload!(env, fn sub: (Quantity, Quantity) -> Result<Quantity>,
        id = "quantity_sub")?;
    cel::add_member_overload!(env, fn sub_int: (Quantity, CelInt) -> Result<Quantity>,
        name = "sub", id = "quantity_sub_int")?;
    Ok(())
}

/// Upstream `resource.ParseQuantity`; its errors are upstream's.
fn quantity(s: &CelString<'_>) -> Result<Quantity, ExecutionError> {
    s.inner()
        .parse()
        .map(Quantity)
        .map_err(|e| ExecutionError::function_error("quantity", e))
}

fn is_quantity(s: &CelString<'_>) -> CelBool {
    s.inner().parse::<ApiQuantity>().is_ok().into()
}

fn sign(q: &Quantity) -> CelInt {
    let sign = if q.0.is_negative() {
        -1
    } else {
        i64::from(!q.0.is_zero())
    };
    sign.into()
}

fn is_greater_than(q: &Quantity, other: &Quantity) -> CelBool {
    (q.0 > other.0).into()
}

fn is_less_than(q: &Quantity, other: &Quantity) -> CelBool {
    (q.0 < other.0).into()
}

fn compare_to(q: &Quantity, other: &Quantity) -> CelInt {
    (q.0.cmp(&other.0) as i64).into()
}

fn as_approximate_float(q: &Quantity) -> CelDouble {
    q.0.as_approximate_f64().into()
}

fn as_integer(q: &Quantity) -> Result<CelInt, ExecutionError> {
    q.0.as_exact_i64().map(CelInt::from).ok_or_else(|| {
        ExecutionError::function_error("asInteger", "cannot convert value to integer")
    })
}

fn is_integer(q: &Quantity) -> CelBool {
    q.0.as_exact_i64().is_some().into()
}

fn overflow(function: &str) -> ExecutionError {
    ExecutionError::function_error(function, "quantity out of range")
}

fn add(q: &Quantity, other: &Quantity) -> Result<Quantity, ExecutionError> {
    q.0.checked_add(&other.0)
        .map(Quantity)
        .ok_or_else(|| overflow("add"))
}

/// Upstream adds `resource.NewQuantity(n, DecimalExponent)`.
fn add_int(q: &Quantity, n: &CelInt) -> Result<Quantity, ExecutionError> {
    add(
        q,
        &Quantity(ApiQuantity::from_units(*n.inner(), Format::DecimalExponent)),
    )
}

fn sub(q: &Quantity, other: &Quantity) -> Result<Quantity, ExecutionError> {
    q.0.checked_sub(&other.0)
        .map(Quantity)
        .ok_or_else(|| overflow("sub"))
}

fn sub_int(q: &Quantity, n: &CelInt) -> Result<Quantity, ExecutionError> {
    sub(
        q,
        &Quantity(ApiQuantity::from_units(*n.inner(), Format::DecimalExponent)),
    )
}

#[cfg(test)]
mod tests {
    use cel::Value;

    use super::super::test_support::{check, eval, Want::*};

    /// Upstream's `quantity_test.go` cases (those of the functions upstream 1.32 has).
    #[test]
    fn quantity_functions_behave_as_upstream() {
        check(&[
            ("quantity('12Mi') == quantity('12582912')", True),
            (
                "quantity('10Mo')",
                Error("quantities must match the regular expression"),
            ),
            (
                "quantity('10Mm')",
                Error("unable to parse quantity's suffix"),
            ),
            ("isQuantity('20')", True),
            ("isQuantity('20M')", True),
            ("isQuantity('20Mi')", True),
            ("isQuantity('20Mo')", False),
            ("isQuantity('10Mm')", False),
            ("quantity('200M') == quantity('200M')", True),
            (
                "quantity('200M') == quantity('0.2G') && quantity('0.2G') == quantity('200M')",
                True,
            ),
            (
                "quantity('2M') == quantity('0.002G') && quantity('2000k') == quantity('2M') \
                 && quantity('0.002G') == quantity('2000k')",
                True,
            ),
            ("quantity('200M') == quantity('0.3G')", False),
            ("quantity('50M').isLessThan(quantity('50Mi'))", True),
            ("quantity('50M').isLessThan(quantity('100M'))", True),
            ("quantity('100M').isLessThan(quantity('50M'))", False),
            ("quantity('50Mi').isGreaterThan(quantity('50M'))", True),
            ("quantity('150Mi').isGreaterThan(quantity('100Mi'))", True),
            ("quantity('50M').isGreaterThan(quantity('100M'))", False),
            (
                "quantity('200M').compareTo(quantity('0.2G'))",
                Value(Value::Int(0)),
            ),
            (
                "quantity('50M').compareTo(quantity('50Mi'))",
                Value(Value::Int(-1)),
            ),
            (
                "quantity('50Mi').compareTo(quantity('50M'))",
                Value(Value::Int(1)),
            ),
            (
                "quantity('50k').add(quantity('20')) == quantity('50.02k')",
                True,
            ),
            (
                "quantity('50k').add(20).isLessThan(quantity('50020'))",
                False,
            ),
            (
                "quantity('50k').sub(quantity('20')) == quantity('49.98k')",
                True,
            ),
            ("quantity('50k').sub(20) == quantity('49980')", True),
            (
                "quantity('50k').add(20).sub(quantity('100k')).asInteger()",
                Value(Value::Int(-49980)),
            ),
            (
                "quantity('50k').add(20).sub(quantity('100k')).sub(-50000).asInteger()",
                Value(Value::Int(20)),
            ),
            ("quantity('50k').asInteger()", Value(Value::Int(50000))),
            (
                "quantity('100000000000G').asInteger()",
                Error("cannot convert value to integer"),
            ),
            ("quantity('100000000000G').isInteger()", False),
            ("quantity('50').isInteger()", True),
            ("quantity('1.5').isInteger()", False),
            (
                "quantity('50.703k').asApproximateFloat()",
                Value(Value::Float(50703.0)),
            ),
            ("quantity('-3').sign()", Value(Value::Int(-1))),
            ("quantity('0').sign()", Value(Value::Int(0))),
            ("quantity('5m').sign()", Value(Value::Int(1))),
        ]);
        // No `quantity(int)` overload.
        assert!(eval("isQuantity(20)").is_err());
    }
}
