//! Kubernetes' URL library (`library.URLs`): `url()`, `isURL()` and the `kubernetes.URL`
//! type's `getScheme`, `getHost`, `getHostname`, `getPort`, `getEscapedPath`, `getQuery`.
//!
//! A URL is valid when Go's `url.ParseRequestURI` accepts it (an absolute URI or an
//! absolute path), which this file follows step by step, errors included.

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::types::{CelBool, CelList, CelMap, CelMapKey, CelString};
use cel::common::value::Val;
use cel::{DeclarationError, Env, ExecutionError};

use super::library_type;

/// A parsed `kubernetes.URL`: what Go's `url.Parse` keeps of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Url {
    scheme: String,
    /// Host and port as written, IPv6 addresses in brackets.
    host: String,
    /// The path as written (escaped).
    raw_path: String,
    raw_query: String,
}

library_type!(Url, URL_TYPE, "kubernetes.URL");

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    cel::add_overload!(env, fn url: (CelString) -> Result<Url>, id = "string_to_url")?;
    cel::add_overload!(env, fn is_url: (CelString) -> CelBool, name = "isURL", id = "is_url_string")?;
    cel::add_member_overload!(env, fn get_scheme: (Url) -> CelString, id = "url_get_scheme")?;
    cel::add_member_overload!(env, fn get_host: (Url) -> CelString, id = "url_get_host")?;
    cel::add_member_overload!(env, fn get_hostname: (Url) -> CelString, id = "url_get_hostname")?;
    cel::add_member_overload!(env, fn get_port: (Url) -> CelString, id = "url_get_port")?;
    cel::add_member_overload!(env, fn get_escaped_path: (Url) -> CelString,
        id = "url_get_escaped_path")?;
    cel::add_member_overload!(env, fn get_query: (Url) -> CelMap, id = "url_get_query")?;
    Ok(())
}

/// Go's `url.ParseRequestURI`, its error as Go writes it (`parse "…": reason`).
pub fn parse_request_uri(raw: &str) -> Result<Url, String> {
    let fail = |reason: &str| format!("parse {raw:?}: {reason}");
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(fail("net/url: invalid control character in URL"));
    }
    if raw.is_empty() {
        return Err(fail("empty url"));
    }
    let mut url = Url::default();
    if raw == "*" {
        url.raw_path = "*".to_string();
        return Ok(url);
    }
    let (scheme, rest) = split_scheme(raw).map_err(&fail)?;
    url.scheme = scheme.to_ascii_lowercase();
    let mut rest = rest;
    if rest.ends_with('?') && rest.matches('?').count() == 1 {
        rest = &rest[..rest.len() - 1];
    } else if let Some((before, query)) = rest.split_once('?') {
        url.raw_query = query.to_string();
        rest = before;
    }
    if !rest.starts_with('/') {
        if !url.scheme.is_empty() {
            // An opaque URI (`mailto:x`): no host and no path.
            return Ok(url);
        }
        return Err(fail("invalid URI for request"));
    }
    if !url.scheme.is_empty() && rest.starts_with("//") {
        let after = &rest[2..];
        let (authority, path) = match after.find('/') {
            Some(i) => after.split_at(i),
            None => (after, ""),
        };
        url.host = parse_authority(authority).map_err(|e| fail(&e))?;
        rest = path;
    }
    unescape(rest).map_err(|e| fail(&e))?;
    url.raw_path = rest.to_string();
    Ok(url)
}

/// Go `getScheme`: the scheme (empty when there is none) and the rest.
fn split_scheme(raw: &str) -> Result<(&str, &str), &'static str> {
    for (i, c) in raw.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return Err("missing protocol scheme"),
            ':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

/// Go `parseAuthority`: userinfo checked and dropped, the host returned.
fn parse_authority(authority: &str) -> Result<String, String> {
    let (userinfo, host) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    if let Some(user) = userinfo {
        let valid = user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c));
        if !valid {
            return Err("net/url: invalid userinfo".to_string());
        }
    }
    parse_host(host)
}

/// Go `parseHost`: brackets and ports checked, escapes and characters validated.
fn parse_host(host: &str) -> Result<String, String> {
    let port_after = if host.starts_with('[') {
        let Some(close) = host.rfind(']') else {
            return Err("missing ']' in host".to_string());
        };
        &host[close + 1..]
    } else {
        match host.rfind(':') {
            Some(i) => &host[i..],
            None => "",
        }
    };
    if !valid_optional_port(port_after) {
        return Err(format!("invalid port {port_after:?} after host"));
    }
    for (i, b) in host.bytes().enumerate() {
        let allowed =
            b >= 0x80 || b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]<>\"%".contains(&b);
        if !allowed {
            return Err(format!("invalid character {:?} in host name", &host[i..=i]));
        }
    }
    unescape(host)?;
    Ok(host.to_string())
}

fn valid_optional_port(port: &str) -> bool {
    match port.strip_prefix(':') {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
        None => port.is_empty(),
    }
}

/// Percent-decoding as Go's `unescape`; `plus_is_space` for query components.
fn decode(s: &str, plus_is_space: bool) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
                let Some(hex) = hex else {
                    let end = (i + 3).min(s.len());
                    return Err(format!("invalid URL escape {:?}", &s[i..end]));
                };
                let text = std::str::from_utf8(hex).unwrap_or("00");
                out.push(u8::from_str_radix(text, 16).unwrap_or(0));
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn unescape(s: &str) -> Result<String, String> {
    decode(s, false)
}

/// Go `shouldEscape(c, encodePath)` is false for these besides the unreserved characters.
fn path_keeps(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&b)
}

/// Go `URL.EscapedPath`: the path as written when it is validly escaped, else re-escaped.
fn escaped_path(raw: &str) -> String {
    let valid = raw
        .bytes()
        .all(|b| path_keeps(b) || b"!'()*[]%".contains(&b))
        && unescape(raw).is_ok();
    if valid {
        return raw.to_string();
    }
    let decoded = unescape(raw).unwrap_or_else(|_| raw.to_string());
    let mut out = String::with_capacity(decoded.len());
    for b in decoded.bytes() {
        if path_keeps(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn url(s: &CelString<'_>) -> Result<Url, ExecutionError> {
    // Go's `url.Parse`, which upstream uses for the parts, splits the fragment off first.
    parse_request_uri(s.inner())
        .and_then(|_| {
            let without_fragment = s.inner().split_once('#').map_or(s.inner(), |(u, _)| u);
            parse_request_uri(without_fragment)
        })
        .map_err(|e| {
            ExecutionError::function_error(
                "url",
                format!("URL parse error during conversion from string: {e}"),
            )
        })
}

fn is_url(s: &CelString<'_>) -> CelBool {
    parse_request_uri(s.inner()).is_ok().into()
}

fn get_scheme(u: &Url) -> CelString<'static> {
    u.scheme.clone().into()
}

fn get_host(u: &Url) -> CelString<'static> {
    u.host.clone().into()
}

/// Go `URL.Hostname`: the host without port and brackets.
fn hostname(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn get_hostname(u: &Url) -> CelString<'static> {
    hostname(&u.host).to_string().into()
}

/// Go `URL.Port`: the digits after the host's last colon, if valid.
fn get_port(u: &Url) -> CelString<'static> {
    let after_host = match u.host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or("", |(_, p)| p),
        None => u.host.rfind(':').map_or("", |i| &u.host[i..]),
    };
    let port = after_host
        .strip_prefix(':')
        .filter(|p| valid_optional_port(after_host) && !p.is_empty());
    port.unwrap_or_default().to_string().into()
}

fn get_escaped_path(u: &Url) -> CelString<'static> {
    escaped_path(&u.raw_path).into()
}

/// Go `url.ParseQuery`, keeping what parses: each key with its values in order.
fn get_query(u: &Url) -> CelMap<'static> {
    let mut values: HashMap<String, Vec<String>> = HashMap::new();
    for pair in u.raw_query.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (Ok(key), Ok(value)) = (decode(key, true), decode(value, true)) else {
            continue;
        };
        values.entry(key).or_default().push(value);
    }
    let map: HashMap<CelMapKey<'static>, Box<dyn Val + 'static>> = values
        .into_iter()
        .map(|(k, vs)| {
            let list: Vec<Box<dyn Val>> = vs
                .into_iter()
                .map(|v| Box::new(CelString::from(Arc::new(v))) as Box<dyn Val>)
                .collect();
            (
                CelMapKey::from(k),
                Box::new(CelList::from(list)) as Box<dyn Val>,
            )
        })
        .collect();
    CelMap::from(map)
}

#[cfg(test)]
mod tests {
    use cel::Value;

    use super::super::test_support::{check, Want::*};

    /// The URL library's documented examples and upstream's `library_compatibility`
    /// cases.
    #[test]
    fn url_functions_behave_as_upstream() {
        let s = |v: &str| Value(Value::String(v.to_string().into()));
        check(&[
            ("isURL('https://user:pass@example.com:80/path?query=val#fragment')", True),
            ("isURL('/absolute-path')", True),
            ("isURL('https://a:b:c/')", False),
            ("isURL('../relative-path')", False),
            ("isURL('')", False),
            ("isURL('example.com')", False),
            ("isURL('mailto:someone@example.com')", True),
            ("isURL('https://exa mple.com/')", False),
            ("isURL('https://example.com/%zz')", False),
            (
                "url('https://a:b:c/')",
                Error("URL parse error during conversion from string: parse \"https://a:b:c/\": invalid port \":c\" after host"),
            ),
            (
                "url('../relative-path')",
                Error("parse \"../relative-path\": invalid URI for request"),
            ),
            ("url('/path').getScheme()", s("")),
            ("url('https://example.com/').getScheme()", s("https")),
            ("url('https://example.com:80/').getHost()", s("example.com:80")),
            ("url('https://example.com/').getHost()", s("example.com")),
            ("url('https://[::1]:80/').getHost()", s("[::1]:80")),
            ("url('https://[::1]/').getHost()", s("[::1]")),
            ("url('/path').getHost()", s("")),
            ("url('https://example.com:80/').getHostname()", s("example.com")),
            ("url('https://127.0.0.1:80/').getHostname()", s("127.0.0.1")),
            ("url('https://[::1]:80/').getHostname()", s("::1")),
            ("url('/path').getHostname()", s("")),
            ("url('https://example.com:80/').getPort()", s("80")),
            ("url('https://example.com/').getPort()", s("")),
            ("url('/path').getPort()", s("")),
            ("url('https://example.com/path').getEscapedPath()", s("/path")),
            (
                "url('https://example.com/path with spaces/').getEscapedPath()",
                s("/path%20with%20spaces/"),
            ),
            ("url('https://example.com').getEscapedPath()", s("")),
            ("url('https://example.com/a#frag').getEscapedPath()", s("/a")),
            (
                "url('https://example.com/path?k1=a&k2=b&k2=c').getQuery() == \
                 {'k1': ['a'], 'k2': ['b', 'c']}",
                True,
            ),
            (
                "url('https://example.com/path?key with spaces=value with spaces').getQuery() == \
                 {'key with spaces': ['value with spaces']}",
                True,
            ),
            ("url('https://example.com/path?').getQuery() == {}", True),
            ("url('https://example.com/path').getQuery() == {}", True),
            ("url('https://example.com/') == url('https://example.com/')", True),
        ]);
    }
}
