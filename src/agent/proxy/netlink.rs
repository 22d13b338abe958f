//! nf_tables transactions straight over netlink, without the `nft` binary.
//!
//! The `nft` binary fetches a cache of the whole ruleset before every transaction that
//! adds a rule or an element or deletes a chain: at 10,000 services that is a dump of
//! ~1 MB of chains (and of map elements) per change, most of the time of one more
//! service. The proxy knows the table already, so it needs no cache: [`encode`] turns
//! the nft JSON commands the proxy (and the NetworkPolicy enforcer) build into one
//! nf_tables netlink batch, which the kernel applies atomically like `nft -f`.
//!
//! Only the vocabulary those callers use is encoded, the same way `nft` 1.0 encodes it
//! (so `nft list` shows the same rules); anything else is [`Unsupported`] and the caller
//! runs the `nft` binary instead. Maps are created by `nft` (it records their key types
//! for listing), so a full resync still goes through `nft`; the changes after it do not.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use serde_json::Value;

/// Why a transaction cannot be sent over netlink (the caller falls back to `nft`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not encodable as a netlink batch: {0}")]
pub struct Unsupported(pub String);

fn unsupported<T>(what: impl std::fmt::Display) -> Result<T, Unsupported> {
    Err(Unsupported(what.to_string()))
}

// linux/netlink.h, linux/netfilter/nfnetlink.h, linux/netfilter/nf_tables.h
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFPROTO_IPV4: u8 = 2;

const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_DELSET: u16 = 11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFT_MSG_GETGEN: u16 = 16;

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_ID: u16 = 10;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

const NFT_SET_TIMEOUT: u32 = 0x10;
const NFT_SET_EVAL: u32 = 0x20;
/// nft's `ipv4_addr` datatype id (the key type it lists a set with).
const TYPE_IPADDR: u32 = 7;

const NF_DROP: i32 = 0;
const NF_ACCEPT: u32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;

/// The 16-byte registers nft uses: 0 is the verdict, 1 and 2 hold values.
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;
/// The first 4-byte register (the same storage as [`NFT_REG_1`]): concatenations.
const NFT_REG32_00: u32 = 8;

/// How the kernel's answer to a batch maps back to the commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// BATCH_BEGIN, one message per command, BATCH_END.
    pub bytes: Vec<u8>,
    /// The sequence number of the first command's message; the others follow.
    pub first_seq: u32,
    pub commands: usize,
}

/// Encodes `commands` (`{"nftables": [...]}` items, family `ip`) as one batch.
/// `maps` gives the key types of the verdict maps elements are added to (nft's names:
/// `ipv4_addr`, `inet_proto`, `inet_service`). Sequence numbers start at `seq`.
pub fn encode(
    commands: &[Value],
    maps: &[(&str, &[&str])],
    seq: u32,
) -> Result<Batch, Unsupported> {
    let maps: HashMap<&str, &[&str]> = maps.iter().copied().collect();
    let mut w = Writer::default();
    let begin = w.begin_msg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0);
    w.end_msg(begin);
    let first_seq = seq.wrapping_add(1);
    let mut set_id = 1u32;
    // In the given order, as `nft` sends them: the kernel resolves a jump to a chain
    // when the rule is added, so the caller creates chains before rules that use them.
    for (i, command) in commands.iter().enumerate() {
        let command_seq = first_seq.wrapping_add(i as u32);
        encode_command(&mut w, command, &maps, command_seq, &mut set_id)?;
    }
    let end_seq = first_seq.wrapping_add(commands.len() as u32);
    let end = w.begin_msg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, end_seq, 0);
    w.end_msg(end);
    Ok(Batch {
        bytes: w.buf,
        first_seq,
        commands: commands.len(),
    })
}

/// A request for the ruleset generation with an acknowledgment: sent after a batch, its
/// ack tells that every answer to the batch has arrived.
pub fn barrier(seq: u32) -> Vec<u8> {
    let mut w = Writer::default();
    let msg = w.begin_msg(nft_type(NFT_MSG_GETGEN), NLM_F_REQUEST | NLM_F_ACK, seq, 0);
    w.end_msg(msg);
    w.buf
}

/// One netlink message the kernel sent back: its sequence number and, for an error
/// message, the (negative errno) error; 0 is an acknowledgment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub seq: u32,
    pub error: Option<i32>,
}

/// Splits a datagram the kernel sent into replies; malformed tails are ignored.
pub fn parse_replies(mut buf: &[u8]) -> Vec<Reply> {
    let mut replies = Vec::new();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes(buf[4..6].try_into().expect("2 bytes"));
        let seq = u32::from_ne_bytes(buf[8..12].try_into().expect("4 bytes"));
        let error = (kind == NLMSG_ERROR && len >= NLMSG_HDRLEN + 4).then(|| {
            i32::from_ne_bytes(
                buf[NLMSG_HDRLEN..NLMSG_HDRLEN + 4]
                    .try_into()
                    .expect("4 bytes"),
            )
        });
        replies.push(Reply { seq, error });
        buf = &buf[align(len).min(buf.len())..];
    }
    replies
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// Netlink messages and attributes in a byte buffer (native endian headers).
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// nlmsghdr + nfgenmsg; the length is filled in by [`end_msg`](Self::end_msg).
    fn begin_msg(&mut self, kind: u16, flags: u16, seq: u32, family: u8) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        // nfgenmsg: family, version 0, res_id (big endian; the subsystem for batches).
        self.buf.push(family);
        self.buf.push(0);
        self.buf
            .extend_from_slice(&NFNL_SUBSYS_NFTABLES.to_be_bytes());
        start
    }

    fn end_msg(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn attr(&mut self, kind: u16, data: &[u8]) {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn str(&mut self, kind: u16, value: &str) {
        let mut data = value.as_bytes().to_vec();
        data.push(0);
        self.attr(kind, &data);
    }

    fn be32(&mut self, kind: u16, value: u32) {
        self.attr(kind, &value.to_be_bytes());
    }

    fn nest(&mut self, kind: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        start
    }

    fn end_nest(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// `NFTA_DATA_VALUE` inside a nested `kind`.
    fn data_value(&mut self, kind: u16, value: &[u8]) {
        let nest = self.nest(kind);
        self.attr(NFTA_DATA_VALUE, value);
        self.end_nest(nest);
    }

    /// `NFTA_DATA_VERDICT` inside a nested `kind`.
    fn data_verdict(&mut self, kind: u16, code: i32, chain: Option<&str>) {
        let nest = self.nest(kind);
        let verdict = self.nest(NFTA_DATA_VERDICT);
        self.be32(NFTA_VERDICT_CODE, code as u32);
        if let Some(chain) = chain {
            self.str(NFTA_VERDICT_CHAIN, chain);
        }
        self.end_nest(verdict);
        self.end_nest(nest);
    }

    /// One expression of a rule: `NFTA_LIST_ELEM { name, data { attrs } }`.
    fn expr(&mut self, name: &str, attrs: impl FnOnce(&mut Self)) {
        let elem = self.nest(NFTA_LIST_ELEM);
        self.str(NFTA_EXPR_NAME, name);
        let data = self.nest(NFTA_EXPR_DATA);
        attrs(self);
        self.end_nest(data);
        self.end_nest(elem);
    }
}

fn str_field<'a>(body: &'a Value, field: &str) -> Result<&'a str, Unsupported> {
    match body[field].as_str() {
        Some(s) => Ok(s),
        None => unsupported(format_args!("missing string field {field:?}")),
    }
}

fn encode_command(
    w: &mut Writer,
    command: &Value,
    maps: &HashMap<&str, &[&str]>,
    seq: u32,
    set_id: &mut u32,
) -> Result<(), Unsupported> {
    let Some((verb, object)) = command.as_object().and_then(|o| o.iter().next()) else {
        return unsupported("command is not an object");
    };
    let Some((kind, body)) = object.as_object().and_then(|o| o.iter().next()) else {
        return unsupported(format_args!("{verb}: no object"));
    };
    if body.get("family").and_then(Value::as_str) != Some("ip") {
        return unsupported(format_args!("{verb} {kind}: family is not ip"));
    }
    let table = match kind.as_str() {
        "table" => str_field(body, "name")?,
        _ => str_field(body, "table")?,
    };
    let msg = |w: &mut Writer, msg_type: u16, flags: u16| {
        w.begin_msg(nft_type(msg_type), NLM_F_REQUEST | flags, seq, NFPROTO_IPV4)
    };
    let start;
    match (verb.as_str(), kind.as_str()) {
        ("add", "table") => {
            start = msg(w, NFT_MSG_NEWTABLE, NLM_F_CREATE);
            w.str(NFTA_TABLE_NAME, table);
        }
        ("delete", "table") => {
            start = msg(w, NFT_MSG_DELTABLE, 0);
            w.str(NFTA_TABLE_NAME, table);
        }
        ("add", "chain") => {
            start = msg(w, NFT_MSG_NEWCHAIN, NLM_F_CREATE);
            w.str(NFTA_CHAIN_TABLE, table);
            w.str(NFTA_CHAIN_NAME, str_field(body, "name")?);
            if let Some(hook) = body.get("hook") {
                let hooknum = match hook.as_str() {
                    Some("prerouting") => 0,
                    Some("input") => 1,
                    Some("forward") => 2,
                    Some("output") => 3,
                    Some("postrouting") => 4,
                    _ => return unsupported(format_args!("hook {hook}")),
                };
                let Some(prio) = body["prio"].as_i64().and_then(|p| i32::try_from(p).ok()) else {
                    return unsupported("base chain without a numeric priority");
                };
                let nest = w.nest(NFTA_CHAIN_HOOK);
                w.be32(NFTA_HOOK_HOOKNUM, hooknum);
                w.be32(NFTA_HOOK_PRIORITY, prio as u32);
                w.end_nest(nest);
                match body["policy"].as_str() {
                    None | Some("accept") => w.be32(NFTA_CHAIN_POLICY, NF_ACCEPT),
                    Some(other) => return unsupported(format_args!("chain policy {other}")),
                }
                w.str(NFTA_CHAIN_TYPE, str_field(body, "type")?);
            }
        }
        ("flush", "chain") => {
            // Deleting the rules of a chain without naming one deletes them all.
            start = msg(w, NFT_MSG_DELRULE, 0);
            w.str(NFTA_RULE_TABLE, table);
            w.str(NFTA_RULE_CHAIN, str_field(body, "name")?);
        }
        ("delete", "chain") => {
            start = msg(w, NFT_MSG_DELCHAIN, 0);
            w.str(NFTA_CHAIN_TABLE, table);
            w.str(NFTA_CHAIN_NAME, str_field(body, "name")?);
        }
        ("add", "rule") => {
            start = msg(w, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
            w.str(NFTA_RULE_TABLE, table);
            w.str(NFTA_RULE_CHAIN, str_field(body, "chain")?);
            let Some(statements) = body["expr"].as_array() else {
                return unsupported("rule without expr");
            };
            let nest = w.nest(NFTA_RULE_EXPRESSIONS);
            for statement in statements {
                encode_statement(w, statement)?;
            }
            w.end_nest(nest);
        }
        ("add", "set") => {
            // The affinity sets: `type ipv4_addr; flags timeout` (and dynamic, as nft
            // makes every set with a timeout that rules update).
            let flags: Vec<&str> = body["flags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if body["type"].as_str() != Some("ipv4_addr") || flags != ["timeout"] {
                return unsupported(format_args!("set {body}"));
            }
            start = msg(w, NFT_MSG_NEWSET, NLM_F_CREATE);
            w.str(NFTA_SET_TABLE, table);
            w.str(NFTA_SET_NAME, str_field(body, "name")?);
            w.be32(NFTA_SET_FLAGS, NFT_SET_TIMEOUT | NFT_SET_EVAL);
            w.be32(NFTA_SET_KEY_TYPE, TYPE_IPADDR);
            w.be32(NFTA_SET_KEY_LEN, 4);
            w.be32(NFTA_SET_ID, *set_id);
            *set_id += 1;
        }
        ("delete", "set") => {
            start = msg(w, NFT_MSG_DELSET, 0);
            w.str(NFTA_SET_TABLE, table);
            w.str(NFTA_SET_NAME, str_field(body, "name")?);
        }
        ("flush", "map" | "set") => {
            // Deleting the elements of a set without naming one flushes it.
            start = msg(w, NFT_MSG_DELSETELEM, 0);
            w.str(NFTA_SET_ELEM_LIST_TABLE, table);
            w.str(NFTA_SET_ELEM_LIST_SET, str_field(body, "name")?);
        }
        (verb @ ("add" | "delete"), "element") => {
            let name = str_field(body, "name")?;
            let Some(types) = maps.get(name) else {
                return unsupported(format_args!("elements of unknown map {name}"));
            };
            let Some(elems) = body["elem"].as_array() else {
                return unsupported("element without elem");
            };
            let msg_type = if verb == "add" {
                NFT_MSG_NEWSETELEM
            } else {
                NFT_MSG_DELSETELEM
            };
            start = msg(w, msg_type, if verb == "add" { NLM_F_CREATE } else { 0 });
            w.str(NFTA_SET_ELEM_LIST_TABLE, table);
            w.str(NFTA_SET_ELEM_LIST_SET, name);
            let list = w.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
            for elem in elems {
                // `[key, {"goto": {"target": chain}}]` or `[key, {"concat": [ip, port]}]`
                // to add to a map, the key alone to add to a set or to delete.
                let (key, data) = match elem.as_array() {
                    Some(pair) if pair.len() == 2 && verb == "add" => (&pair[0], Some(&pair[1])),
                    Some(_) => return unsupported(format_args!("element {elem}")),
                    None => (elem, None),
                };
                let item = w.nest(NFTA_LIST_ELEM);
                w.data_value(NFTA_SET_ELEM_KEY, &encode_key(key, types)?);
                match data {
                    Some(value) if value.get("concat").is_some() => {
                        w.data_value(NFTA_SET_ELEM_DATA, &encode_data(value)?);
                    }
                    Some(verdict) => {
                        let (code, chain) = verdict_of(verdict)?;
                        w.data_verdict(NFTA_SET_ELEM_DATA, code, chain);
                    }
                    None => {}
                }
                w.end_nest(item);
            }
            w.end_nest(list);
        }
        _ => return unsupported(format_args!("{verb} {kind}")),
    }
    w.end_msg(start);
    Ok(())
}

/// A map key (`{"concat": [...]}` or a single value) laid out as the kernel stores it:
/// each part in its own 4-byte register, big endian, zero padded.
fn encode_key(key: &Value, types: &[&str]) -> Result<Vec<u8>, Unsupported> {
    let parts: Vec<&Value> = match key.get("concat").and_then(Value::as_array) {
        Some(parts) => parts.iter().collect(),
        None => vec![key],
    };
    if parts.len() != types.len() {
        return unsupported(format_args!("key {key} for a map of {types:?}"));
    }
    let mut out = Vec::with_capacity(4 * parts.len());
    for (part, kind) in parts.iter().zip(types) {
        let mut bytes = value_bytes(part, kind)?;
        bytes.resize(4, 0);
        out.extend(bytes);
    }
    Ok(out)
}

/// A map value `{"concat": [ip, port]}` (`ipv4_addr . inet_service`, the DNAT map's
/// values) laid out as the kernel stores it: 4-byte registers, big endian, zero padded.
fn encode_data(value: &Value) -> Result<Vec<u8>, Unsupported> {
    let parts = value["concat"].as_array().map(Vec::as_slice);
    let Some([ip, port]) = parts else {
        return unsupported(format_args!("map value {value}"));
    };
    let mut out = value_bytes(ip, "ipv4_addr")?;
    let mut port = value_bytes(port, "inet_service")?;
    port.resize(4, 0);
    out.extend(port);
    Ok(out)
}

/// A constant of nft type `kind` as the kernel compares it.
fn value_bytes(value: &Value, kind: &str) -> Result<Vec<u8>, Unsupported> {
    let bytes = match kind {
        "ipv4_addr" => value
            .as_str()
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
            .map(|ip| ip.octets().to_vec()),
        "inet_proto" => value.as_str().and_then(protocol_number).map(|p| vec![p]),
        "inet_service" => value
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .map(|p| p.to_be_bytes().to_vec()),
        // A kernel-computed value (the `numgen` slot), host byte order.
        "mark" => value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(|n| n.to_ne_bytes().to_vec()),
        _ => None,
    };
    match bytes {
        Some(bytes) => Ok(bytes),
        None => unsupported(format_args!("{value} as {kind}")),
    }
}

fn protocol_number(name: &str) -> Option<u8> {
    match name {
        "tcp" => Some(6),
        "udp" => Some(17),
        "sctp" => Some(132),
        _ => None,
    }
}

/// `{"goto": {"target": c}}`, `{"jump": {"target": c}}` or `{"drop": null}`.
fn verdict_of(value: &Value) -> Result<(i32, Option<&str>), Unsupported> {
    if let Some(target) = value["goto"]["target"].as_str() {
        Ok((NFT_GOTO, Some(target)))
    } else if let Some(target) = value["jump"]["target"].as_str() {
        Ok((NFT_JUMP, Some(target)))
    } else if value.get("drop").is_some() {
        Ok((NF_DROP, None))
    } else {
        unsupported(format_args!("verdict {value}"))
    }
}

/// Where an nft JSON expression (the left side of a match, a concatenation part) loads
/// its value from, and the nft type of that value.
enum Load {
    /// `payload load <len>b @ <base> header + <offset>`.
    Payload { base: u32, offset: u32, len: u32 },
    /// `meta load <key>`.
    Meta { key: u32 },
    /// `numgen random mod <n> offset <o>`.
    Numgen { modulus: u32, offset: u32 },
    /// `fib <flags> type`.
    FibType { flags: u32 },
}

const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_META_MARK: u32 = 3;
const NFT_META_L4PROTO: u32 = 16;
const NFTA_FIB_F_SADDR: u32 = 1;
const NFTA_FIB_F_DADDR: u32 = 2;

impl Load {
    fn parse(value: &Value) -> Result<(Self, &'static str), Unsupported> {
        if let Some(payload) = value.get("payload") {
            let field = payload["field"].as_str();
            return match (payload["protocol"].as_str(), field) {
                (Some("ip"), Some("saddr")) => Ok((Self::network(12, 4), "ipv4_addr")),
                (Some("ip"), Some("daddr")) => Ok((Self::network(16, 4), "ipv4_addr")),
                (Some("th"), Some("dport")) => Ok((
                    Self::Payload {
                        base: NFT_PAYLOAD_TRANSPORT_HEADER,
                        offset: 2,
                        len: 2,
                    },
                    "inet_service",
                )),
                _ => unsupported(format_args!("payload {payload}")),
            };
        }
        if let Some(meta) = value.get("meta") {
            return match meta["key"].as_str() {
                Some("l4proto") => Ok((
                    Self::Meta {
                        key: NFT_META_L4PROTO,
                    },
                    "inet_proto",
                )),
                Some("mark") => Ok((Self::Meta { key: NFT_META_MARK }, "mark")),
                _ => unsupported(format_args!("meta {meta}")),
            };
        }
        if let Some(numgen) = value.get("numgen") {
            let modulus = numgen["mod"].as_u64().and_then(|n| u32::try_from(n).ok());
            let offset = numgen["offset"].as_u64().unwrap_or(0);
            return match (numgen["mode"].as_str(), modulus, u32::try_from(offset)) {
                (Some("random"), Some(modulus), Ok(offset)) if modulus > 0 => {
                    Ok((Self::Numgen { modulus, offset }, "integer"))
                }
                _ => unsupported(format_args!("numgen {numgen}")),
            };
        }
        if let Some(fib) = value.get("fib") {
            let flags: Vec<&str> = fib["flags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let flags = match flags.as_slice() {
                ["saddr"] => NFTA_FIB_F_SADDR,
                ["daddr"] => NFTA_FIB_F_DADDR,
                _ => return unsupported(format_args!("fib {fib}")),
            };
            if fib["result"].as_str() != Some("type") {
                return unsupported(format_args!("fib {fib}"));
            }
            return Ok((Self::FibType { flags }, "fib_addrtype"));
        }
        unsupported(format_args!("expression {value}"))
    }

    fn network(offset: u32, len: u32) -> Self {
        Self::Payload {
            base: NFT_PAYLOAD_NETWORK_HEADER,
            offset,
            len,
        }
    }

    fn emit(&self, w: &mut Writer, dreg: u32) {
        match *self {
            Self::Payload { base, offset, len } => w.expr("payload", |w| {
                w.be32(1, dreg); // NFTA_PAYLOAD_DREG
                w.be32(2, base); // NFTA_PAYLOAD_BASE
                w.be32(3, offset); // NFTA_PAYLOAD_OFFSET
                w.be32(4, len); // NFTA_PAYLOAD_LEN
            }),
            Self::Meta { key } => w.expr("meta", |w| {
                w.be32(2, key); // NFTA_META_KEY
                w.be32(1, dreg); // NFTA_META_DREG
            }),
            Self::Numgen { modulus, offset } => w.expr("numgen", |w| {
                w.be32(1, dreg); // NFTA_NG_DREG
                w.be32(2, modulus); // NFTA_NG_MODULUS
                w.be32(3, 1); // NFTA_NG_TYPE: NFT_NG_RANDOM
                w.be32(4, offset); // NFTA_NG_OFFSET
            }),
            Self::FibType { flags } => w.expr("fib", |w| {
                w.be32(1, dreg); // NFTA_FIB_DREG
                w.be32(2, 3); // NFTA_FIB_RESULT: NFT_FIB_RESULT_ADDRTYPE
                w.be32(3, flags); // NFTA_FIB_FLAGS
            }),
        }
    }
}

/// A constant compared with a loaded value of nft type `kind`.
fn constant(value: &Value, kind: &str) -> Result<Vec<u8>, Unsupported> {
    match kind {
        // Kernel-computed values in host byte order.
        "integer" | "mark" => match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Ok(n.to_ne_bytes().to_vec()),
            None => unsupported(format_args!("{value} as {kind}")),
        },
        "fib_addrtype" => match value.as_str() {
            // RTN_LOCAL
            Some("local") => Ok(2u32.to_ne_bytes().to_vec()),
            _ => unsupported(format_args!("address type {value}")),
        },
        _ => value_bytes(value, kind),
    }
}

fn cmp(w: &mut Writer, op: u32, data: &[u8]) {
    w.expr("cmp", |w| {
        w.be32(1, NFT_REG_1); // NFTA_CMP_SREG
        w.be32(2, op); // NFTA_CMP_OP: NFT_CMP_EQ 0, NFT_CMP_NEQ 1
        w.data_value(3, data); // NFTA_CMP_DATA
    });
}

/// `reg 1 = (reg 1 & mask) ^ xor` on 4 bytes.
fn bitwise(w: &mut Writer, mask: u32, xor: u32) {
    w.expr("bitwise", |w| {
        w.be32(1, NFT_REG_1); // NFTA_BITWISE_SREG
        w.be32(2, NFT_REG_1); // NFTA_BITWISE_DREG
        w.be32(3, 4); // NFTA_BITWISE_LEN
        w.data_value(4, &mask.to_ne_bytes()); // NFTA_BITWISE_MASK
        w.data_value(5, &xor.to_ne_bytes()); // NFTA_BITWISE_XOR
    });
}

fn immediate_verdict(w: &mut Writer, code: i32, chain: Option<&str>) {
    w.expr("immediate", |w| {
        w.be32(1, NFT_REG_VERDICT); // NFTA_IMMEDIATE_DREG
        w.data_verdict(2, code, chain); // NFTA_IMMEDIATE_DATA
    });
}

/// Loads the parts of a concatenation (`[a, b, …]`) as nft does: each in its own
/// 4-byte register, the first in reg 1 (the same storage as reg32 0).
fn emit_concat(w: &mut Writer, parts: &Value) -> Result<(), Unsupported> {
    let Some(parts) = parts.as_array() else {
        return unsupported(format_args!("concatenation {parts}"));
    };
    let loads = parts
        .iter()
        .map(|p| Load::parse(p).map(|(load, _)| load))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, load) in loads.iter().enumerate() {
        let reg = if i == 0 {
            NFT_REG_1
        } else {
            NFT_REG32_00 + i as u32
        };
        load.emit(w, reg);
    }
    Ok(())
}

/// A set reference `@name`.
fn set_name(value: &Value) -> Option<&str> {
    value.as_str().and_then(|s| s.strip_prefix('@'))
}

/// `meta mark` (the only key the mark statements use).
fn is_meta_mark(value: &Value) -> bool {
    value["meta"]["key"].as_str() == Some("mark")
}

/// One statement of a rule as nft 1.0 encodes it.
fn encode_statement(w: &mut Writer, statement: &Value) -> Result<(), Unsupported> {
    let Some((name, body)) = statement.as_object().and_then(|o| o.iter().next()) else {
        return unsupported(format_args!("statement {statement}"));
    };
    match name.as_str() {
        "match" => {
            let op = match body["op"].as_str() {
                Some("==") => 0,
                Some("!=") => 1,
                _ => return unsupported(format_args!("match {body}")),
            };
            let (left, right) = (&body["left"], &body["right"]);
            // `meta mark & N == M`
            if let Some([lhs, mask]) = left.get("&").and_then(Value::as_array).map(Vec::as_slice) {
                let mask = mask.as_u64().and_then(|m| u32::try_from(m).ok());
                let right_n = right.as_u64().and_then(|m| u32::try_from(m).ok());
                return match (is_meta_mark(lhs), mask, right_n) {
                    (true, Some(mask), Some(value)) => {
                        Load::Meta { key: NFT_META_MARK }.emit(w, NFT_REG_1);
                        bitwise(w, mask, 0);
                        cmp(w, op, &value.to_ne_bytes());
                        Ok(())
                    }
                    _ => unsupported(format_args!("match {body}")),
                };
            }
            if let (Some(parts), Some(set)) = (left.get("concat"), set_name(right)) {
                // `a . b . c @set`: each part in its own 4-byte register, then a lookup.
                if op != 0 {
                    return unsupported(format_args!("match {body}"));
                }
                emit_concat(w, parts)?;
                w.expr("lookup", |w| {
                    w.str(1, set); // NFTA_LOOKUP_SET
                    w.be32(2, NFT_REG_1); // NFTA_LOOKUP_SREG
                });
                return Ok(());
            }
            let (load, kind) = Load::parse(left)?;
            if let Some(set) = set_name(right) {
                if op != 0 {
                    return unsupported(format_args!("match {body}"));
                }
                load.emit(w, NFT_REG_1);
                w.expr("lookup", |w| {
                    w.str(1, set); // NFTA_LOOKUP_SET
                    w.be32(2, NFT_REG_1); // NFTA_LOOKUP_SREG
                });
                return Ok(());
            }
            let data = constant(right, kind)?;
            load.emit(w, NFT_REG_1);
            cmp(w, op, &data);
        }
        "mangle" => {
            // `meta mark set meta mark | N`
            let value = &body["value"];
            let or = value.get("|").and_then(Value::as_array);
            let bits = match or.map(Vec::as_slice) {
                Some([lhs, n]) if is_meta_mark(lhs) => {
                    n.as_u64().and_then(|n| u32::try_from(n).ok())
                }
                _ => None,
            };
            let (true, Some(bits)) = (is_meta_mark(&body["key"]), bits) else {
                return unsupported(format_args!("mangle {body}"));
            };
            Load::Meta { key: NFT_META_MARK }.emit(w, NFT_REG_1);
            bitwise(w, !bits, bits);
            w.expr("meta", |w| {
                w.be32(2, NFT_META_MARK); // NFTA_META_KEY
                w.be32(3, NFT_REG_1); // NFTA_META_SREG
            });
        }
        "dnat" if body["addr"].get("map").is_some() => {
            // `dnat ip to a . b . c . numgen … map @m`, `m` mapping to `ip . port`: the
            // lookup leaves the address in reg 1 and the port in the next 4-byte register.
            let map = &body["addr"]["map"];
            let (Some(set), Some(parts), Some("ip")) = (
                set_name(&map["data"]),
                map.get("key").and_then(|k| k.get("concat")),
                body["family"].as_str(),
            ) else {
                return unsupported(format_args!("dnat {body}"));
            };
            emit_concat(w, parts)?;
            w.expr("lookup", |w| {
                w.str(1, set); // NFTA_LOOKUP_SET
                w.be32(2, NFT_REG_1); // NFTA_LOOKUP_SREG
                w.be32(3, NFT_REG_1); // NFTA_LOOKUP_DREG
            });
            w.expr("nat", |w| {
                w.be32(1, 1); // NFTA_NAT_TYPE: NFT_NAT_DNAT
                w.be32(2, u32::from(NFPROTO_IPV4)); // NFTA_NAT_FAMILY
                w.be32(3, NFT_REG_1); // NFTA_NAT_REG_ADDR_MIN
                w.be32(4, NFT_REG_1); // NFTA_NAT_REG_ADDR_MAX
                w.be32(5, NFT_REG32_00 + 1); // NFTA_NAT_REG_PROTO_MIN
                w.be32(6, NFT_REG32_00 + 1); // NFTA_NAT_REG_PROTO_MAX
                                             // NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED
                w.be32(7, 0x3); // NFTA_NAT_FLAGS
            });
        }
        "dnat" => {
            let addr = body["addr"]
                .as_str()
                .and_then(|a| a.parse::<Ipv4Addr>().ok());
            let port = body["port"].as_u64().and_then(|p| u16::try_from(p).ok());
            let (Some(addr), Some(port)) = (addr, port) else {
                return unsupported(format_args!("dnat {body}"));
            };
            if body.as_object().is_some_and(|o| o.len() != 2) {
                return unsupported(format_args!("dnat {body}"));
            }
            for (reg, value) in [
                (NFT_REG_1, addr.octets().to_vec()),
                (NFT_REG_2, port.to_be_bytes().to_vec()),
            ] {
                w.expr("immediate", |w| {
                    w.be32(1, reg); // NFTA_IMMEDIATE_DREG
                    w.data_value(2, &value); // NFTA_IMMEDIATE_DATA
                });
            }
            w.expr("nat", |w| {
                w.be32(1, 1); // NFTA_NAT_TYPE: NFT_NAT_DNAT
                w.be32(2, u32::from(NFPROTO_IPV4)); // NFTA_NAT_FAMILY
                w.be32(3, NFT_REG_1); // NFTA_NAT_REG_ADDR_MIN
                w.be32(5, NFT_REG_2); // NFTA_NAT_REG_PROTO_MIN
                w.be32(7, 0x2); // NFTA_NAT_FLAGS: NF_NAT_RANGE_PROTO_SPECIFIED
            });
        }
        "goto" | "jump" | "drop" => {
            let (code, chain) = verdict_of(statement)?;
            immediate_verdict(w, code, chain);
        }
        "masquerade" if body.is_null() => w.expr("masq", |_| {}),
        "reject" => {
            let (kind, code) = match (body["type"].as_str(), body["expr"].as_str()) {
                (Some("tcp reset"), None) => (1, None), // NFT_REJECT_TCP_RST
                // NFT_REJECT_ICMP_UNREACH, ICMP_HOST_UNREACH
                (Some("icmp"), Some("host-unreachable")) => (0, Some(1u8)),
                _ => return unsupported(format_args!("reject {body}")),
            };
            w.expr("reject", |w| {
                w.be32(1, kind); // NFTA_REJECT_TYPE
                if let Some(code) = code {
                    w.attr(2, &[code]); // NFTA_REJECT_ICMP_CODE
                }
            });
        }
        "vmap" => {
            // `key vmap @map`: each part of a concatenation in its own 4-byte register.
            let Some(map) = set_name(&body["data"]) else {
                return unsupported(format_args!("vmap {body}"));
            };
            let key = &body["key"];
            match key.get("concat") {
                Some(parts) => emit_concat(w, parts)?,
                None => Load::parse(key)?.0.emit(w, NFT_REG_1),
            }
            w.expr("lookup", |w| {
                w.str(1, map); // NFTA_LOOKUP_SET
                w.be32(2, NFT_REG_1); // NFTA_LOOKUP_SREG
                w.be32(3, NFT_REG_VERDICT); // NFTA_LOOKUP_DREG
            });
        }
        "set" => {
            // `update @set { ip saddr timeout Ns }`
            let elem = &body["elem"]["elem"];
            let (Some("update"), Some(set), Some(timeout)) = (
                body["op"].as_str(),
                set_name(&body["set"]),
                elem["timeout"].as_u64(),
            ) else {
                return unsupported(format_args!("set {body}"));
            };
            let (load, _) = Load::parse(&elem["val"])?;
            load.emit(w, NFT_REG_1);
            w.expr("dynset", |w| {
                w.str(1, set); // NFTA_DYNSET_SET_NAME
                w.be32(3, 1); // NFTA_DYNSET_OP: NFT_DYNSET_OP_UPDATE
                w.be32(4, NFT_REG_1); // NFTA_DYNSET_SREG_KEY
                                      // NFTA_DYNSET_TIMEOUT, milliseconds
                w.attr(6, &timeout.saturating_mul(1000).to_be_bytes());
            });
        }
        _ => return unsupported(format_args!("statement {name}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::proxy::rules::{build, tests as fixtures, Ruleset, MAPS};
    use crate::agent::proxy::sync;
    use serde_json::json;

    /// `(type, flags, seq, payload after nfgenmsg)` of every message in a batch.
    fn messages(bytes: &[u8]) -> Vec<(u16, u16, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
            assert!(
                len >= NLMSG_HDRLEN + 4 && len <= rest.len(),
                "bad length {len}"
            );
            assert_eq!(len % 4, 0, "messages are 4-byte aligned");
            let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
            let flags = u16::from_ne_bytes(rest[6..8].try_into().unwrap());
            let seq = u32::from_ne_bytes(rest[8..12].try_into().unwrap());
            out.push((kind, flags, seq, rest[NLMSG_HDRLEN + 4..len].to_vec()));
            rest = &rest[len..];
        }
        out
    }

    /// Top-level attributes `(type without the nested flag, value)`; panics on bad lengths.
    fn attrs(mut bytes: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let len = u16::from_ne_bytes(bytes[0..2].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(bytes[2..4].try_into().unwrap()) & !NLA_F_NESTED;
            assert!(len >= 4 && len <= bytes.len(), "bad attribute length {len}");
            out.push((kind, bytes[4..len].to_vec()));
            bytes = &bytes[align(len).min(bytes.len())..];
        }
        out
    }

    fn attr(list: &[(u16, Vec<u8>)], kind: u16) -> Vec<u8> {
        list.iter()
            .find(|(k, _)| *k == kind)
            .unwrap_or_else(|| panic!("no attribute {kind} in {list:?}"))
            .1
            .clone()
    }

    /// The expression names of an NFTA_RULE_EXPRESSIONS payload.
    fn expr_names(expressions: &[u8]) -> Vec<String> {
        attrs(expressions)
            .iter()
            .map(|(_, elem)| {
                let name = attr(&attrs(elem), NFTA_EXPR_NAME);
                String::from_utf8(name[..name.len() - 1].to_vec()).unwrap()
            })
            .collect()
    }

    const T: &str = "orc-proxy-test";

    #[test]
    fn a_batch_is_framed_by_begin_and_end_with_consecutive_sequence_numbers() {
        let cmds = vec![
            json!({"add": {"chain": {"family": "ip", "table": T, "name": "svc"}}}),
            json!({"delete": {"chain": {"family": "ip", "table": T, "name": "old"}}}),
        ];
        let batch = encode(&cmds, &MAPS, 7).unwrap();
        let msgs = messages(&batch.bytes);
        let kinds: Vec<u16> = msgs.iter().map(|m| m.0).collect();
        assert_eq!(
            kinds,
            vec![
                NFNL_MSG_BATCH_BEGIN,
                nft_type(NFT_MSG_NEWCHAIN),
                nft_type(NFT_MSG_DELCHAIN),
                NFNL_MSG_BATCH_END
            ]
        );
        let seqs: Vec<u32> = msgs.iter().map(|m| m.2).collect();
        assert_eq!(seqs, vec![7, 8, 9, 10]);
        assert_eq!(batch.first_seq, 8);
        assert_eq!(batch.commands, 2);
        assert_eq!(msgs[1].1, NLM_F_REQUEST | NLM_F_CREATE);
        let chain = attrs(&msgs[1].3);
        assert_eq!(attr(&chain, NFTA_CHAIN_TABLE), b"orc-proxy-test\0");
        assert_eq!(attr(&chain, NFTA_CHAIN_NAME), b"svc\0");
    }

    #[test]
    fn map_keys_put_each_part_in_its_own_register() {
        let key = json!({"concat": ["10.43.0.10", "tcp", 80]});
        let types = ["ipv4_addr", "inet_proto", "inet_service"];
        assert_eq!(
            encode_key(&key, &types).unwrap(),
            vec![10, 43, 0, 10, 6, 0, 0, 0, 0, 80, 0, 0]
        );
        let node_port = json!({"concat": ["udp", 30053]});
        assert_eq!(
            encode_key(&node_port, &["inet_proto", "inet_service"]).unwrap(),
            vec![17, 0, 0, 0, 0x75, 0x65, 0, 0]
        );
        assert!(encode_key(&node_port, &types).is_err(), "wrong arity");
        assert!(encode_key(&json!({"concat": ["x", "tcp", 80]}), &types).is_err());
    }

    #[test]
    fn an_element_carries_its_key_and_goto_verdict() {
        let cmd = json!({"add": {"element": {"family": "ip", "table": T, "name": "service-ips",
            "elem": [[{"concat": ["10.43.0.10", "tcp", 80]}, {"goto": {"target": "svc"}}]]}}});
        let batch = encode(&[cmd], &MAPS, 1).unwrap();
        let msgs = messages(&batch.bytes);
        assert_eq!(msgs[1].0, nft_type(NFT_MSG_NEWSETELEM));
        let list = attrs(&msgs[1].3);
        assert_eq!(attr(&list, NFTA_SET_ELEM_LIST_SET), b"service-ips\0");
        let elems = attrs(&attr(&list, NFTA_SET_ELEM_LIST_ELEMENTS));
        assert_eq!(elems.len(), 1);
        let elem = attrs(&elems[0].1);
        let key = attrs(&attr(&elem, NFTA_SET_ELEM_KEY));
        assert_eq!(
            attr(&key, NFTA_DATA_VALUE),
            vec![10, 43, 0, 10, 6, 0, 0, 0, 0, 80, 0, 0]
        );
        let data = attrs(&attr(&elem, NFTA_SET_ELEM_DATA));
        let verdict = attrs(&attr(&data, NFTA_DATA_VERDICT));
        assert_eq!(
            attr(&verdict, NFTA_VERDICT_CODE),
            (NFT_GOTO as u32).to_be_bytes()
        );
        assert_eq!(attr(&verdict, NFTA_VERDICT_CHAIN), b"svc\0");
    }

    /// nft --debug=netlink for `dnat ip to ip daddr . meta l4proto . th dport . numgen
    /// random mod 2 offset 1 map @service-endpoints`: payload => reg 1, meta => reg 9,
    /// payload => reg 10, numgen => reg 11, lookup reg 1 dreg 1, nat addr reg 1 proto
    /// reg 9 flags 0x3.
    #[test]
    fn a_dnat_map_rule_is_encoded_as_nft_does() {
        let statics = crate::agent::proxy::rules::build_static(crate::agent::proxy::rules::Shape {
            dnat_maps: true,
        });
        let rules = &statics.chains[crate::agent::proxy::rules::DNAT_CHAIN].rules;
        let cmd = json!({"add": {"rule": {"family": "ip", "table": T, "chain": "service-dnat",
            "expr": rules[1]}}});
        let batch = encode(&[cmd], &MAPS, 1).unwrap();
        let msgs = messages(&batch.bytes);
        let expressions = attr(&attrs(&msgs[1].3), NFTA_RULE_EXPRESSIONS);
        assert_eq!(
            expr_names(&expressions),
            ["payload", "meta", "payload", "numgen", "lookup", "nat"]
        );
        let exprs = attrs(&expressions);
        let data = |i: usize| attrs(&attr(&attrs(&exprs[i].1), NFTA_EXPR_DATA));
        let be = |n: u32| n.to_be_bytes().to_vec();
        assert_eq!(attr(&data(0), 1), be(NFT_REG_1), "ip daddr in reg 1");
        assert_eq!(attr(&data(1), 1), be(9), "l4proto in reg 9");
        assert_eq!(attr(&data(2), 1), be(10), "th dport in reg 10");
        let numgen = data(3);
        assert_eq!(attr(&numgen, 1), be(11));
        assert_eq!(attr(&numgen, 2), be(2), "mod 2");
        assert_eq!(
            attr(&numgen, 4),
            be(1),
            "offset 1: the slots of two endpoints"
        );
        let lookup = data(4);
        assert_eq!(attr(&lookup, 1), b"service-endpoints\0");
        assert_eq!(attr(&lookup, 3), be(NFT_REG_1), "a value lookup: dreg 1");
        let nat = data(5);
        assert_eq!(attr(&nat, 3), be(NFT_REG_1));
        assert_eq!(attr(&nat, 5), be(9), "the port after the address");
        assert_eq!(attr(&nat, 7), be(3), "MAP_IPS | PROTO_SPECIFIED");
    }

    #[test]
    fn value_elements_carry_their_data_and_set_elements_none() {
        let types = crate::agent::proxy::rules::element_key_types();
        let cmds = [
            json!({"add": {"element": {"family": "ip", "table": T, "name": "service-endpoints",
                "elem": [[{"concat": ["10.43.0.10", "udp", 53, 3]}, {"concat": ["10.42.0.2", 5353]}]]}}}),
            json!({"add": {"element": {"family": "ip", "table": T, "name": "hairpin-endpoints",
                "elem": [{"concat": ["10.42.0.2", "10.42.0.2"]}]}}}),
        ];
        let batch = encode(&cmds, &types, 1).unwrap();
        let msgs = messages(&batch.bytes);
        let elem = |i: usize| {
            let list = attrs(&msgs[i].3);
            let elems = attrs(&attr(&list, NFTA_SET_ELEM_LIST_ELEMENTS));
            attrs(&elems[0].1)
        };
        let slot = elem(1);
        let key = attr(&attrs(&attr(&slot, NFTA_SET_ELEM_KEY)), NFTA_DATA_VALUE);
        let mut expected = vec![10, 43, 0, 10, 17, 0, 0, 0, 0, 53, 0, 0];
        expected.extend(3u32.to_ne_bytes());
        assert_eq!(
            key, expected,
            "the slot in host byte order, as numgen writes it"
        );
        let data = attr(&attrs(&attr(&slot, NFTA_SET_ELEM_DATA)), NFTA_DATA_VALUE);
        assert_eq!(data, vec![10, 42, 0, 2, 0x14, 0xe9, 0, 0]);
        let hairpin = elem(2);
        assert!(hairpin.iter().all(|(kind, _)| *kind != NFTA_SET_ELEM_DATA));
        let key = attr(&attrs(&attr(&hairpin, NFTA_SET_ELEM_KEY)), NFTA_DATA_VALUE);
        assert_eq!(key, vec![10, 42, 0, 2, 10, 42, 0, 2]);
    }

    #[test]
    fn a_dnat_rule_is_encoded_as_nft_does() {
        // nft --debug=netlink: payload, cmp, numgen, cmp, meta, cmp, meta, bitwise, meta,
        // immediate, immediate, nat.
        let expr = json!([
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.42.0.2"}},
            {"match": {"op": "==", "left": {"numgen": {"mode": "random", "mod": 2, "offset": 0}}, "right": 0}},
            {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
            {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"meta": {"key": "mark"}}, 0x4000]}}},
            {"dnat": {"addr": "10.42.0.2", "port": 8080}},
        ]);
        let cmd =
            json!({"add": {"rule": {"family": "ip", "table": T, "chain": "svc", "expr": expr}}});
        let batch = encode(&[cmd], &MAPS, 1).unwrap();
        let msgs = messages(&batch.bytes);
        assert_eq!(msgs[1].0, nft_type(NFT_MSG_NEWRULE));
        assert_eq!(msgs[1].1, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_APPEND);
        let rule = attrs(&msgs[1].3);
        let expressions = attr(&rule, NFTA_RULE_EXPRESSIONS);
        assert_eq!(
            expr_names(&expressions),
            [
                "payload",
                "cmp",
                "numgen",
                "cmp",
                "meta",
                "cmp",
                "meta",
                "bitwise",
                "meta",
                "immediate",
                "immediate",
                "nat"
            ]
        );
        let all = attrs(&expressions);
        let data = |i: usize| attrs(&attr(&attrs(&all[i].1), NFTA_EXPR_DATA));
        // cmp eq reg 1 0x02002a0a
        let cmp = data(1);
        assert_eq!(attr(&cmp, 2), 0u32.to_be_bytes());
        assert_eq!(
            attr(&attrs(&attr(&cmp, 3)), NFTA_DATA_VALUE),
            [10, 42, 0, 2]
        );
        // bitwise reg 1 = (reg 1 & 0xffffbfff) ^ 0x00004000
        let bitwise = data(7);
        assert_eq!(
            attr(&attrs(&attr(&bitwise, 4)), NFTA_DATA_VALUE),
            (!0x4000u32).to_ne_bytes()
        );
        assert_eq!(
            attr(&attrs(&attr(&bitwise, 5)), NFTA_DATA_VALUE),
            0x4000u32.to_ne_bytes()
        );
        // immediate reg 2 0x0000901f: the port, big endian
        let port = data(10);
        assert_eq!(attr(&port, 1), NFT_REG_2.to_be_bytes());
        assert_eq!(
            attr(&attrs(&attr(&port, 2)), NFTA_DATA_VALUE),
            8080u16.to_be_bytes()
        );
        let nat = data(11);
        assert_eq!(attr(&nat, 1), 1u32.to_be_bytes(), "dnat");
        assert_eq!(attr(&nat, 7), 2u32.to_be_bytes(), "proto specified");
    }

    #[test]
    fn every_command_of_an_incremental_sync_is_encodable() {
        // Affinity, Local policies, a NodePort and a load-balancer address: everything a
        // service fragment holds.
        let mut svc = fixtures::service(
            "default",
            "web",
            json!({"clusterIP": "10.43.0.10", "type": "LoadBalancer",
                   "sessionAffinity": "ClientIP", "externalTrafficPolicy": "Local",
                   "ports": [{"name": "http", "port": 80, "nodePort": 30080, "targetPort": "web"}]}),
        );
        svc.status = Some(
            serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "192.168.1.2"}]}}))
                .unwrap(),
        );
        let plain = fixtures::service(
            "default",
            "api",
            json!({"clusterIP": "10.43.0.11", "internalTrafficPolicy": "Local",
                   "ports": [{"name": "http", "port": 80, "protocol": "UDP"}]}),
        );
        let mut eps = fixtures::web_endpoints(&["10.42.0.2", "10.42.0.3"]);
        for subset in eps.subsets.iter_mut().flatten() {
            for address in subset.addresses.iter_mut().flatten() {
                address.node_name = Some("node-a".into());
            }
        }
        let (services, endpoints) = fixtures::maps(vec![svc, plain], vec![eps]);
        let before = Ruleset::default();
        let after = build(&services, &endpoints, Some("node-a"));
        for cmds in [
            sync::diff(T, &before, &after),
            sync::diff(T, &after, &before),
        ] {
            assert!(!cmds.is_empty());
            if let Err(e) = encode(&cmds, &MAPS, 1) {
                panic!("{e}: {cmds:#?}");
            }
        }
    }

    #[test]
    fn the_static_chains_are_encodable_but_maps_are_left_to_nft() {
        for dnat_maps in [false, true] {
            let shape = crate::agent::proxy::rules::Shape { dnat_maps };
            let statics = crate::agent::proxy::rules::build_static(shape);
            let cmds = sync::diff(T, &Ruleset::default(), &statics);
            encode(&cmds, &MAPS, 1).unwrap();
            let full = sync::full_sync(T, &[&statics], &sync::LiveTable::default());
            encode(&full, &MAPS, 1).unwrap();
        }
        let err = encode(&sync::create_maps(T), &MAPS, 1).unwrap_err();
        assert!(err.0.contains("add map"), "{err}");
        let other_family = json!({"add": {"chain": {"family": "inet", "table": T, "name": "x"}}});
        assert!(encode(&[other_family], &MAPS, 1).is_err());
        let unknown_map = json!({"add": {"element": {"family": "ip", "table": T,
            "name": "policy-ips", "elem": ["10.42.0.9"]}}});
        assert!(encode(&[unknown_map], &MAPS, 1).is_err());
    }

    #[test]
    fn replies_are_split_and_errors_read() {
        let mut buf = Vec::new();
        // An error (-EEXIST) for seq 5, then an ack for seq 9.
        for (seq, code) in [(5u32, -17i32), (9, 0)] {
            buf.extend_from_slice(&36u32.to_ne_bytes());
            buf.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            buf.extend_from_slice(&0u16.to_ne_bytes());
            buf.extend_from_slice(&seq.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&code.to_ne_bytes());
            buf.extend_from_slice(&[0; 16]);
        }
        buf.extend_from_slice(&[1, 2, 3]); // a truncated tail is ignored
        assert_eq!(
            parse_replies(&buf),
            vec![
                Reply {
                    seq: 5,
                    error: Some(-17)
                },
                Reply {
                    seq: 9,
                    error: Some(0)
                }
            ]
        );
        let barrier = barrier(42);
        let msgs = messages(&barrier);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].0, nft_type(NFT_MSG_GETGEN));
        assert_eq!(msgs[0].2, 42);
    }
}
