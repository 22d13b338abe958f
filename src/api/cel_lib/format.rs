//! Kubernetes' format library (`library.Format`): `format.named(name)`, the
//! `format.<name>()` constants and `<Format>.validate(s)`, which gives `optional.none()`
//! for a valid string and the list of upstream's error messages otherwise.

use cel::common::types::{CelList, CelOptional, CelString, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

use super::library_type;
use super::url::parse_request_uri;
use crate::api::crd::formats;
use crate::api::validation::{
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_qualified_name,
    is_valid_label_value, mask_trailing_dash,
};

/// A `kubernetes.NamedFormat`: upstream's name for it and its validation.
#[derive(Clone)]
pub struct Format {
    name: &'static str,
    validate: fn(&str) -> Vec<String>,
}

impl std::fmt::Debug for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Format({})", self.name)
    }
}

impl PartialEq for Format {
    fn eq(&self, other: &Format) -> bool {
        self.name == other.name
    }
}

impl Eq for Format {}

library_type!(Format, FORMAT_TYPE, "kubernetes.NamedFormat");

fn strfmt(format: &str, value: &str, message: &str) -> Vec<String> {
    match formats::check(format, value) {
        Some(false) => vec![message.to_string()],
        _ => Vec::new(),
    }
}

/// Upstream `ConstantFormats`: the name a rule uses, and the format.
const FORMATS: [(&str, Format); 13] = [
    (
        "dns1123Label",
        Format {
            name: "DNS1123Label",
            validate: is_dns1123_label,
        },
    ),
    (
        "dns1123Subdomain",
        Format {
            name: "DNS1123Subdomain",
            validate: is_dns1123_subdomain,
        },
    ),
    (
        "dns1035Label",
        Format {
            name: "DNS1035Label",
            validate: is_dns1035_label,
        },
    ),
    (
        "qualifiedName",
        Format {
            name: "QualifiedName",
            validate: is_qualified_name,
        },
    ),
    (
        "dns1123LabelPrefix",
        Format {
            name: "DNS1123LabelPrefix",
            validate: |s| is_dns1123_label(&mask_trailing_dash(s)),
        },
    ),
    (
        "dns1123SubdomainPrefix",
        Format {
            name: "DNS1123SubdomainPrefix",
            validate: |s| is_dns1123_subdomain(&mask_trailing_dash(s)),
        },
    ),
    (
        "dns1035LabelPrefix",
        Format {
            name: "DNS1035LabelPrefix",
            validate: |s| is_dns1035_label(&mask_trailing_dash(s)),
        },
    ),
    (
        "labelValue",
        Format {
            name: "LabelValue",
            validate: is_valid_label_value,
        },
    ),
    (
        "uri",
        Format {
            name: "URI",
            validate: |s| parse_request_uri(s).err().into_iter().collect(),
        },
    ),
    (
        "uuid",
        Format {
            name: "uuid",
            validate: |s| strfmt("uuid", s, "does not match the UUID format"),
        },
    ),
    (
        "byte",
        Format {
            name: "byte",
            validate: |s| strfmt("byte", s, "invalid base64"),
        },
    ),
    (
        "date",
        Format {
            name: "date",
            validate: |s| strfmt("date", s, "invalid date"),
        },
    ),
    (
        "datetime",
        Format {
            name: "datetime",
            validate: |s| strfmt("datetime", s, "invalid datetime"),
        },
    ),
];

fn constant<'b, 'v>(key: &str) -> Result<CowVal<'b, 'v>, ExecutionError> {
    FORMATS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, f)| CowVal::owned(f.clone()))
        .ok_or_else(|| ExecutionError::function_error("format", format!("no format {key}")))
}

/// One zero-argument `format.<name>()` function per format (an overload is a plain `fn`).
macro_rules! constants {
    ($($key:literal => $fn_name:ident),* $(,)?) => {
        $(
            fn $fn_name<'b, 'v>(_: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
                constant($key)
            }
        )*
        fn register_constants(env: &mut Env) -> Result<(), DeclarationError> {
            $(
                env.add_overload(concat!("format.", $key), concat!("format.", $key), vec![], $fn_name)?;
            )*
            Ok(())
        }
    };
}

constants! {
    "dns1123Label" => dns1123_label,
    "dns1123Subdomain" => dns1123_subdomain,
    "dns1035Label" => dns1035_label,
    "qualifiedName" => qualified_name,
    "dns1123LabelPrefix" => dns1123_label_prefix,
    "dns1123SubdomainPrefix" => dns1123_subdomain_prefix,
    "dns1035LabelPrefix" => dns1035_label_prefix,
    "labelValue" => label_value,
    "uri" => uri,
    "uuid" => uuid,
    "byte" => byte,
    "date" => date,
    "datetime" => datetime,
}

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    register_constants(env)?;
    env.add_overload("format.named", "format-named", vec![STRING_TYPE], named)?;
    env.add_member_overload(
        "validate",
        "format-validate",
        Format::cel_type().to_owned(),
        vec![STRING_TYPE],
        validate,
    )?;
    Ok(())
}

/// `format.named(name)`: the format, or `optional.none()` for an unknown name.
fn named<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [name] = super::take(args)?;
    let name = super::string_arg("format.named", name.as_ref())?;
    let found = FORMATS.iter().find(|(k, _)| *k == name);
    Ok(CowVal::owned(match found {
        Some((_, f)) => CelOptional::of(Box::new(f.clone())),
        None => CelOptional::none(),
    }))
}

fn validate<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let [format, s] = super::take(args)?;
    let format = super::typed::<Format>("validate", format.as_ref())?;
    let errors = (format.validate)(super::string_arg("validate", s.as_ref())?);
    if errors.is_empty() {
        return Ok(CowVal::owned(CelOptional::none()));
    }
    let list: Vec<Box<dyn Val + 'v>> = errors
        .into_iter()
        .map(|e| Box::new(CelString::from(e)) as Box<dyn Val>)
        .collect();
    Ok(CowVal::owned(CelOptional::of(Box::new(CelList::from(
        list,
    )))))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{check, Want::*};

    /// Upstream's `format_test.go` cases.
    #[test]
    fn formats_validate_as_upstream() {
        check(&[
            ("format.dns1123Label().validate('my-label-name').hasValue()", False),
            ("format.dns1123Label().validate('MY-LABEL').hasValue()", True),
            (
                "format.dns1123Label().validate('MY-LABEL').value() == ['a lowercase RFC 1123 label must consist of lower case alphanumeric characters or \\'-\\', and must start and end with an alphanumeric character (e.g. \\'my-name\\',  or \\'123-abc\\', regex used for validation is \\'[a-z0-9]([-a-z0-9]*[a-z0-9])?\\')']",
                True,
            ),
            ("format.dns1123Subdomain().validate('apiextensions.k8s.io').hasValue()", False),
            ("format.dns1123Subdomain().validate('Apiextensions.k8s.io').hasValue()", True),
            ("format.dns1035Label().validate('my-label-name').hasValue()", False),
            ("format.dns1035Label().validate('1-label').hasValue()", True),
            ("format.qualifiedName().validate('apiextensions.k8s.io/v1beta1').hasValue()", False),
            ("format.qualifiedName().validate('/v1beta1').hasValue()", True),
            ("format.dns1123LabelPrefix().validate('my-label-prefix-').hasValue()", False),
            ("format.dns1123SubdomainPrefix().validate('mysubdomain.prefix.-').hasValue()", False),
            ("format.dns1035LabelPrefix().validate('my-label-prefix-').hasValue()", False),
            ("format.labelValue().validate('my-cool-label-Value').hasValue()", False),
            ("format.labelValue().validate('-bad').hasValue()", True),
            ("format.uri().validate('http://example.com').hasValue()", False),
            ("format.uri().validate('example.com').value() == ['parse \"example.com\": invalid URI for request']", True),
            ("format.uuid().validate('123e4567-e89b-12d3-a456-426614174000').hasValue()", False),
            ("format.uuid().validate('not-a-uuid').value() == ['does not match the UUID format']", True),
            ("format.byte().validate('aGVsbG8=').hasValue()", False),
            ("format.byte().validate('%%%').value() == ['invalid base64']", True),
            ("format.date().validate('2021-01-01').hasValue()", False),
            ("format.date().validate('2021-13-01').value() == ['invalid date']", True),
            ("format.datetime().validate('2021-01-01T00:00:00Z').hasValue()", False),
            ("format.datetime().validate('2021-01-01').value() == ['invalid datetime']", True),
            ("format.named('dns1123Label').hasValue()", True),
            ("format.named('dns1123Label').value().validate('ok').hasValue()", False),
            ("format.named('nope').hasValue()", False),
            // An optional is never `null` (cel-go's `Optional.Equal`): Gateway API's
            // XBackend rule `validate(self) == null` is false even for a valid name.
            ("format.dns1123Label().validate('ok') == null", False),
            ("format.named('dns1123Label').value() == format.dns1123Label()", True),
        ]);
    }
}
