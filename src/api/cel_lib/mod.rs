//! Kubernetes' CEL libraries (`k8s.io/apiserver/pkg/cel/library`) on the `cel` crate: the
//! functions CRD validation rules and admission policies call beyond CEL's standard
//! library, registered on an environment with [`register`].
//!
//! Each file is one upstream library, with upstream's semantics and error messages:
//! `lists` (`isSorted`, `sum`, `min`, `max`, `indexOf`, `lastIndexOf`), `regex` (`find`,
//! `findAll`), `sets` (cel-go's `sets.contains`, `sets.equivalent`, `sets.intersects`),
//! `quantity`, `url`, `ip` (with `ip.isCanonical`), `cidr` and `format`. The strings
//! extension (`charAt`, `indexOf`, `lowerAscii`, `replace`, `split`, `substring`, `trim`,
//! `join`, `strings.quote`, `format`…), the lists extension (`slice`, `flatten`…) and
//! optional types come with the crate.
//!
//! Not here: `authz` (no authorizer in a CRD rule) and the newer `semver`, `jsonpatch`
//! and `image` libraries.

mod cidr;
mod format;
mod ip;
mod lists;
mod quantity;
mod regex;
mod sets;
mod url;

use cel::common::types::{CelInt, CelString};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

/// Names a rule may call functions under (`ip.isCanonical(…)`, `format.dns1123Label()`),
/// which a check of its identifiers must not take for variables.
pub const NAMESPACES: [&str; 6] = ["optional", "strings", "lists", "ip", "format", "sets"];

/// Registers the crate's strings and lists extensions and every Kubernetes library on
/// `env`. Fails only when `env` already declares one of their overloads.
pub fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_extension(cel::extensions::strings)?;
    env.add_extension(cel::extensions::lists)?;
    lists::register(env)?;
    regex::register(env)?;
    sets::register(env)?;
    quantity::register(env)?;
    url::register(env)?;
    ip::register(env)?;
    cidr::register(env)?;
    format::register(env)?;
    Ok(())
}

/// `args` as the `N` arguments of an overload (the dispatcher only calls an overload with
/// as many as it was declared with).
fn take<'b, 'v, const N: usize>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<[CowVal<'b, 'v>; N], ExecutionError> {
    args.try_into()
        .map_err(|args: Vec<_>| ExecutionError::invalid_argument_count(N, args.len()))
}

/// The elements of a list argument.
fn elements<'b, 'v>(
    function: &str,
    list: &'b (dyn Val + 'v),
) -> Result<Vec<&'b (dyn Val + 'v)>, ExecutionError> {
    let mut items = list
        .as_iterable()
        .ok_or_else(|| ExecutionError::function_error(function, "argument must be a list"))?
        .iter();
    let mut out = Vec::new();
    while let Some(item) = items.next() {
        out.push(item);
    }
    Ok(out)
}

fn string_arg<'a>(function: &str, v: &'a dyn Val) -> Result<&'a str, ExecutionError> {
    v.downcast_ref::<CelString>()
        .map(|s| s.inner())
        .ok_or_else(|| ExecutionError::function_error(function, "argument must be a string"))
}

fn int_arg(function: &str, v: &dyn Val) -> Result<i64, ExecutionError> {
    v.downcast_ref::<CelInt>()
        .map(|i| *i.inner())
        .ok_or_else(|| ExecutionError::function_error(function, "argument must be an int"))
}

/// A library type's value from an argument its overload was declared for.
fn typed<'a, T: cel::common::value::StaticVal>(
    function: &str,
    v: &'a dyn Val,
) -> Result<&'a T, ExecutionError> {
    v.downcast_ref::<T>().ok_or_else(|| {
        ExecutionError::function_error(
            function,
            format!("unexpected argument of type {}", v.get_type().name()),
        )
    })
}

/// Implements `Val` for a library type: its CEL type (a named opaque type, as upstream's
/// `cel.ObjectType`s are to a rule), equality by value, nothing else.
macro_rules! library_type {
    ($rust:ty, $static_type:ident, $name:literal) => {
        static $static_type: std::sync::LazyLock<cel::common::types::Type> =
            std::sync::LazyLock::new(|| cel::common::types::Type::new_opaque_type($name));

        impl cel::common::value::Val for $rust {
            fn get_type(&self) -> &cel::common::types::Type {
                &$static_type
            }
            fn cel_type() -> &'static cel::common::types::Type {
                &$static_type
            }
            fn equals(&self, other: &dyn cel::common::value::Val) -> bool {
                other.downcast_ref::<$rust>().is_some_and(|o| o == self)
            }
            fn clone_as_boxed<'v>(&self) -> Box<dyn cel::common::value::Val + 'v>
            where
                Self: 'v,
            {
                Box::new(self.clone())
            }
            fn as_any(&self) -> Option<&dyn std::any::Any> {
                Some(self)
            }
        }
        impl cel::common::value::StaticVal for $rust {}
    };
}
use library_type;

#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use cel::{Context, Env, Value};

    /// Evaluates `expr` in an environment with every library registered.
    pub fn eval(expr: &str) -> Result<Value, String> {
        let mut env = Env::stdlib();
        super::register(&mut env).expect("libraries register once");
        let program = env.compile(expr).map_err(|e| e.to_string())?;
        let ctx = Context::with_env(Arc::new(env));
        program.execute(&ctx).map_err(|e| match e {
            cel::ExecutionError::FunctionError { message, .. } => message,
            e => e.to_string(),
        })
    }

    /// Table row: an expression and what it must give.
    pub enum Want {
        /// A `true` result.
        True,
        /// A `false` result.
        False,
        Value(Value),
        /// An error whose message contains this text.
        Error(&'static str),
    }

    pub fn check(cases: &[(&str, Want)]) {
        for (expr, want) in cases {
            let got = eval(expr);
            match want {
                Want::True => assert_eq!(got, Ok(Value::Bool(true)), "{expr}"),
                Want::False => assert_eq!(got, Ok(Value::Bool(false)), "{expr}"),
                Want::Value(v) => assert_eq!(got.as_ref(), Ok(v), "{expr}"),
                Want::Error(text) => match got {
                    Err(e) => assert!(e.contains(text), "{expr}: {e:?} lacks {text:?}"),
                    Ok(v) => panic!("{expr}: {v:?}, want an error containing {text:?}"),
                },
            }
        }
    }
}
