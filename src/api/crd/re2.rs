//! Go's regular expressions (RE2 syntax: what upstream compiles a schema's `pattern`
//! and CEL's regex functions with) read by the `regex` crate. The two agree except
//! inside character classes, where the crate gives `[` (a nested class) and `&&`,
//! `~~` (set operations) a meaning and RE2 takes them literally — Contour's
//! `^[^()<>@,;:\\"\/[\]?={} \t…]+$` is an unclosed class to the crate as written — and
//! in RE2's `\Q…\E` quoting, which the crate lacks.

use std::borrow::Cow;

/// `pattern` (RE2) rewritten so the `regex` crate reads what Go's `regexp` reads.
pub fn from_re2(pattern: &str) -> Cow<'_, str> {
    if !pattern.contains(['[', '\\']) {
        return Cow::Borrowed(pattern);
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if chars.get(i + 1) == Some(&'Q') => i = quoted(&chars, i + 2, &mut out),
            '\\' => {
                out.push('\\');
                if let Some(&c) = chars.get(i + 1) {
                    out.push(c);
                }
                i += 2;
            }
            '[' => i = class(&chars, i, &mut out),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// `\Q…\E` from `start` (after `\Q`): every character literal, up to `\E` or the end.
fn quoted(chars: &[char], start: usize, out: &mut String) -> usize {
    let mut i = start;
    while i < chars.len() {
        if chars[i] == '\\' && chars.get(i + 1) == Some(&'E') {
            return i + 2;
        }
        out.push_str(&regex::escape(&chars[i].to_string()));
        i += 1;
    }
    i
}

/// The class opening at `start`, written with RE2's literals escaped; returns the index
/// after it. An unclosed class is copied as it is, for the crate to report.
fn class(chars: &[char], start: usize, out: &mut String) -> usize {
    out.push('[');
    let mut i = start + 1;
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    // A `]` first in the class is a member, not its end.
    if chars.get(i) == Some(&']') {
        out.push_str("\\]");
        i += 1;
    }
    while i < chars.len() {
        match chars[i] {
            ']' => {
                out.push(']');
                return i + 1;
            }
            '\\' => {
                out.push('\\');
                if let Some(&c) = chars.get(i + 1) {
                    out.push(c);
                }
                i += 2;
            }
            '[' if chars.get(i + 1) == Some(&':') => {
                // A POSIX class, `[:alpha:]`, read alike by both.
                let end = (i + 2..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == ':' && chars[j + 1] == ']');
                match end {
                    Some(j) => {
                        out.extend(&chars[i..j + 2]);
                        i = j + 2;
                    }
                    None => {
                        out.push_str("\\[");
                        i += 1;
                    }
                }
            }
            c @ ('[' | '&' | '~') => {
                out.push('\\');
                out.push(c);
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn re(pattern: &str) -> Regex {
        Regex::new(&from_re2(pattern)).expect("compiles")
    }

    #[test]
    fn contours_header_name_pattern_reads_as_in_go() {
        // projectcontour.io HTTPProxy cookieRewritePolicies[].name (RFC 6265 token).
        let p = r#"^[^()<>@,;:\\"\/[\]?={} \t\x7f\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f]+$"#;
        assert!(Regex::new(p).is_err(), "the crate alone refuses it");
        let r = re(p);
        assert!(r.is_match("session-id"));
        for bad in ["a[b", "a]b", "a b", "a/b", "a\\b", "a\"b", "a=b", ""] {
            assert!(!r.is_match(bad), "{bad:?}");
        }
    }

    #[test]
    fn class_literals_that_the_crate_reads_as_operators() {
        let r = re("^[a&&b]+$");
        assert!(r.is_match("a&b"));
        assert!(!r.is_match("c"));
        assert!(re("^[~~x]$").is_match("~"));
        assert!(re("^[]a]+$").is_match("]a"));
        assert!(re("^[^]a]+$").is_match("bc"));
        assert!(!re("^[^]a]+$").is_match("]"));
        assert!(re("^[[:alpha:]-]+$").is_match("ab-c"));
        assert!(re(r"^[\[\]]+$").is_match("[]"));
    }

    #[test]
    fn quoting_and_plain_patterns() {
        let r = re(r"^\Qa.b[c]\E+$");
        assert!(r.is_match("a.b[c]]]"));
        assert!(!r.is_match("axb[c]"));
        assert!(re(r"^\Q(x").is_match("(x"));
        assert!(matches!(from_re2("^[a-z0-9]+$"), Cow::Owned(_)));
        assert!(matches!(from_re2("^abc$"), Cow::Borrowed(_)));
        assert_eq!(from_re2(r"^\d+(\.\d+)?$"), r"^\d+(\.\d+)?$");
        // Still refused where Go refuses too.
        assert!(Regex::new(&from_re2("(x")).is_err());
        assert!(Regex::new(&from_re2("[abc")).is_err());
    }
}
