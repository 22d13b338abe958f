//! Kubernetes' CIDR library (`library.CIDR`): `cidr()`, `isCIDR()`, and the `net.CIDR`
//! type's `containsIP`, `containsCIDR`, `ip`, `masked`, `prefixLength`, and `string(cidr)`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cel::common::types::{CelBool, CelInt, CelString};
use cel::{DeclarationError, Env, ExecutionError};

use super::ip::{parse_ip, Ip};
use super::library_type;

/// A `net.CIDR` value as Go's `netip.Prefix`: the address as written (host bits may be
/// set) and the prefix length. Two are equal when both are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

library_type!(Cidr, CIDR_TYPE, "net.CIDR");

pub(super) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    cel::add_overload!(env, fn cidr: (CelString) -> Result<Cidr>, id = "string_to_cidr")?;
    cel::add_overload!(env, fn is_cidr: (CelString) -> CelBool, name = "isCIDR", id = "is_cidr")?;
    cel::add_overload!(env, fn cidr_to_string: (Cidr) -> CelString, name = "string",
        id = "cidr_to_string")?;
    cel::add_member_overload!(env, fn contains_ip_string: (Cidr, CelString) -> Result<CelBool>,
        name = "containsIP", id = "cidr_contains_ip_string")?;
    cel::add_member_overload!(env, fn contains_ip: (Cidr, Ip) -> CelBool,
        name = "containsIP", id = "cidr_contains_ip_ip")?;
    cel::add_member_overload!(env, fn contains_cidr_string: (Cidr, CelString) -> Result<CelBool>,
        name = "containsCIDR", id = "cidr_contains_cidr_string")?;
    cel::add_member_overload!(env, fn contains_cidr: (Cidr, Cidr) -> CelBool,
        name = "containsCIDR", id = "cidr_contains_cidr")?;
    cel::add_member_overload!(env, fn cidr_ip: (Cidr) -> Ip, name = "ip", id = "cidr_ip")?;
    cel::add_member_overload!(env, fn prefix_length: (Cidr) -> CelInt, id = "cidr_prefix_length")?;
    cel::add_member_overload!(env, fn masked: (Cidr) -> Cidr, id = "cidr_masked")?;
    Ok(())
}

/// Upstream `parseCIDR` (Go's `netip.ParsePrefix`, IPv4-mapped addresses refused); the
/// error reads as upstream's.
fn parse_cidr(raw: &str) -> Result<Cidr, String> {
    let wrap = |reason: String| {
        format!("network address parse error during conversion from string: netip.ParsePrefix({raw:?}): {reason}")
    };
    let Some((addr, bits)) = raw.rsplit_once('/') else {
        return Err(wrap("no '/'".to_string()));
    };
    if addr.contains('%') {
        return Err(wrap("IPv6 zones cannot be present in a prefix".to_string()));
    }
    let parsed = addr.parse::<IpAddr>().map_err(|_| {
        let detail = parse_ip(addr).err().unwrap_or_default();
        let reason = detail
            .split_once(": ParseAddr")
            .map_or(detail.as_str(), |(_, rest)| rest);
        wrap(format!("ParseAddr{reason}"))
    })?;
    let bad_bits = || wrap(format!("bad bits after slash: {bits:?}"));
    if bits.is_empty()
        || !bits.bytes().all(|b| b.is_ascii_digit())
        || (bits.len() > 1 && bits.starts_with('0'))
    {
        return Err(bad_bits());
    }
    let bits: u8 = bits.parse().map_err(|_| bad_bits())?;
    let max = if parsed.is_ipv4() { 32 } else { 128 };
    if bits > max {
        return Err(wrap("prefix length out of range".to_string()));
    }
    if let IpAddr::V6(v6) = parsed {
        if v6.to_ipv4_mapped().is_some() {
            return Err(format!("IPv4-mapped IPv6 address {raw:?} is not allowed"));
        }
    }
    Ok(Cidr { addr: parsed, bits })
}

fn cidr(s: &CelString<'_>) -> Result<Cidr, ExecutionError> {
    parse_cidr(s.inner()).map_err(|e| {
        ExecutionError::function_error(
            "cidr",
            format!("network address parse error during conversion from string: {e}"),
        )
    })
}

fn is_cidr(s: &CelString<'_>) -> CelBool {
    parse_cidr(s.inner()).is_ok().into()
}

fn cidr_to_string(c: &Cidr) -> CelString<'static> {
    format!("{}/{}", c.addr, c.bits).into()
}

/// The address with the bits past the prefix cleared.
fn mask(addr: IpAddr, bits: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & keep))
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & keep))
        }
    }
}

/// Go `Prefix.Contains`: same family, and equal once masked.
fn contains_ip(c: &Cidr, ip: &Ip) -> CelBool {
    (c.addr.is_ipv4() == ip.0.is_ipv4() && mask(c.addr, c.bits) == mask(ip.0, c.bits)).into()
}

fn contains_ip_string(c: &Cidr, s: &CelString<'_>) -> Result<CelBool, ExecutionError> {
    let ip = parse_ip(s.inner()).map_err(|e| ExecutionError::function_error("containsIP", e))?;
    Ok(contains_ip(c, &Ip(ip)))
}

/// Upstream `cidrContainsCIDR`: `c.Masked() == PrefixFrom(other.Addr(), c.Bits())` and no
/// longer a prefix than `other`'s. `PrefixFrom` keeps host bits, so `other`'s address must
/// have none past `c`'s prefix length: upstream's `cidr('10.0.0.0/8').containsCIDR(
/// '10.1.0.0/16')` is false, and so is it here.
fn contains_cidr(c: &Cidr, other: &Cidr) -> CelBool {
    let masked = Cidr {
        addr: mask(c.addr, c.bits),
        bits: c.bits,
    };
    let from = Cidr {
        addr: other.addr,
        bits: c.bits,
    };
    (masked == from && c.bits <= other.bits).into()
}

fn contains_cidr_string(c: &Cidr, s: &CelString<'_>) -> Result<CelBool, ExecutionError> {
    let other = cidr(s)?;
    Ok(contains_cidr(c, &other))
}

fn cidr_ip(c: &Cidr) -> Ip {
    Ip(c.addr)
}

fn prefix_length(c: &Cidr) -> CelInt {
    i64::from(c.bits).into()
}

fn masked(c: &Cidr) -> Cidr {
    Cidr {
        addr: mask(c.addr, c.bits),
        bits: c.bits,
    }
}

#[cfg(test)]
mod tests {
    use cel::Value;

    use super::super::test_support::{check, Want::*};

    /// Upstream's `cidr_test.go` cases.
    #[test]
    fn cidr_functions_behave_as_upstream() {
        let s = |v: &str| Value(Value::String(v.to_string().into()));
        check(&[
            ("cidr('192.168.0.0/24') == cidr('192.168.0.0/24')", True),
            (
                "cidr('192.168.0.0/')",
                Error("network address parse error during conversion from string: network address parse error during conversion from string: netip.ParsePrefix(\"192.168.0.0/\"): bad bits after slash: \"\""),
            ),
            (
                "cidr('2001:db8::/')",
                Error("netip.ParsePrefix(\"2001:db8::/\"): bad bits after slash: \"\""),
            ),
            ("cidr('192.168.0.0/33')", Error("prefix length out of range")),
            ("cidr('192.168.0.0')", Error("no '/'")),
            ("cidr('::ffff:1.2.3.4/120')", Error("IPv4-mapped IPv6 address")),
            ("cidr('192.168.0.0/24').containsIP(ip('192.168.0.1'))", True),
            ("cidr('192.168.0.0/24').containsIP(ip('192.168.1.1'))", False),
            ("cidr('192.168.0.0/24').containsIP('192.168.0.1')", True),
            ("cidr('192.168.0.0/24').containsIP('192.168.1.1')", False),
            ("cidr('192.168.0.0/24').containsIP('::1')", False),
            ("cidr('192.168.0.0/24').containsIP('nope')", Error("parse error")),
            ("cidr('192.168.0.0/24').containsCIDR(cidr('192.168.0.0/25'))", True),
            ("cidr('192.168.0.0/24').containsCIDR(cidr('192.168.0.0/23'))", False),
            ("cidr('192.168.0.0/24').containsCIDR('192.168.0.0/25')", True),
            ("cidr('192.168.0.0/24').containsCIDR('192.168.0.0/23')", False),
            ("cidr('192.168.0.0/24').ip() == ip('192.168.0.0')", True),
            ("cidr('192.168.0.1/24').ip().family()", Value(Value::Int(4))),
            ("cidr('192.168.0.0/24').masked() == cidr('192.168.0.0/24')", True),
            ("cidr('192.168.0.1/24').masked() == cidr('192.168.0.0/24')", True),
            ("cidr('192.168.0.1/24') == cidr('192.168.0.1/24').masked()", False),
            ("cidr('192.168.0.0/24').prefixLength()", Value(Value::Int(24))),
            ("cidr('2001:db8::/32').containsIP(ip('2001:db8::1'))", True),
            ("cidr('2001:db8::/32').containsIP(ip('2001:dc8::1'))", False),
            ("cidr('2001:db8::/32').containsCIDR(cidr('2001:db8::/33'))", True),
            ("cidr('2001:db8::/32').containsCIDR('2001:db8::/31')", False),
            ("cidr('2001:db8::/32').ip() == ip('2001:db8::')", True),
            ("cidr('2001:db8:1::/32').masked() == cidr('2001:db8::/32')", True),
            ("cidr('::1/128').prefixLength()", Value(Value::Int(128))),
            ("string(cidr('192.168.0.0/24'))", s("192.168.0.0/24")),
            ("isCIDR('192.168.0.0/16')", True),
            ("isCIDR('::1/128')", True),
            ("isCIDR('192.168.0.0/33')", False),
            ("isCIDR('::1/129')", False),
        ]);
    }
}
