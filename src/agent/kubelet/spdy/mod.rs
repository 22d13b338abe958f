//! SPDY/3.1 framing as the Kubernetes streaming protocols use it (moby/spdystream, the
//! library behind kubectl's and the kubelet's SPDY): frame encoding and an incremental
//! decoder, with header blocks zlib-compressed by one stream per direction primed with
//! the SPDY dictionary. No I/O here.
//!
//! Flow control is parsed, not enforced: spdystream never sends WINDOW_UPDATE and
//! ignores the windows it receives, so enforcing the 64 KiB default window would stall
//! every transfer with kubectl.

mod dictionary;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

pub use dictionary::HEADER_DICTIONARY;

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
/// Control flag: the sender's half of the stream ends with this frame.
pub const FLAG_FIN: u8 = 0x01;
/// SYN_STREAM flag: the receiver may not send on the stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// Length of the common frame header.
const FRAME_HEADER: usize = 8;
/// Largest payload the 24-bit length field can carry.
pub const MAX_PAYLOAD: usize = 0x00ff_ffff;
/// Largest decompressed header block accepted (against zlib bombs).
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// Adler-32 of [`HEADER_DICTIONARY`], the dictionary id zlib announces.
const DICTIONARY_ID: u32 = 0xe3c6_a7c2;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes (SPDY/3.1 section 2.6.3).
pub mod status {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
    pub const STREAM_IN_USE: u32 = 8;
}

/// A header block: lowercase names, several values of one name joined by NUL.
pub type Headers = Vec<(String, String)>;

/// The value of header `name` (SPDY names are lowercase; matched case-insensitively).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame type SPDY/3.1 does not define: ignored, as the specification says.
    Unknown {
        kind: u16,
    },
}

impl Frame {
    /// The frame carries `FLAG_FIN`.
    pub fn is_fin(&self) -> bool {
        match self {
            Frame::SynStream { flags, .. }
            | Frame::SynReply { flags, .. }
            | Frame::Headers { flags, .. }
            | Frame::Data { flags, .. } => flags & FLAG_FIN != 0,
            _ => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("unsupported SPDY version {0} (orc speaks SPDY/3.1)")]
    UnsupportedVersion(u16),
    #[error("{kind} frame with a {len}-byte payload is malformed")]
    Malformed { kind: &'static str, len: usize },
    #[error("header block does not decompress")]
    Inflate(#[source] flate2::DecompressError),
    #[error("header block was compressed with dictionary {0:#x}, not SPDY's")]
    WrongDictionary(u32),
    #[error("header block does not compress")]
    Deflate(#[source] flate2::CompressError),
    #[error("header block is larger than {MAX_HEADER_BLOCK} bytes")]
    HeaderBlockTooLarge,
    #[error("header block is malformed")]
    MalformedHeaderBlock,
    #[error("frame payload of {0} bytes does not fit a 24-bit length")]
    TooLarge(usize),
}

/// Decodes frames from the bytes a peer sent, keeping the header decompression stream
/// of the connection.
pub struct Decoder {
    inflate: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            inflate: Decompress::new(true),
        }
    }

    /// Takes the first frame off `buf` once it is complete (`None`: more bytes needed).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < FRAME_HEADER {
            return Ok(None);
        }
        let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if buf.len() < FRAME_HEADER + len {
            buf.reserve(FRAME_HEADER + len - buf.len());
            return Ok(None);
        }
        let head = buf.split_to(FRAME_HEADER);
        let payload = buf.split_to(len).freeze();
        let flags = head[4];
        if head[0] & 0x80 == 0 {
            let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Ok(Some(Frame::Data {
                stream_id,
                flags,
                data: payload,
            }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(SpdyError::UnsupportedVersion(version));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        self.control(kind, flags, payload).map(Some)
    }

    fn control(&mut self, kind: u16, flags: u8, mut p: Bytes) -> Result<Frame, SpdyError> {
        let len = p.len();
        let need = |name: &'static str, min: usize| {
            if len < min {
                Err(SpdyError::Malformed { kind: name, len })
            } else {
                Ok(())
            }
        };
        let id = |p: &mut Bytes| p.get_u32() & 0x7fff_ffff;
        Ok(match kind {
            SYN_STREAM => {
                need("SYN_STREAM", 10)?;
                let stream_id = id(&mut p);
                let associated_to = id(&mut p);
                let priority = p.get_u8() >> 5;
                let _slot = p.get_u8();
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    flags,
                    headers: self.headers(&p)?,
                }
            }
            SYN_REPLY => {
                need("SYN_REPLY", 4)?;
                let stream_id = id(&mut p);
                Frame::SynReply {
                    stream_id,
                    flags,
                    headers: self.headers(&p)?,
                }
            }
            HEADERS => {
                need("HEADERS", 4)?;
                let stream_id = id(&mut p);
                Frame::Headers {
                    stream_id,
                    flags,
                    headers: self.headers(&p)?,
                }
            }
            RST_STREAM => {
                need("RST_STREAM", 8)?;
                Frame::RstStream {
                    stream_id: id(&mut p),
                    status: p.get_u32(),
                }
            }
            SETTINGS => {
                need("SETTINGS", 4)?;
                let count = p.get_u32() as usize;
                if p.len() != count.saturating_mul(8) {
                    return Err(SpdyError::Malformed {
                        kind: "SETTINGS",
                        len,
                    });
                }
                let entries = (0..count)
                    .map(|_| {
                        let flag_id = p.get_u32();
                        Setting {
                            flags: (flag_id >> 24) as u8,
                            id: flag_id & 0x00ff_ffff,
                            value: p.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            PING => {
                need("PING", 4)?;
                Frame::Ping { id: p.get_u32() }
            }
            GOAWAY => {
                need("GOAWAY", 4)?;
                let last_good_stream_id = id(&mut p);
                // SPDY/2 peers send no status.
                let status = if p.len() >= 4 { p.get_u32() } else { 0 };
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }
            WINDOW_UPDATE => {
                need("WINDOW_UPDATE", 8)?;
                Frame::WindowUpdate {
                    stream_id: id(&mut p),
                    delta: p.get_u32() & 0x7fff_ffff,
                }
            }
            kind => Frame::Unknown { kind },
        })
    }

    /// Decompresses one header block (the connection's zlib stream goes on) and parses it.
    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let mut out = Vec::with_capacity((compressed.len() * 4).clamp(64, MAX_HEADER_BLOCK));
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::HeaderBlockTooLarge);
                }
                out.reserve(out.len().min(MAX_HEADER_BLOCK - out.len()));
            }
            let (in_before, out_before) = (self.inflate.total_in(), out.len());
            let result =
                self.inflate
                    .decompress_vec(&compressed[pos..], &mut out, FlushDecompress::Sync);
            pos += (self.inflate.total_in() - in_before) as usize;
            match result {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {
                    let flushed = out.len() < out.capacity();
                    if pos == compressed.len() && flushed {
                        break;
                    }
                    if flushed && out.len() == out_before && pos < compressed.len() {
                        // No progress with room to write: the input is not zlib.
                        return Err(SpdyError::MalformedHeaderBlock);
                    }
                }
                Err(e) => match e.needs_dictionary() {
                    Some(DICTIONARY_ID) => {
                        self.inflate
                            .set_dictionary(&HEADER_DICTIONARY)
                            .map_err(SpdyError::Inflate)?;
                    }
                    Some(other) => return Err(SpdyError::WrongDictionary(other)),
                    None => return Err(SpdyError::Inflate(e)),
                },
            }
        }
        if out.len() > MAX_HEADER_BLOCK {
            return Err(SpdyError::HeaderBlockTooLarge);
        }
        parse_header_block(&out)
    }
}

/// The name/value pairs of a decompressed SPDY/3 header block.
pub fn parse_header_block(mut block: &[u8]) -> Result<Headers, SpdyError> {
    fn chunk<'a>(block: &mut &'a [u8]) -> Result<&'a [u8], SpdyError> {
        if block.len() < 4 {
            return Err(SpdyError::MalformedHeaderBlock);
        }
        let len = block.get_u32() as usize;
        if block.len() < len {
            return Err(SpdyError::MalformedHeaderBlock);
        }
        let (value, rest) = block.split_at(len);
        *block = rest;
        Ok(value)
    }
    let count = chunk_count(&mut block)?;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name =
            std::str::from_utf8(chunk(&mut block)?).map_err(|_| SpdyError::MalformedHeaderBlock)?;
        let value =
            std::str::from_utf8(chunk(&mut block)?).map_err(|_| SpdyError::MalformedHeaderBlock)?;
        if name.is_empty() {
            return Err(SpdyError::MalformedHeaderBlock);
        }
        headers.push((name.to_ascii_lowercase(), value.to_string()));
    }
    Ok(headers)
}

fn chunk_count(block: &mut &[u8]) -> Result<usize, SpdyError> {
    if block.len() < 4 {
        return Err(SpdyError::MalformedHeaderBlock);
    }
    Ok(block.get_u32() as usize)
}

/// An uncompressed SPDY/3 header block for `headers` (names lowercased).
pub fn header_block(headers: &Headers) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_u32(headers.len() as u32);
    for (name, value) in headers {
        out.put_u32(name.len() as u32);
        out.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
        out.put_u32(value.len() as u32);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Encodes frames for a peer, keeping the header compression stream of the connection.
pub struct Encoder {
    deflate: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        let mut deflate = Compress::new(Compression::best(), true);
        deflate
            .set_dictionary(&HEADER_DICTIONARY)
            .expect("a fresh zlib stream takes a dictionary");
        Encoder { deflate }
    }

    /// Appends `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        match frame {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let len = checked_len(data.len())?;
                out.reserve(FRAME_HEADER + data.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32((u32::from(*flags) << 24) | len);
                out.extend_from_slice(data);
                Ok(())
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let mut p = Vec::new();
                p.put_u32(stream_id & 0x7fff_ffff);
                p.put_u32(associated_to & 0x7fff_ffff);
                p.put_u8((priority & 0x07) << 5);
                p.put_u8(0);
                self.compress(headers, &mut p)?;
                control(out, SYN_STREAM, *flags, &p)
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                self.compress(headers, &mut p)?;
                control(out, SYN_REPLY, *flags, &p)
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                self.compress(headers, &mut p)?;
                control(out, HEADERS, *flags, &p)
            }
            Frame::RstStream { stream_id, status } => {
                control(out, RST_STREAM, 0, &pair(stream_id & 0x7fff_ffff, *status))
            }
            Frame::Settings { flags, entries } => {
                let mut p = Vec::with_capacity(4 + entries.len() * 8);
                p.put_u32(entries.len() as u32);
                for e in entries {
                    p.put_u32((u32::from(e.flags) << 24) | (e.id & 0x00ff_ffff));
                    p.put_u32(e.value);
                }
                control(out, SETTINGS, *flags, &p)
            }
            Frame::Ping { id } => control(out, PING, 0, &id.to_be_bytes()),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => control(
                out,
                GOAWAY,
                0,
                &pair(last_good_stream_id & 0x7fff_ffff, *status),
            ),
            Frame::WindowUpdate { stream_id, delta } => control(
                out,
                WINDOW_UPDATE,
                0,
                &pair(stream_id & 0x7fff_ffff, delta & 0x7fff_ffff),
            ),
            Frame::Unknown { kind } => control(out, *kind, 0, &[]),
        }
    }

    /// Appends the compressed header block of `headers` to `out` (a sync flush, so the
    /// peer can decompress it without the next one).
    fn compress(&mut self, headers: &Headers, out: &mut Vec<u8>) -> Result<(), SpdyError> {
        let block = header_block(headers);
        let mut pos = 0;
        loop {
            out.reserve(block.len() + 64);
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&block[pos..], out, FlushCompress::Sync)
                .map_err(SpdyError::Deflate)?;
            pos += (self.deflate.total_in() - before) as usize;
            // Done when all input is in and the flush left spare room in `out`.
            if pos == block.len() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }
}

fn pair(a: u32, b: u32) -> [u8; 8] {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&a.to_be_bytes());
    p[4..].copy_from_slice(&b.to_be_bytes());
    p
}

fn checked_len(len: usize) -> Result<u32, SpdyError> {
    if len > MAX_PAYLOAD {
        return Err(SpdyError::TooLarge(len));
    }
    Ok(len as u32)
}

fn control(out: &mut BytesMut, kind: u16, flags: u8, payload: &[u8]) -> Result<(), SpdyError> {
    let len = checked_len(payload.len())?;
    out.reserve(FRAME_HEADER + payload.len());
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u32((u32::from(flags) << 24) | len);
    out.extend_from_slice(payload);
    Ok(())
}

#[cfg(test)]
mod tests;
