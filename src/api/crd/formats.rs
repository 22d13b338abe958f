//! String formats a CRD schema may name (kube-openapi's `strfmt.Default` registry, as far
//! as upstream's `StripUnsupportedFormatsPostProcessor` keeps it). Formats outside the
//! registry, `int32`, `int64`, `float` and `double` among them, are not checked, as upstream.

use std::net::IpAddr;
use std::sync::OnceLock;

use base64::Engine as _;
use regex::Regex;

/// Whether `value` is valid for `format`; `None` when upstream does not check the format.
pub fn check(format: &str, value: &str) -> Option<bool> {
    let ok = match format {
        "bsonobjectid" => value.len() == 24 && value.bytes().all(|b| b.is_ascii_hexdigit()),
        "uri" => is_uri(value),
        "email" => is_email(value),
        "hostname" => value.len() <= 255 && re(&HOSTNAME, HOSTNAME_RE).is_match(value),
        "ipv4" => value.parse::<IpAddr>().is_ok() && value.contains('.'),
        "ipv6" => value.parse::<IpAddr>().is_ok() && value.contains(':'),
        "cidr" => value.parse::<ipnet::IpNet>().is_ok(),
        "mac" => re(&MAC, MAC_RE).is_match(value),
        "uuid" => re(&UUID, UUID_RE).is_match(value),
        "uuid3" => is_uuid_version(value, '3'),
        "uuid4" => is_uuid_version(value, '4'),
        "uuid5" => is_uuid_version(value, '5'),
        "isbn" => is_isbn10(value) || is_isbn13(value),
        "isbn10" => is_isbn10(value),
        "isbn13" => is_isbn13(value),
        "creditcard" => re(&CREDIT_CARD, CREDIT_CARD_RE).is_match(value),
        "ssn" => re(&SSN, SSN_RE).is_match(value),
        "hexcolor" => re(&HEX_COLOR, HEX_COLOR_RE).is_match(value),
        "rgbcolor" => re(&RGB_COLOR, RGB_COLOR_RE).is_match(value),
        "byte" => base64::engine::general_purpose::STANDARD
            .decode(value)
            .is_ok(),
        "password" => true,
        "date" => chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok(),
        "date-time" | "datetime" => is_date_time(value),
        "duration" => is_duration(value),
        _ => return None,
    };
    Some(ok)
}

const HOSTNAME_RE: &str = r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$";
const MAC_RE: &str = r"^(?:[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){7}|[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){7}|[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){19}|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){2})$";
const UUID_RE: &str = r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$";
const CREDIT_CARD_RE: &str = r"^(?:4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\d{3})\d{11})$";
const SSN_RE: &str = r"^\d{3}[- ]?\d{2}[- ]?\d{4}$";
const HEX_COLOR_RE: &str = r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$";
const RGB_COLOR_RE: &str = r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$";
const DURATION_RE: &str = r"^[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$";
const DURATION_WORDS_RE: &str = r"^(\d+)\s*(ns|nanoseconds?|us|µs|microseconds?|ms|milliseconds?|s|seconds?|m|minutes?|h|hours?|d|days?|w|wk|weeks?)$";

static HOSTNAME: OnceLock<Regex> = OnceLock::new();
static MAC: OnceLock<Regex> = OnceLock::new();
static UUID: OnceLock<Regex> = OnceLock::new();
static CREDIT_CARD: OnceLock<Regex> = OnceLock::new();
static SSN: OnceLock<Regex> = OnceLock::new();
static HEX_COLOR: OnceLock<Regex> = OnceLock::new();
static RGB_COLOR: OnceLock<Regex> = OnceLock::new();
static DURATION: OnceLock<Regex> = OnceLock::new();
static DURATION_WORDS: OnceLock<Regex> = OnceLock::new();

fn re(cell: &'static OnceLock<Regex>, source: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(source).expect("format regexes are constant and valid"))
}

/// Go `url.ParseRequestURI`: an absolute URI or an absolute path.
fn is_uri(s: &str) -> bool {
    if s.is_empty() || s.contains(char::is_whitespace) {
        return false;
    }
    if s.starts_with('/') {
        return true;
    }
    match s.split_once(':') {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// Go `mail.ParseAddress`, for the plain `local@domain` and `Name <local@domain>` forms.
fn is_email(s: &str) -> bool {
    let addr = match (s.rfind('<'), s.strip_suffix('>')) {
        (Some(i), Some(inner)) => &inner[i + 1..],
        _ => s,
    };
    match addr.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !addr.contains(char::is_whitespace)
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }
        None => false,
    }
}

fn is_uuid_version(s: &str, version: char) -> bool {
    let plain: String = s.chars().filter(|c| *c != '-').collect();
    re(&UUID, UUID_RE).is_match(s) && plain.chars().nth(12) == Some(version)
}

fn isbn_digits(s: &str) -> Vec<char> {
    s.chars().filter(|c| *c != '-' && *c != ' ').collect()
}

fn is_isbn10(s: &str) -> bool {
    let d = isbn_digits(s);
    if d.len() != 10 {
        return false;
    }
    let mut sum = 0;
    for (i, c) in d.iter().enumerate() {
        let v = match (i, c) {
            (9, 'X' | 'x') => 10,
            (_, c) if c.is_ascii_digit() => c.to_digit(10).unwrap_or(0),
            _ => return false,
        };
        sum += v * (10 - i as u32);
    }
    sum.is_multiple_of(11)
}

fn is_isbn13(s: &str) -> bool {
    let d = isbn_digits(s);
    if d.len() != 13 || !d.iter().all(char::is_ascii_digit) {
        return false;
    }
    let sum: u32 = d
        .iter()
        .enumerate()
        .map(|(i, c)| c.to_digit(10).unwrap_or(0) * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    sum.is_multiple_of(10)
}

/// strfmt's `ParseDateTime`: RFC 3339 with or without fractional seconds, `Z` or offset
/// (with or without a colon).
fn is_date_time(s: &str) -> bool {
    if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
        return true;
    }
    ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"]
        .iter()
        .any(|f| chrono::DateTime::parse_from_str(s, f).is_ok())
}

/// strfmt's `ParseDuration`: Go durations (`1h30m`) or `<n> <unit>` (`3 days`).
fn is_duration(s: &str) -> bool {
    s == "0"
        || re(&DURATION, DURATION_RE).is_match(s)
        || re(&DURATION_WORDS, DURATION_WORDS_RE).is_match(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_formats_accept_and_refuse() {
        let cases = [
            ("uuid", "123e4567-e89b-12d3-a456-426614174000", "not-a-uuid"),
            (
                "uuid4",
                "123e4567-e89b-42d3-a456-426614174000",
                "123e4567-e89b-12d3-a456-426614174000",
            ),
            ("hostname", "example.com", "-bad-.com"),
            ("ipv4", "10.0.0.1", "::1"),
            ("ipv6", "fe80::1", "10.0.0.1"),
            ("cidr", "10.0.0.0/8", "10.0.0.0"),
            ("email", "admin@example.com", "admin"),
            ("uri", "https://example.com/x", "example.com"),
            ("byte", "aGVsbG8=", "%%%"),
            ("date", "2024-02-29", "2023-02-29"),
            ("date-time", "2024-01-02T03:04:05Z", "2024-01-02 03:04"),
            ("duration", "1h30m", "forever"),
            ("mac", "00:1a:2b:3c:4d:5e", "00:1a"),
            ("bsonobjectid", "507f1f77bcf86cd799439011", "507f"),
            ("hexcolor", "#ff0000", "red"),
            ("isbn10", "0-306-40615-2", "0-306-40615-3"),
            ("isbn13", "978-0-306-40615-7", "978-0-306-40615-8"),
        ];
        for (format, good, bad) in cases {
            assert_eq!(check(format, good), Some(true), "{format} {good}");
            assert_eq!(check(format, bad), Some(false), "{format} {bad}");
        }
    }

    #[test]
    fn formats_outside_the_registry_are_not_checked() {
        for f in [
            "int32",
            "int64",
            "float",
            "double",
            "int-or-string",
            "k8s-name",
        ] {
            assert_eq!(check(f, "anything"), None, "{f}");
        }
    }
}
