//! Kubernetes' IP library (`library.IP`): `ip()`, `isIP()`, `ip.isCanonical()`, the
//! `net.IP` type's `family`, `isUnspecified`, `isLoopback`, `isLinkLocalMulticast`,
//! `isLinkLocalUnicast`, `isGlobalUnicast`, and `string(ip)`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cel::common::types::{CelBool, CelInt, CelString};
use cel::{DeclarationError, Env, ExecutionError};

use super::library_type;

/// A `net.IP` value: an IPv4 or IPv6 address, neither zoned nor IPv4-mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ip(pub IpAddr);

library_type!(Ip, IP_TYPE, "net.IP");

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    cel::add_overload!(env, fn ip: (CelString) -> Result<Ip>, id = "string_to_ip")?;
    cel::add_overload!(env, fn is_ip: (CelString) -> CelBool, name = "isIP", id = "is_ip")?;
    cel::add_overload!(env, fn is_canonical: (CelString) -> Result<CelBool>,
        name = "ip.isCanonical", id = "ip_is_canonical")?;
    cel::add_overload!(env, fn ip_to_string: (Ip) -> CelString, name = "string",
        id = "ip_to_string")?;
    cel::add_member_overload!(env, fn family: (Ip) -> CelInt, id = "ip_family")?;
    cel::add_member_overload!(env, fn is_unspecified: (Ip) -> CelBool, id = "ip_is_unspecified")?;
    cel::add_member_overload!(env, fn is_loopback: (Ip) -> CelBool, id = "ip_is_loopback")?;
    cel::add_member_overload!(env, fn is_link_local_multicast: (Ip) -> CelBool,
        id = "ip_is_link_local_multicast")?;
    cel::add_member_overload!(env, fn is_link_local_unicast: (Ip) -> CelBool,
        id = "ip_is_link_local_unicast")?;
    cel::add_member_overload!(env, fn is_global_unicast: (Ip) -> CelBool,
        id = "ip_is_global_unicast")?;
    Ok(())
}

/// Upstream `parseIPAddr`: Go's `netip.ParseAddr` (no leading zeros in IPv4 fields), then
/// zones and IPv4-mapped IPv6 addresses refused. The error reads as upstream's.
pub(super) fn parse_ip(raw: &str) -> Result<IpAddr, String> {
    if let Some((addr, _zone)) = raw.split_once('%') {
        if addr.parse::<Ipv6Addr>().is_ok() {
            return Err(format!("IP address {raw:?} with zone value is not allowed"));
        }
    }
    match raw.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_some() => {
            Err(format!("IPv4-mapped IPv6 address {raw:?} is not allowed"))
        }
        Ok(addr) => Ok(addr),
        Err(_) => Err(format!(
            "IP Address {raw:?} parse error during conversion from string: ParseAddr({raw:?}): {}",
            parse_failure(raw)
        )),
    }
}

/// Go's `netip.ParseAddr` reason for the common IPv4 mistakes; a generic one otherwise.
fn parse_failure(raw: &str) -> &'static str {
    if raw.is_empty() {
        return "unable to parse IP";
    }
    if raw.contains(':') {
        return "unable to parse IPv6 address";
    }
    let fields: Vec<&str> = raw.split('.').collect();
    if fields.iter().any(|f| f.is_empty() && fields.len() <= 4) {
        return "IPv4 field must have at least one digit";
    }
    if fields
        .iter()
        .any(|f| !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return "unexpected character";
    }
    if fields.iter().any(|f| f.len() > 1 && f.starts_with('0')) {
        return "IPv4 field has octet with leading zero";
    }
    if fields
        .iter()
        .any(|f| f.parse::<u32>().map_or(true, |n| n > 255))
    {
        return "IPv4 field has value >255";
    }
    if fields.len() < 4 {
        return "IPv4 address too short";
    }
    "IPv4 address too long"
}

fn ip(s: &CelString<'_>) -> Result<Ip, ExecutionError> {
    parse_ip(s.inner())
        .map(Ip)
        .map_err(|e| ExecutionError::function_error("ip", e))
}

fn is_ip(s: &CelString<'_>) -> CelBool {
    parse_ip(s.inner()).is_ok().into()
}

/// Go's `Addr.String()` is the canonical form; Rust's `Display` writes the same (RFC 5952)
/// for every address `parse_ip` accepts.
fn is_canonical(s: &CelString<'_>) -> Result<CelBool, ExecutionError> {
    let addr =
        parse_ip(s.inner()).map_err(|e| ExecutionError::function_error("ip.isCanonical", e))?;
    Ok((addr.to_string() == s.inner()).into())
}

fn ip_to_string(ip: &Ip) -> CelString<'static> {
    ip.0.to_string().into()
}

fn family(ip: &Ip) -> CelInt {
    match ip.0 {
        IpAddr::V4(_) => 4.into(),
        IpAddr::V6(_) => 6.into(),
    }
}

fn is_unspecified(ip: &Ip) -> CelBool {
    ip.0.is_unspecified().into()
}

fn is_loopback(ip: &Ip) -> CelBool {
    ip.0.is_loopback().into()
}

/// Go: 224.0.0.0/24, or ff02::/16 (any flags: `ff?2::`).
fn is_link_local_multicast(ip: &Ip) -> CelBool {
    match ip.0 {
        IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v6) => v6.segments()[0] & 0xff0f == 0xff02,
    }
    .into()
}

fn link_local_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

fn is_link_local_unicast(ip: &Ip) -> CelBool {
    link_local_unicast(ip.0).into()
}

/// Go `Addr.IsGlobalUnicast`: neither unspecified, the IPv4 broadcast, loopback,
/// multicast nor link-local unicast.
fn is_global_unicast(ip: &Ip) -> CelBool {
    let addr = ip.0;
    let broadcast = addr == IpAddr::V4(Ipv4Addr::BROADCAST);
    (!addr.is_unspecified()
        && !broadcast
        && !addr.is_loopback()
        && !addr.is_multicast()
        && !link_local_unicast(addr))
    .into()
}

#[cfg(test)]
mod tests {
    use cel::Value;

    use super::super::test_support::{check, Want::*};

    /// Upstream's `ip_test.go` cases and the library's documented examples.
    #[test]
    fn ip_functions_behave_as_upstream() {
        let s = |v: &str| Value(Value::String(v.to_string().into()));
        check(&[
            ("ip('192.168.0.1') == ip('192.168.0.1')", True),
            ("ip('192.168.0.1') == ip('192.168.0.2')", False),
            (
                "ip('192.168.0.1.0')",
                Error("IP Address \"192.168.0.1.0\" parse error during conversion from string: ParseAddr(\"192.168.0.1.0\"): IPv4 address too long"),
            ),
            (
                "ip('127.0.0.256')",
                Error("ParseAddr(\"127.0.0.256\"): IPv4 field has value >255"),
            ),
            (
                "ip('192.168.0.01')",
                Error("IPv4 field has octet with leading zero"),
            ),
            ("ip(':::1')", Error("IP Address \":::1\" parse error")),
            (
                "ip('fe80::1%eth0')",
                Error("IP address \"fe80::1%eth0\" with zone value is not allowed"),
            ),
            (
                "ip('::ffff:192.168.0.1')",
                Error("IPv4-mapped IPv6 address \"::ffff:192.168.0.1\" is not allowed"),
            ),
            ("isIP('192.168.0.1')", True),
            ("isIP('2001:db8::68')", True),
            ("isIP('192.168.0.1.0')", False),
            ("isIP('fe80::1%eth0')", False),
            ("isIP('::ffff:192.168.0.1')", False),
            ("ip('192.168.0.1').family()", Value(Value::Int(4))),
            ("ip('2001:db8::68').family()", Value(Value::Int(6))),
            ("ip.isCanonical('127.0.0.1')", True),
            ("ip.isCanonical('2001:db8::abcd')", True),
            ("ip.isCanonical('2001:DB8::ABCD')", False),
            ("ip.isCanonical('2001:db8::0:0:0:abcd')", False),
            ("ip.isCanonical('::ffff:1.2.3.4')", Error("IPv4-mapped")),
            ("ip('0.0.0.0').isUnspecified()", True),
            ("ip('127.0.0.1').isUnspecified()", False),
            ("ip('::').isUnspecified()", True),
            ("ip('127.0.0.1').isLoopback()", True),
            ("ip('192.168.0.1').isLoopback()", False),
            ("ip('::1').isLoopback()", True),
            ("ip('2001:db8::abcd').isLoopback()", False),
            ("ip('224.0.0.1').isLinkLocalMulticast()", True),
            ("ip('224.0.1.1').isLinkLocalMulticast()", False),
            ("ip('ff02::1').isLinkLocalMulticast()", True),
            ("ip('fd00::1').isLinkLocalMulticast()", False),
            ("ip('169.254.169.254').isLinkLocalUnicast()", True),
            ("ip('192.168.0.1').isLinkLocalUnicast()", False),
            ("ip('fe80::1').isLinkLocalUnicast()", True),
            ("ip('fd80::1').isLinkLocalUnicast()", False),
            ("ip('192.168.0.1').isGlobalUnicast()", True),
            ("ip('255.255.255.255').isGlobalUnicast()", False),
            ("ip('2001:db8::abcd').isGlobalUnicast()", True),
            ("ip('ff00::1').isGlobalUnicast()", False),
            ("string(ip('192.168.0.1'))", s("192.168.0.1")),
            ("string(ip('2001:DB8::68'))", s("2001:db8::68")),
        ]);
    }
}
