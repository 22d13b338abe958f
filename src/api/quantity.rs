//! Resource quantities (`k8s.io/apimachinery/pkg/api/resource.Quantity`): the one parser,
//! exact value, rounding and canonical form every part of orc uses for `cpu: 250m`,
//! `memory: 1Gi` and the like.
//!
//! A quantity is held as a whole number of nano-units in an `i128`, which is exact for
//! everything upstream can represent after its own rounding (upstream rounds any value
//! finer than `1n` up to `1n`) up to ±1.7·10²⁹ units; larger values are refused as
//! [`QuantityError::Numeric`] where upstream would switch to arbitrary precision.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use thiserror::Error;

/// Nano-units per unit: the finest step a quantity keeps.
const NANOS_PER_UNIT: i128 = 1_000_000_000;
/// Nano-units per milli-unit.
const NANOS_PER_MILLI: i128 = 1_000_000;
/// Decimal exponent of one nano-unit.
const NANO_EXPONENT: i32 = -9;
/// Upstream caps binary-suffixed quantities at the largest `int64`.
const MAX_BINARY_UNITS: i128 = i64::MAX as i128;
/// Binary quantities in (-1024, 1024) are written in decimal form (upstream `CanonicalizeBytes`).
const BINARY_FORMAT_FLOOR: i128 = 1024 * NANOS_PER_UNIT;
/// Decimal SI suffixes by exponent, from nano to exa.
const DECIMAL_SUFFIXES: [(i32, &str); 10] = [
    (-9, "n"),
    (-6, "u"),
    (-3, "m"),
    (0, ""),
    (3, "k"),
    (6, "M"),
    (9, "G"),
    (12, "T"),
    (15, "P"),
    (18, "E"),
];
/// Binary SI suffixes by power of 1024.
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
/// Most significant digits an `i128` always holds.
const MAX_DIGITS: usize = 38;

/// Why a quantity did not parse; messages as upstream's `ErrFormatWrong`, `ErrNumeric`, `ErrSuffix`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    FormatWrong,
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// How a quantity is written back out; taken from the suffix it was parsed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `12e6`, `1E-3`.
    DecimalExponent,
    /// `5Gi`, `128Ki`.
    BinarySI,
    /// `500m`, `2k`, `1`.
    DecimalSI,
}

/// An exact resource quantity. Equality and ordering compare values (`1k == 1000`),
/// not spellings; [`fmt::Display`] writes upstream's canonical form (`1024Mi` → `1Gi`).
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

impl Quantity {
    /// A whole number of units written in `format`.
    pub fn from_units(units: i64, format: Format) -> Quantity {
        Quantity {
            nanos: i128::from(units) * NANOS_PER_UNIT,
            format,
        }
    }

    /// A number of milli-units (`250` → `250m`).
    pub fn from_millis(millis: i64) -> Quantity {
        Quantity {
            nanos: i128::from(millis) * NANOS_PER_MILLI,
            format: Format::DecimalSI,
        }
    }

    /// A quantity in JSON wire form: a string, or a number (upstream accepts `cpu: 1`).
    pub fn from_json(value: &Value) -> Result<Quantity, QuantityError> {
        match value {
            Value::String(s) => s.parse(),
            Value::Number(n) => n.to_string().parse(),
            _ => Err(QuantityError::FormatWrong),
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The value in whole units, rounded away from zero (upstream `Value`); saturates at
    /// the `i64` bounds.
    pub fn value(&self) -> i64 {
        saturate(div_away_from_zero(self.nanos, NANOS_PER_UNIT))
    }

    /// The value in thousandths, rounded away from zero (upstream `MilliValue`); saturates
    /// at the `i64` bounds.
    pub fn milli_value(&self) -> i64 {
        saturate(div_away_from_zero(self.nanos, NANOS_PER_MILLI))
    }

    /// The value as a whole number of units when it is one and fits an `i64` (upstream
    /// `AsInt64`).
    pub fn as_exact_i64(&self) -> Option<i64> {
        if self.nanos % NANOS_PER_UNIT != 0 {
            return None;
        }
        i64::try_from(self.nanos / NANOS_PER_UNIT).ok()
    }

    /// The value as the nearest `f64` (upstream `AsApproximateFloat64`).
    pub fn as_approximate_f64(&self) -> f64 {
        self.nanos as f64 / NANOS_PER_UNIT as f64
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The exact sum, in this quantity's format; `None` when it leaves the representable range.
    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        Some(Quantity {
            nanos: self.nanos.checked_add(other.nanos)?,
            format: self.format,
        })
    }

    /// The exact difference, in this quantity's format; `None` when it leaves the representable range.
    pub fn checked_sub(&self, other: &Quantity) -> Option<Quantity> {
        Some(Quantity {
            nanos: self.nanos.checked_sub(other.nanos)?,
            format: self.format,
        })
    }

    /// Upstream's canonical spelling as (number, suffix).
    fn canonical(&self) -> (i128, String) {
        if self.nanos == 0 {
            return (0, String::new());
        }
        let binary_units = (self.format == Format::BinarySI
            && self.nanos.abs() >= BINARY_FORMAT_FLOOR
            && self.nanos % NANOS_PER_UNIT == 0)
            .then_some(self.nanos / NANOS_PER_UNIT);
        if let Some(mut amount) = binary_units {
            let mut powers = 0;
            while powers + 1 < BINARY_SUFFIXES.len() && amount % 1024 == 0 {
                amount /= 1024;
                powers += 1;
            }
            return (amount, BINARY_SUFFIXES[powers].to_string());
        }
        let (mut amount, mut exponent) = (self.nanos, NANO_EXPONENT);
        while amount % 10 == 0 {
            amount /= 10;
            exponent += 1;
        }
        // Exponents are written in steps of three; the digits taken back always fit,
        // as they were removed above.
        let extra = exponent.rem_euclid(3);
        amount *= 10i128.pow(extra as u32);
        exponent -= extra;
        match self.format {
            Format::DecimalExponent if exponent == 0 => (amount, String::new()),
            Format::DecimalExponent => (amount, format!("e{exponent}")),
            Format::DecimalSI | Format::BinarySI => {
                let (max_exponent, max_suffix) = DECIMAL_SUFFIXES[DECIMAL_SUFFIXES.len() - 1];
                if exponent > max_exponent {
                    amount *= 10i128.pow((exponent - max_exponent) as u32);
                    return (amount, max_suffix.to_string());
                }
                let suffix = DECIMAL_SUFFIXES
                    .iter()
                    .find(|(e, _)| *e == exponent)
                    .map_or("", |(_, s)| s);
                (amount, suffix.to_string())
            }
        }
    }
}

fn div_away_from_zero(n: i128, d: i128) -> i128 {
    let q = n / d;
    match n % d {
        0 => q,
        _ if n > 0 => q + 1,
        _ => q - 1,
    }
}

fn saturate(n: i128) -> i64 {
    i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Quantity) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Quantity) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Quantity) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (number, suffix) = self.canonical();
        write!(f, "{number}{suffix}")
    }
}

/// The pieces of a quantity string, split as upstream's `parseQuantityString` does.
struct Parts<'a> {
    negative: bool,
    /// Integer digits without leading zeros.
    whole: &'a str,
    /// Digits after the point.
    fraction: &'a str,
    suffix: &'a str,
}

fn split_parts(s: &str) -> Result<Parts<'_>, QuantityError> {
    let (negative, rest) = match s.as_bytes().first() {
        None => return Err(QuantityError::FormatWrong),
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        Some(_) => (false, s),
    };
    let digits_end = |t: &str| t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (whole, rest) = rest.split_at(digits_end(rest));
    let (fraction, suffix) = match rest.strip_prefix('.') {
        Some(after) => after.split_at(digits_end(after)),
        None => ("", rest),
    };
    // Upstream reads a bare sign or point as zero; neither matches its own regex, so
    // they are refused here.
    if whole.is_empty() && fraction.is_empty() {
        return Err(QuantityError::FormatWrong);
    }
    // The suffix must match [eEinumkKMGTP]*[-+]?[0-9]*.
    let letters_end = suffix
        .find(|c: char| !"eEinumkKMGTP".contains(c))
        .unwrap_or(suffix.len());
    let tail = &suffix[letters_end..];
    let tail = tail.strip_prefix(['-', '+']).unwrap_or(tail);
    if !tail.bytes().all(|c| c.is_ascii_digit()) {
        return Err(QuantityError::FormatWrong);
    }
    Ok(Parts {
        negative,
        whole: whole.trim_start_matches('0'),
        fraction,
        suffix,
    })
}

/// A suffix as (power of ten, power of two, format), as upstream's suffixer interprets it.
fn interpret_suffix(suffix: &str) -> Result<(i32, u32, Format), QuantityError> {
    if let Some((exponent, _)) = DECIMAL_SUFFIXES.iter().find(|(_, s)| *s == suffix) {
        return Ok((*exponent, 0, Format::DecimalSI));
    }
    if let Some(i) = BINARY_SUFFIXES[1..].iter().position(|s| *s == suffix) {
        return Ok((0, 10 * (i as u32 + 1), Format::BinarySI));
    }
    let exponent = suffix
        .strip_prefix(['e', 'E'])
        .filter(|e| !e.is_empty())
        .ok_or(QuantityError::Suffix)?;
    let exponent: i32 = exponent.parse().map_err(|_| QuantityError::Suffix)?;
    Ok((exponent, 0, Format::DecimalExponent))
}

/// `digits × 10^exponent` in nano-units, the part finer than `1n` rounded up.
fn decimal_nanos(digits: &str, exponent: i32) -> Result<i128, QuantityError> {
    let shift = exponent.saturating_sub(NANO_EXPONENT);
    let (kept, dropped) = if shift >= 0 {
        (digits, "")
    } else {
        let keep = digits.len().saturating_sub(shift.unsigned_abs() as usize);
        digits.split_at(keep)
    };
    let kept = kept.trim_start_matches('0');
    if kept.len() > MAX_DIGITS {
        return Err(QuantityError::Numeric);
    }
    let mut nanos: i128 = if kept.is_empty() {
        0
    } else {
        kept.parse().map_err(|_| QuantityError::Numeric)?
    };
    if shift > 0 {
        let scale = 10i128
            .checked_pow(shift.unsigned_abs())
            .ok_or(QuantityError::Numeric)?;
        nanos = nanos.checked_mul(scale).ok_or(QuantityError::Numeric)?;
    }
    if dropped.bytes().any(|b| b != b'0') {
        nanos += 1;
    }
    Ok(nanos)
}

/// `digits × 10^-decimals × 2^power` in nano-units, the part finer than `1n` rounded up.
fn binary_nanos(digits: &str, decimals: usize, power: u32) -> Result<i128, QuantityError> {
    let digits = digits.trim_start_matches('0');
    if digits.len() > MAX_DIGITS {
        return Err(QuantityError::Numeric);
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| QuantityError::Numeric)?
    };
    let exact = mantissa
        .checked_mul(1i128 << power)
        .and_then(|m| m.checked_mul(NANOS_PER_UNIT))
        .ok_or(QuantityError::Numeric)?;
    Ok(match 10i128.checked_pow(decimals as u32) {
        Some(divisor) => div_away_from_zero(exact, divisor),
        None => i128::from(exact != 0),
    })
}

impl FromStr for Quantity {
    type Err = QuantityError;

    /// Parses upstream's grammar: `[+-]digits[.digits]` and then a suffix (`n u m k M G T P E`,
    /// `Ki Mi Gi Ti Pi Ei`, or a decimal exponent `e3`/`E-2`). Whitespace is not allowed.
    fn from_str(s: &str) -> Result<Quantity, QuantityError> {
        let parts = split_parts(s)?;
        let (exponent, power, mut format) = interpret_suffix(parts.suffix)?;
        let digits = format!("{}{}", parts.whole, parts.fraction);
        let decimals = parts.fraction.len();
        let mut nanos = if format == Format::BinarySI {
            binary_nanos(&digits, decimals, power)?
        } else {
            let decimals = i32::try_from(decimals).map_err(|_| QuantityError::Numeric)?;
            decimal_nanos(&digits, exponent.saturating_sub(decimals))?
        };
        if format == Format::BinarySI {
            nanos = nanos.min(MAX_BINARY_UNITS * NANOS_PER_UNIT);
            if nanos < NANOS_PER_UNIT && nanos > 0 {
                format = Format::DecimalSI;
            }
        }
        if parts.negative {
            nanos = -nanos;
        }
        Ok(Quantity { nanos, format })
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    /// Reads a JSON string or number, as upstream's `UnmarshalJSON` does.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Quantity, D::Error> {
        struct QuantityVisitor;

        impl Visitor<'_> for QuantityVisitor {
            type Value = Quantity;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity string or number")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Quantity, E> {
                s.parse().map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Quantity, E> {
                self.visit_str(&n.to_string())
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Quantity, E> {
                self.visit_str(&n.to_string())
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Quantity, E> {
                self.visit_str(&n.to_string())
            }
        }

        deserializer.deserialize_any(QuantityVisitor)
    }
}

/// The spelling upstream stores and answers for a quantity written `s` (a JSON string,
/// or a JSON number's text): upstream's `UnmarshalJSON` trims spaces, and its parser
/// keeps the string as written when it is already canonical and fits its fast `int64`
/// path (`1Gi`, `500m`, `1e3` and, as written, `+5`); anything else is written back in
/// the canonical form (`0.5` → `500m`, `1024Mi` → `1Gi`, `1000` → `1k`).
pub fn stored_spelling(s: &str) -> Result<String, QuantityError> {
    let s = s.trim();
    let q: Quantity = s.parse()?;
    if s == "0" || keeps_spelling(s) {
        return Ok(s.to_string());
    }
    Ok(q.to_string())
}

/// Whether upstream's `ParseQuantity` keeps `s` as its string (its "if the number is in
/// canonical form, reuse the string" branch), `s` being a valid quantity.
fn keeps_spelling(s: &str) -> bool {
    /// Decimal digits upstream's fast path takes (`maxInt64Factors`).
    const MAX_INT64_FACTORS: i32 = 18;
    let Ok(parts) = split_parts(s) else {
        return false;
    };
    let Ok((exponent, power, format)) = interpret_suffix(parts.suffix) else {
        return false;
    };
    let num = if parts.whole.is_empty() {
        "0"
    } else {
        parts.whole
    };
    let (num_len, denom_len) = (num.len() as i32, parts.fraction.len() as i32);
    let (mut scale, precision) = match format {
        Format::DecimalSI | Format::DecimalExponent => {
            (exponent, MAX_INT64_FACTORS - (num_len + denom_len))
        }
        // Only whole binary amounts take the fast path; `1Mi` has about six decimal
        // digits of precision (upstream's `exponent*3/10`).
        Format::BinarySI if denom_len == 0 => (0, 15 - num_len - (power as i32 * 3 / 10) - 1),
        Format::BinarySI => return false,
    };
    if precision < 0 {
        return false;
    }
    scale -= denom_len;
    if scale < NANO_EXPONENT {
        return false;
    }
    let shifted = format!("{num}{}", parts.fraction);
    let Ok(value) = shifted.parse::<i64>() else {
        return false;
    };
    if value.checked_mul(1i64 << power).is_none() {
        return false;
    }
    match format {
        Format::BinarySI => power % 10 == 0 && value & 0x07 != 0,
        _ => scale % 3 == 0 && !shifted.ends_with("000") && !shifted.starts_with('0'),
    }
}

/// A CPU quantity in millicores, rounded up (`"250m"` → 250, `"1"` → 1000); `None` when it
/// does not parse.
pub fn quantity_millis(s: &str) -> Option<i64> {
    s.parse::<Quantity>().ok().map(|q| q.milli_value())
}

/// A memory/storage quantity in bytes, rounded up (`"1Ki"` → 1024, `"1k"` → 1000); `None`
/// when it does not parse.
pub fn quantity_bytes(s: &str) -> Option<i64> {
    s.parse::<Quantity>().ok().map(|q| q.value())
}

/// Parses a quantity string (the same as `s.parse::<Quantity>()`).
pub fn parse_quantity(s: &str) -> Result<Quantity, QuantityError> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        s.parse()
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn quantities_read_as_upstream_values() {
        // (input, Value(), MilliValue(), String())
        let cases: &[(&str, i64, i64, &str)] = &[
            ("1Gi", 1 << 30, 1000 << 30, "1Gi"),
            ("500M", 500_000_000, 500_000_000_000, "500M"),
            ("1e9", 1_000_000_000, 1_000_000_000_000, "1e9"),
            ("129e6", 129_000_000, 129_000_000_000, "129e6"),
            ("123Mi", 123 << 20, 123_000 << 20, "123Mi"),
            ("0.5", 1, 500, "500m"),
            ("500m", 1, 500, "500m"),
            ("2n", 1, 1, "2n"),
            ("5u", 1, 1, "5u"),
            ("1Pi", 1 << 50, 1000 << 50, "1Pi"),
            ("1Ei", 1 << 60, i64::MAX, "1Ei"),
            ("1E", 1_000_000_000_000_000_000, i64::MAX, "1E"),
            ("250m", 1, 250, "250m"),
            ("1", 1, 1000, "1"),
            ("1.5", 2, 1500, "1500m"),
            ("0.1", 1, 100, "100m"),
            ("100u", 1, 1, "100u"),
            ("1Ki", 1024, 1_024_000, "1Ki"),
            ("2Ti", 2 << 40, 2000 << 40, "2Ti"),
            ("1k", 1000, 1_000_000, "1k"),
            ("1E3", 1000, 1_000_000, "1e3"),
            ("12e-1", 2, 1200, "1200e-3"),
            ("+5", 5, 5000, "5"),
            (".5Ki", 512, 512_000, "512"),
            ("-1", -1, -1000, "-1"),
            ("-1.5", -2, -1500, "-1500m"),
            ("0", 0, 0, "0"),
            ("0Gi", 0, 0, "0"),
            ("1000", 1000, 1_000_000, "1k"),
            ("0.0000000001", 1, 1, "1n"),
        ];
        for &(input, value, milli, canonical) in cases {
            let parsed = q(input);
            assert_eq!(parsed.value(), value, "value of {input}");
            assert_eq!(parsed.milli_value(), milli, "milli value of {input}");
            assert_eq!(parsed.to_string(), canonical, "canonical form of {input}");
        }
    }

    #[test]
    fn canonical_form_gathers_units_into_the_largest_suffix() {
        for (input, canonical) in [
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("1024Ki", "1Mi"),
            ("1000k", "1M"),
            ("1000000m", "1k"),
            ("0.5Ki", "512"),
            ("0.5Mi", "512Ki"),
            ("1.0000000001Ki", "1024000000103n"),
            ("-1Gi", "-1Gi"),
            ("1e0", "1"),
            ("10e2", "1e3"),
            ("1000E", "1000E"),
            ("1e-3", "1e-3"),
            ("4Ei", "4Ei"),
        ] {
            assert_eq!(q(input).to_string(), canonical, "canonical form of {input}");
        }
    }

    #[test]
    fn binary_quantities_are_capped_at_the_largest_int64() {
        assert_eq!(q("16Ei").value(), i64::MAX);
        assert_eq!(q("16Ei").to_string(), i64::MAX.to_string());
    }

    #[test]
    fn equal_values_compare_equal_whatever_their_spelling() {
        assert_eq!(q("1k"), q("1000"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1e3"), q("1k"));
        assert!(q("999m") < q("1"));
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("500m").checked_add(&q("0.5")), Some(q("1")));
        assert_eq!(q("1Gi").checked_sub(&q("512Mi")), Some(q("512Mi")));
    }

    #[test]
    fn bad_quantities_are_rejected_with_upstream_errors() {
        for input in [
            "", "abc", "1 Gi", " 1", "1 ", "1Gb", "1.2.3", "-", ".", "1.1.M", "0.1am", "1+1.0M",
            "-3.01e-x",
        ] {
            assert_eq!(
                parse_quantity(input),
                Err(QuantityError::FormatWrong),
                "{input:?}"
            );
        }
        for input in [
            "1kk", "1Mm", "0.1mi", ".5i", "1i", "-3.01i", "1e", "-3.01e-",
        ] {
            assert_eq!(
                parse_quantity(input),
                Err(QuantityError::Suffix),
                "{input:?}"
            );
        }
        assert_eq!(
            parse_quantity("1e400"),
            Err(QuantityError::Numeric),
            "beyond the representable range"
        );
        assert_eq!(
            QuantityError::FormatWrong.to_string(),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
    }

    #[test]
    fn json_strings_and_numbers_deserialize() {
        let parsed: Vec<Quantity> = serde_json::from_str(r#"["1Gi", 2, 0.5, 1e3, -4]"#).unwrap();
        assert_eq!(parsed, vec![q("1Gi"), q("2"), q("500m"), q("1k"), q("-4")]);
        assert!(serde_json::from_str::<Quantity>(r#""lots""#).is_err());
        assert!(serde_json::from_str::<Quantity>("true").is_err());
        assert_eq!(Quantity::from_json(&serde_json::json!(1.5)), Ok(q("1500m")));
        assert_eq!(
            Quantity::from_json(&serde_json::json!(null)),
            Err(QuantityError::FormatWrong)
        );
    }

    #[test]
    fn quantities_serialize_in_canonical_form() {
        let json = serde_json::to_string(&[q("1024Mi"), q("0.5"), q("1e9")]).unwrap();
        assert_eq!(json, r#"["1Gi","500m","1e9"]"#);
    }

    #[test]
    fn cpu_and_memory_helpers_round_up() {
        assert_eq!(quantity_millis("250m"), Some(250));
        assert_eq!(quantity_millis("1n"), Some(1));
        assert_eq!(quantity_bytes("128Mi"), Some(128 << 20));
        assert_eq!(quantity_bytes("12e-1"), Some(2));
        assert_eq!(quantity_bytes("1M"), Some(1_000_000));
        assert_eq!(quantity_bytes("1G"), Some(1_000_000_000));
        assert_eq!(quantity_bytes("1T"), Some(1_000_000_000_000));
        assert_eq!(quantity_bytes("1P"), Some(1_000_000_000_000_000));
        assert_eq!(quantity_bytes("lots"), None);
    }
    #[test]
    fn canonical_spellings_are_kept_and_others_rewritten_as_upstream_stores_them() {
        // upstream quantity_test.go TestQuantityString: (canonical, alternate); parsing
        // the canonical string keeps it, the alternate is written in canonical form.
        let cases = [
            ("1Gi", "1024Mi"),
            ("300Mi", "307200Ki"),
            ("6Ki", ""),
            ("1001Gi", "1025024Mi"),
            ("1Ti", "1024Gi"),
            ("5", "5000m"),
            ("500m", "0.5"),
            ("1G", "1000M"),
            ("1G", "0.001T"),
            ("1m", "1000u"),
            ("80m", ""),
            ("1080m", "1.08"),
            ("1080m", "1080000000n"),
            ("300M", ""),
            ("1T", ""),
            ("1234567M", ""),
            ("1234567m", ""),
            ("3k", ""),
            ("1025", ""),
            ("0", ""),
            ("1e9", ".001e12"),
            ("1e-3", "0.001e0"),
            ("1e-9", "1000e-12"),
            ("80e-3", ""),
            ("300e6", ""),
            ("1e12", ""),
            ("1e3", ""),
            ("3e3", ""),
            ("0", "00"),
            ("1n", ""),
            ("80n", ""),
            ("1080n", ""),
            ("1u", ""),
            ("80u", ""),
            ("1080u", ""),
        ];
        for (canonical, alternate) in cases {
            assert_eq!(stored_spelling(canonical).as_deref(), Ok(canonical));
            assert_eq!(
                stored_spelling(&format!("-{canonical}")).as_deref(),
                Ok(if canonical == "0" {
                    "0".to_string()
                } else {
                    format!("-{canonical}")
                }
                .as_str()),
                "negative {canonical}"
            );
            if !alternate.is_empty() {
                assert_eq!(
                    stored_spelling(alternate).as_deref(),
                    Ok(canonical),
                    "alternate {alternate}"
                );
            }
        }
        // TestQuantityParseEmit.
        for (input, stored) in [
            ("1Ki", "1Ki"),
            ("1Mi", "1Mi"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1000M", "1G"),
            (".001Ki", "1024m"),
            (".000001Ki", "1024u"),
            (".000000001Ki", "1024n"),
            (".000000000001Ki", "2n"),
        ] {
            assert_eq!(stored_spelling(input).as_deref(), Ok(stored), "{input}");
            assert_eq!(
                stored_spelling(&format!("-{input}")),
                Ok(format!("-{stored}")),
                "-{input}"
            );
        }
    }

    #[test]
    fn stored_spellings_of_manifest_values() {
        for (input, stored) in [
            // kubernetes#116135: `cpu: 0.5` is stored as 500m, `memory: 1024Mi` as 1Gi.
            ("0.5", "500m"),
            ("1", "1"),
            ("2", "2"),
            ("1.5", "1500m"),
            ("1000", "1k"),
            ("8Gi", "8Gi"),
            ("1536Mi", "1536Mi"),
            ("100m", "100m"),
            ("1000m", "1"),
            // Written as they came: canonical enough for upstream's parser.
            ("1E3", "1E3"),
            ("+5", "+5"),
            ("1e0", "1e0"),
            // TestJSONWhitespace: the JSON decoder trims spaces.
            (" 1", "1"),
            ("1 ", "1"),
            (" -1", "-1"),
            ("10", "10"),
            // Outside the fast path: always canonical.
            ("1Ei", "1Ei"),
            ("2Pi", "2Pi"),
            ("12e-1", "1200e-3"),
            ("0.5Ki", "512"),
        ] {
            assert_eq!(stored_spelling(input).as_deref(), Ok(stored), "{input:?}");
        }
        assert_eq!(stored_spelling("lots"), Err(QuantityError::FormatWrong));
    }
}
