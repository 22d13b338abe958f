//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) decoded into their JSON form.
//!
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` envelope whose `raw` holds
//! the object's own message. The field tables in [`schema`] (generated) give every
//! field's tag, JSON name and type; the result is the `serde_json::Value` the same object
//! has in Kubernetes JSON. Decoding only: responses stay JSON.
//!
//! Go's protobuf encoder writes plain (non-pointer) fields even when they hold their zero
//! value, where Go's JSON encoder would drop them (`omitempty`). The decoder mirrors the
//! JSON side: zero `Time`s and the zero strings, bools and integers of fields the
//! table marks [`Omit::Empty`] are left out; other zeros (pointer fields such as
//! `replicas: 0`, fields without `omitempty` such as a container's `name`) are kept.

#[rustfmt::skip]
pub mod schema;

use std::fmt;

use base64::Engine;
use chrono::{DateTime, Datelike};
use serde_json::{Map, Number, Value};

/// The prefix of every Kubernetes protobuf body.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// How deeply messages may nest (real objects stay well below 20).
pub const MAX_DEPTH: usize = 64;

/// Go's zero `time.Time` as Unix seconds (0001-01-01T00:00:00Z).
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// One message type: its fully qualified protobuf name and fields sorted by tag.
pub struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl Message {
    pub fn field(&self, tag: u32) -> Option<&'static Field> {
        self.fields
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .map(|i| &self.fields[i])
    }
}

/// One field of a message.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub tag: u32,
    /// JSON name (empty for `Inline`).
    pub json: &'static str,
    /// Type of the value (of each element for `Repeated`, of each value for `Map`).
    pub kind: Kind,
    pub cardinality: Cardinality,
    /// When Go's JSON encoder leaves the field out (its `omitempty` tag).
    pub omit: Omit,
}

/// When Go's JSON encoder leaves a field out, from the field's json tag and Go type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Omit {
    /// No `omitempty`: the field is always written (an empty list stays `[]`), and so is
    /// an `omitempty` struct (Go never counts a struct as empty: `resources: {}`).
    Never,
    /// `omitempty` on a plain value, list or map: left out when it is `""`, `false`, `0`,
    /// `[]`, `{}` or `null`.
    Empty,
    /// `omitempty` on a pointer: left out only when nil (`null`); a pointer to a zero
    /// (`replicas: 0`, `enableServiceLinks: false`) is written.
    Nil,
}

/// The type of a field's value and its JSON form.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    String,
    Bool,
    Int32,
    Int64,
    Double,
    /// Base64 string.
    Bytes,
    /// `meta.v1.Time`: RFC 3339 with seconds.
    Time,
    /// `meta.v1.MicroTime`: RFC 3339 with microseconds.
    MicroTime,
    /// `meta.v1.Duration`: Go duration string ("1m30s").
    Duration,
    /// `meta.v1.FieldsV1`: embedded JSON.
    FieldsV1,
    /// `intstr.IntOrString`: JSON number or string.
    IntOrString,
    /// `resource.Quantity`: string.
    Quantity,
    /// `runtime.RawExtension`: embedded JSON (or an embedded protobuf object).
    RawExtension,
    /// A message wrapping `repeated string items = 1` whose JSON is the bare list
    /// (`ExtraValue` of user info).
    StringList,
    Message(&'static Message),
}

/// How a field's values are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cardinality {
    Optional,
    Repeated,
    /// `map<string, kind>`: repeated entries {1: key, 2: value}, a JSON object.
    Map,
    /// A Go struct embedded with `json:",inline"`: its fields join the parent object.
    Inline,
}

/// Why a protobuf body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("the body does not start with the Kubernetes protobuf prefix k8s\\x00")]
    MissingMagic,
    #[error("protobuf data truncated at byte {offset}")]
    Truncated { offset: usize },
    #[error("malformed protobuf varint at byte {offset}")]
    MalformedVarint { offset: usize },
    #[error("invalid protobuf field key {key} at byte {offset}")]
    InvalidKey { key: u64, offset: usize },
    #[error("field {message}.{field} has protobuf wire type {wire_type}, expected {expected}")]
    WrongWireType {
        message: &'static str,
        field: &'static str,
        wire_type: u8,
        expected: u8,
    },
    #[error("protobuf message nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("the protobuf envelope has no apiVersion and kind")]
    MissingTypeMeta,
    #[error("no protobuf schema for {api_version}/{kind}")]
    NoSchema { api_version: String, kind: String },
    #[error("unsupported protobuf content encoding {0:?}")]
    UnsupportedContentEncoding(String),
    #[error("field {message}.{field} holds invalid embedded JSON: {detail}")]
    InvalidEmbeddedJson {
        message: &'static str,
        field: &'static str,
        detail: String,
    },
    #[error("field {message}.{field} holds a time outside the years 0-9999")]
    TimeOutOfRange {
        message: &'static str,
        field: &'static str,
    },
    #[error("field {message}.{field} holds a number JSON cannot represent")]
    NonFiniteNumber {
        message: &'static str,
        field: &'static str,
    },
}

pub type Result<T, E = ProtobufError> = std::result::Result<T, E>;

/// Whether a `Content-Type` names Kubernetes protobuf (parameters ignored).
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case(MEDIA_TYPE)
}

/// Decodes a protobuf request body (magic + `runtime.Unknown` envelope) into the
/// object's JSON form, with `apiVersion` and `kind` from the envelope.
pub fn decode_object(body: &[u8]) -> Result<Value> {
    decode_object_at(body, 0)
}

/// The message for an object kind; meta kinds (DeleteOptions, Status) under any group.
pub fn schema_for(api_version: &str, kind: &str) -> Option<&'static Message> {
    // policy/v1beta1 Eviction is the policy/v1 message under the older name.
    let api_version = match (api_version, kind) {
        ("policy/v1beta1", "Eviction") => "policy/v1",
        _ => api_version,
    };
    let exact = schema::KINDS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind);
    let meta = || {
        schema::KINDS
            .iter()
            .find(|(v, k, _)| *v == "meta.k8s.io/v1" && *k == kind)
    };
    exact.or_else(meta).map(|(_, _, m)| *m)
}

fn decode_object_at(body: &[u8], depth: usize) -> Result<Value> {
    let raw = body
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::MissingMagic)?;
    let envelope = Envelope::decode(raw)?;
    if !envelope.content_encoding.is_empty() {
        return Err(ProtobufError::UnsupportedContentEncoding(
            envelope.content_encoding,
        ));
    }
    if envelope.api_version.is_empty() || envelope.kind.is_empty() {
        return Err(ProtobufError::MissingTypeMeta);
    }
    let message = schema_for(&envelope.api_version, &envelope.kind).ok_or_else(|| {
        ProtobufError::NoSchema {
            api_version: envelope.api_version.clone(),
            kind: envelope.kind.clone(),
        }
    })?;
    let fields = decode_message(message, envelope.raw, depth + 1)?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(envelope.api_version));
    object.insert("kind".into(), Value::String(envelope.kind));
    object.extend(fields);
    Ok(Value::Object(object))
}

/// The `runtime.Unknown` envelope (tags as in [`schema::ENVELOPE`]).
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
}

impl<'a> Envelope<'a> {
    fn decode(buf: &'a [u8]) -> Result<Envelope<'a>> {
        let mut envelope = Envelope {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
        };
        let mut reader = Reader::new(buf);
        while let Some((tag, value)) = reader.next_field()? {
            match (tag, value) {
                (1, Wire::Bytes(type_meta)) => {
                    let mut inner = Reader::new(type_meta);
                    while let Some((tag, value)) = inner.next_field()? {
                        match (tag, value) {
                            (1, Wire::Bytes(b)) => envelope.api_version = utf8(b),
                            (2, Wire::Bytes(b)) => envelope.kind = utf8(b),
                            _ => {}
                        }
                    }
                }
                (2, Wire::Bytes(raw)) => envelope.raw = raw,
                (3, Wire::Bytes(b)) => envelope.content_encoding = utf8(b),
                _ => {}
            }
        }
        Ok(envelope)
    }
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One field value as it sits on the wire.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

impl Wire<'_> {
    fn wire_type(&self) -> u8 {
        match self {
            Wire::Varint(_) => 0,
            Wire::Fixed64(_) => 1,
            Wire::Bytes(_) => 2,
            Wire::Fixed32 => 5,
        }
    }
}

/// Reads fields off a protobuf buffer; never reads past its end.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64> {
        let start = self.pos;
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(ProtobufError::Truncated { offset: self.pos });
            };
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err(ProtobufError::MalformedVarint { offset: start });
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::MalformedVarint { offset: start })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or(ProtobufError::Truncated {
                offset: self.buf.len(),
            })?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// The next field (groups, a deprecated encoding, are skipped), or None at the end.
    fn next_field(&mut self) -> Result<Option<(u32, Wire<'a>)>> {
        loop {
            if self.pos >= self.buf.len() {
                return Ok(None);
            }
            let offset = self.pos;
            let key = self.varint()?;
            let tag = u32::try_from(key >> 3)
                .ok()
                .filter(|t| *t != 0)
                .ok_or(ProtobufError::InvalidKey { key, offset })?;
            let value = match key & 7 {
                0 => Wire::Varint(self.varint()?),
                1 => Wire::Fixed64(u64::from_le_bytes(self.fixed()?)),
                2 => {
                    let len = usize::try_from(self.varint()?).unwrap_or(usize::MAX);
                    Wire::Bytes(self.take(len)?)
                }
                3 => {
                    self.skip_group(tag)?;
                    continue;
                }
                5 => {
                    self.take(4)?;
                    Wire::Fixed32
                }
                _ => return Err(ProtobufError::InvalidKey { key, offset }),
            };
            return Ok(Some((tag, value)));
        }
    }

    /// Skips to the end of a group whose start key (for `tag`) was just read.
    fn skip_group(&mut self, tag: u32) -> Result<()> {
        let mut open = vec![tag];
        while let Some(&innermost) = open.last() {
            let offset = self.pos;
            let key = self.varint()?;
            let field = u32::try_from(key >> 3).unwrap_or(0);
            match key & 7 {
                0 => drop(self.varint()?),
                1 => drop(self.take(8)?),
                2 => {
                    let len = usize::try_from(self.varint()?).unwrap_or(usize::MAX);
                    self.take(len)?;
                }
                3 if open.len() < MAX_DEPTH => open.push(field),
                3 => return Err(ProtobufError::TooDeep),
                4 if field == innermost => drop(open.pop()),
                5 => drop(self.take(4)?),
                _ => return Err(ProtobufError::InvalidKey { key, offset }),
            }
        }
        Ok(())
    }
}

/// Decodes one message into the members of its JSON object.
fn decode_message(
    message: &'static Message,
    buf: &[u8],
    depth: usize,
) -> Result<Map<String, Value>> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep);
    }
    let mut object = Map::new();
    let mut reader = Reader::new(buf);
    while let Some((tag, wire)) = reader.next_field()? {
        let Some(field) = message.field(tag) else {
            continue;
        };
        match field.cardinality {
            Cardinality::Optional => {
                let Some(value) = decode_value(message, field, wire, depth)? else {
                    continue;
                };
                if field.omit == Omit::Empty && is_zero(&value) {
                    object.remove(field.json);
                    continue;
                }
                match (object.get_mut(field.json), value) {
                    // A message repeated on the wire merges into the earlier one.
                    (Some(Value::Object(earlier)), Value::Object(later)) => earlier.extend(later),
                    (_, value) => drop(object.insert(field.json.to_string(), value)),
                }
            }
            Cardinality::Repeated => {
                let items = object
                    .entry(field.json)
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(items) = items else {
                    unreachable!("repeated fields are only ever arrays");
                };
                match wire {
                    Wire::Bytes(packed) if is_packable(field.kind) => {
                        let mut inner = Reader::new(packed);
                        while inner.pos < packed.len() {
                            let element = match field.kind {
                                Kind::Double => Wire::Fixed64(u64::from_le_bytes(inner.fixed()?)),
                                _ => Wire::Varint(inner.varint()?),
                            };
                            items.extend(decode_value(message, field, element, depth)?);
                        }
                    }
                    _ => items.extend(decode_value(message, field, wire, depth)?),
                }
            }
            Cardinality::Map => {
                let entry = expect_bytes(message, field, wire)?;
                let (key, value) = decode_map_entry(message, field, entry, depth)?;
                let map = object
                    .entry(field.json)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let (Value::Object(map), Some(value)) = (map, value) {
                    map.insert(key, value);
                }
            }
            Cardinality::Inline => {
                if let Some(Value::Object(inner)) = decode_value(message, field, wire, depth)? {
                    object.extend(inner);
                }
            }
        }
    }
    Ok(object)
}

fn is_packable(kind: Kind) -> bool {
    matches!(kind, Kind::Bool | Kind::Int32 | Kind::Int64 | Kind::Double)
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Null => true,
        _ => false,
    }
}

fn decode_map_entry(
    message: &'static Message,
    field: &'static Field,
    entry: &[u8],
    depth: usize,
) -> Result<(String, Option<Value>)> {
    let mut key = String::new();
    let mut value = None;
    let mut reader = Reader::new(entry);
    while let Some((tag, wire)) = reader.next_field()? {
        match tag {
            1 => key = utf8(expect_bytes(message, field, wire)?),
            2 => value = decode_value(message, field, wire, depth)?,
            _ => {}
        }
    }
    let value = match value {
        Some(v) => Some(v),
        None => zero_value(message, field, depth)?,
    };
    Ok((key, value))
}

/// The JSON of a map value left off the wire (Go's zero value of the type).
fn zero_value(
    message: &'static Message,
    field: &'static Field,
    depth: usize,
) -> Result<Option<Value>> {
    Ok(match field.kind {
        Kind::Bool => Some(Value::Bool(false)),
        Kind::Int32 | Kind::Int64 | Kind::IntOrString => Some(Value::from(0)),
        Kind::Double => Some(Value::from(0.0)),
        Kind::Time | Kind::MicroTime => None,
        Kind::String
        | Kind::Bytes
        | Kind::Duration
        | Kind::Quantity
        | Kind::RawExtension
        | Kind::FieldsV1
        | Kind::StringList
        | Kind::Message(_) => decode_value(message, field, Wire::Bytes(&[]), depth)?,
    })
}

fn expect_bytes<'a>(
    message: &'static Message,
    field: &'static Field,
    wire: Wire<'a>,
) -> Result<&'a [u8]> {
    match wire {
        Wire::Bytes(b) => Ok(b),
        other => Err(wrong_wire_type(message, field, other, 2)),
    }
}

fn wrong_wire_type(
    message: &'static Message,
    field: &'static Field,
    wire: Wire<'_>,
    expected: u8,
) -> ProtobufError {
    ProtobufError::WrongWireType {
        message: message.name,
        field: field_name(field),
        wire_type: wire.wire_type(),
        expected,
    }
}

fn field_name(field: &'static Field) -> &'static str {
    if field.json.is_empty() {
        "(inline)"
    } else {
        field.json
    }
}

/// Decodes one value of `field` (an element, for repeated and map fields); None for a
/// value whose JSON form is null and is left out (a zero `Time`).
fn decode_value(
    message: &'static Message,
    field: &'static Field,
    wire: Wire<'_>,
    depth: usize,
) -> Result<Option<Value>> {
    let varint = |wire: Wire<'_>| match wire {
        Wire::Varint(v) => Ok(v),
        other => Err(wrong_wire_type(message, field, other, 0)),
    };
    let value = match field.kind {
        Kind::String => Value::String(utf8(expect_bytes(message, field, wire)?)),
        Kind::Bool => Value::Bool(varint(wire)? != 0),
        // Go's int32 decoding truncates the sign-extended varint, as here.
        Kind::Int32 => Value::from(varint(wire)? as i32),
        Kind::Int64 => Value::from(varint(wire)? as i64),
        Kind::Double => match wire {
            Wire::Fixed64(bits) => Number::from_f64(f64::from_bits(bits))
                .map(Value::Number)
                .ok_or(ProtobufError::NonFiniteNumber {
                    message: message.name,
                    field: field_name(field),
                })?,
            other => return Err(wrong_wire_type(message, field, other, 1)),
        },
        Kind::Bytes => Value::String(
            base64::engine::general_purpose::STANDARD.encode(expect_bytes(message, field, wire)?),
        ),
        Kind::Time | Kind::MicroTime => {
            // Go writes a zero time as an empty message (older encoders: its Unix seconds).
            if matches!(wire, Wire::Bytes(b) if b.is_empty()) {
                return Ok(None);
            }
            let (seconds, nanos) = decode_timestamp(message, field, wire, depth)?;
            if seconds == GO_ZERO_TIME_SECONDS && nanos == 0 {
                return Ok(None);
            }
            let micro = matches!(field.kind, Kind::MicroTime);
            // Go's Time keeps whole seconds from protobuf; MicroTime keeps the nanoseconds.
            let nanos = if micro { nanos } else { 0 };
            Value::String(format_time(seconds, nanos, micro).ok_or(
                ProtobufError::TimeOutOfRange {
                    message: message.name,
                    field: field_name(field),
                },
            )?)
        }
        Kind::Duration => {
            let mut nanos = 0i64;
            for_each_subfield(message, field, wire, depth, |tag, wire| {
                if tag == 1 {
                    nanos = varint(wire)? as i64;
                }
                Ok(())
            })?;
            Value::String(go_duration(nanos))
        }
        Kind::IntOrString => {
            let (mut is_string, mut int_val, mut str_val) = (false, 0i32, String::new());
            for_each_subfield(message, field, wire, depth, |tag, wire| {
                match tag {
                    1 => is_string = varint(wire)? == 1,
                    2 => int_val = varint(wire)? as i32,
                    3 => str_val = utf8(expect_bytes(message, field, wire)?),
                    _ => {}
                }
                Ok(())
            })?;
            if is_string {
                Value::String(str_val)
            } else {
                Value::from(int_val)
            }
        }
        Kind::Quantity => {
            let mut quantity = String::from("0");
            for_each_subfield(message, field, wire, depth, |tag, wire| {
                if tag == 1 {
                    quantity = utf8(expect_bytes(message, field, wire)?);
                }
                Ok(())
            })?;
            Value::String(quantity)
        }
        Kind::StringList => {
            let mut items = Vec::new();
            for_each_subfield(message, field, wire, depth, |tag, wire| {
                if tag == 1 {
                    items.push(Value::String(utf8(expect_bytes(message, field, wire)?)));
                }
                Ok(())
            })?;
            Value::Array(items)
        }
        Kind::RawExtension | Kind::FieldsV1 => {
            let mut raw: &[u8] = &[];
            for_each_subfield(message, field, wire, depth, |tag, wire| {
                if tag == 1 {
                    raw = expect_bytes(message, field, wire)?;
                }
                Ok(())
            })?;
            decode_embedded(message, field, raw, depth)?
        }
        Kind::Message(inner) => Value::Object(decode_message(
            inner,
            expect_bytes(message, field, wire)?,
            depth + 1,
        )?),
    };
    Ok(Some(value))
}

fn for_each_subfield<'a>(
    message: &'static Message,
    field: &'static Field,
    wire: Wire<'a>,
    depth: usize,
    mut each: impl FnMut(u32, Wire<'a>) -> Result<()>,
) -> Result<()> {
    if depth + 1 > MAX_DEPTH {
        return Err(ProtobufError::TooDeep);
    }
    let mut reader = Reader::new(expect_bytes(message, field, wire)?);
    while let Some((tag, wire)) = reader.next_field()? {
        each(tag, wire)?;
    }
    Ok(())
}

fn decode_timestamp(
    message: &'static Message,
    field: &'static Field,
    wire: Wire<'_>,
    depth: usize,
) -> Result<(i64, i64)> {
    let (mut seconds, mut nanos) = (0i64, 0i64);
    for_each_subfield(message, field, wire, depth, |tag, wire| {
        let v = match wire {
            Wire::Varint(v) => v,
            other => return Err(wrong_wire_type(message, field, other, 0)),
        };
        match tag {
            1 => seconds = v as i64,
            2 => nanos = i64::from(v as i32),
            _ => {}
        }
        Ok(())
    })?;
    Ok((seconds, nanos))
}

/// RFC 3339 in UTC as Go's `metav1.Time` (seconds) or `MicroTime` (6 fractional digits)
/// marshal it; None outside the years 0–9999, which Go refuses too.
fn format_time(seconds: i64, nanos: i64, micro: bool) -> Option<String> {
    let seconds = seconds.checked_add(nanos.div_euclid(NANOS_PER_SECOND))?;
    let nanos = u32::try_from(nanos.rem_euclid(NANOS_PER_SECOND)).ok()?;
    let time = DateTime::from_timestamp(seconds, nanos)?;
    if !(0..=9999).contains(&time.year()) {
        return None;
    }
    let format = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Some(time.format(format).to_string())
}

/// A duration in nanoseconds as Go's `time.Duration.String` prints it ("1h2m3.5s", "150ms").
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let body = if n < 1_000 {
        format!("{n}ns")
    } else if n < 1_000_000 {
        format!("{}µs", decimal(n, 1_000))
    } else if n < 1_000_000_000 {
        format!("{}ms", decimal(n, 1_000_000))
    } else {
        const HOUR: u64 = 3_600_000_000_000;
        const MINUTE: u64 = 60_000_000_000;
        let (hours, rest) = (n / HOUR, n % HOUR);
        let (minutes, rest) = (rest / MINUTE, rest % MINUTE);
        let seconds = format!("{}s", decimal(rest, 1_000_000_000));
        match (hours, minutes) {
            (0, 0) => seconds,
            (0, m) => format!("{m}m{seconds}"),
            (h, m) => format!("{h}h{m}m{seconds}"),
        }
    };
    format!("{sign}{body}")
}

/// `value / unit` with the fraction's trailing zeros dropped.
fn decimal(value: u64, unit: u64) -> String {
    let (whole, fraction) = (value / unit, value % unit);
    if fraction == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// The JSON inside a `RawExtension`/`FieldsV1` (null when empty; a nested protobuf
/// object when it carries the magic).
fn decode_embedded(
    message: &'static Message,
    field: &'static Field,
    raw: &[u8],
    depth: usize,
) -> Result<Value> {
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    if raw.starts_with(MAGIC) {
        return decode_object_at(raw, depth + 1);
    }
    serde_json::from_slice(raw).map_err(|e| ProtobufError::InvalidEmbeddedJson {
        message: message.name,
        field: field_name(field),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
