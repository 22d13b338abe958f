use super::*;

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn every_kind() -> Vec<Frame> {
    vec![
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 3,
            flags: FLAG_FIN,
            headers: headers(&[
                ("streamtype", "error"),
                ("port", "8080"),
                ("requestid", "0"),
            ]),
        },
        Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: vec![],
        },
        Frame::Headers {
            stream_id: 3,
            flags: FLAG_FIN,
            headers: headers(&[("x", "a\0b")]),
        },
        Frame::RstStream {
            stream_id: 3,
            status: status::CANCEL,
        },
        Frame::Settings {
            flags: 1,
            entries: vec![Setting {
                flags: 1,
                id: 7,
                value: 65536,
            }],
        },
        Frame::Ping { id: 1 },
        Frame::GoAway {
            last_good_stream_id: 5,
            status: 0,
        },
        Frame::WindowUpdate {
            stream_id: 1,
            delta: 1 << 20,
        },
        Frame::Data {
            stream_id: 1,
            flags: 0,
            data: Bytes::from_static(b"hello"),
        },
        Frame::Data {
            stream_id: 1,
            flags: FLAG_FIN,
            data: Bytes::new(),
        },
    ]
}

fn decode_all(decoder: &mut Decoder, buf: &mut BytesMut) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(f) = decoder.decode(buf).unwrap() {
        frames.push(f);
    }
    frames
}

#[test]
fn every_frame_kind_round_trips_through_one_connection() {
    let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
    let mut wire = BytesMut::new();
    // Twice: the second header blocks depend on the first ones' compression state.
    let frames: Vec<Frame> = every_kind().into_iter().chain(every_kind()).collect();
    for f in &frames {
        enc.encode(f, &mut wire).unwrap();
    }
    assert_eq!(decode_all(&mut dec, &mut wire), frames);
    assert!(wire.is_empty());
}

#[test]
fn frames_split_anywhere_decode_the_same() {
    let mut enc = Encoder::new();
    let mut wire = BytesMut::new();
    for f in every_kind() {
        enc.encode(&f, &mut wire).unwrap();
    }
    let big = Frame::Data {
        stream_id: 5,
        flags: 0,
        data: Bytes::from(vec![7u8; 100_000]),
    };
    enc.encode(&big, &mut wire).unwrap();
    let wire = wire.freeze();
    // As WebSocket messages of 1, 7 and 4096 bytes arrive.
    for piece in [1usize, 7, 4096] {
        let mut dec = Decoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(piece) {
            buf.extend_from_slice(chunk);
            got.extend(decode_all(&mut dec, &mut buf));
        }
        let mut expected = every_kind();
        expected.push(big.clone());
        assert_eq!(got, expected, "pieces of {piece}");
    }
}

#[test]
fn header_blocks_from_another_zlib_decode_with_the_spdy_dictionary() {
    // Two SYN_STREAMs as kubectl opens a forwarded connection, compressed by C zlib
    // (Python's zlib.compressobj(9, zdict=SPDY dictionary), sync flush per block).
    let vector = hex(
        "800300010000003c0000000100000000000078f9e3c6a7c202253a703a2b294a4dcc851625aca9a080\
         8614cb45a024cc64610024398b209198094adc8c0600000000ffff800300010000001800000003000000\
         000000c2aa15540a2512d209000000ffff",
    );
    let mut dec = Decoder::new();
    let frames = decode_all(&mut dec, &mut BytesMut::from(&vector[..]));
    let expect = |id, kind| Frame::SynStream {
        stream_id: id,
        associated_to: 0,
        priority: 0,
        flags: 0,
        headers: headers(&[("streamtype", kind), ("port", "80"), ("requestid", "0")]),
    };
    assert_eq!(frames, vec![expect(1, "error"), expect(3, "data")]);
}

#[test]
fn the_first_header_block_announces_the_spdy_dictionary() {
    let mut wire = BytesMut::new();
    Encoder::new()
        .encode(
            &Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![],
            },
            &mut wire,
        )
        .unwrap();
    // Frame header, stream id, then the zlib header: CMF, FLG with FDICT, dictionary id.
    let zlib = &wire[12..];
    assert_eq!(zlib[0] & 0x0f, 8, "deflate");
    assert_ne!(zlib[1] & 0x20, 0, "FDICT");
    assert_eq!(zlib[2..6], DICTIONARY_ID.to_be_bytes());
    // And a plain zlib primed with the dictionary reads it.
    let mut inflate = Decompress::new(true);
    let mut out = Vec::with_capacity(64);
    let e = inflate
        .decompress_vec(zlib, &mut out, FlushDecompress::Sync)
        .unwrap_err();
    assert_eq!(e.needs_dictionary(), Some(DICTIONARY_ID));
    inflate.set_dictionary(&HEADER_DICTIONARY).unwrap();
    let consumed = inflate.total_in() as usize;
    inflate
        .decompress_vec(&zlib[consumed..], &mut out, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(out, 0u32.to_be_bytes());
}

#[test]
fn control_frames_of_another_version_are_refused() {
    let mut wire = BytesMut::from(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1][..]);
    assert!(matches!(
        Decoder::new().decode(&mut wire),
        Err(SpdyError::UnsupportedVersion(2))
    ));
}

#[test]
fn short_and_garbled_frames_are_errors_not_panics() {
    let short_ping = [0x80, 0x03, 0x00, 0x06, 0, 0, 0, 2, 0, 1];
    let e = Decoder::new()
        .decode(&mut BytesMut::from(&short_ping[..]))
        .unwrap_err();
    assert!(
        matches!(e, SpdyError::Malformed { kind: "PING", .. }),
        "{e}"
    );
    let garbage_headers = [0x80, 0x03, 0x00, 0x02, 0, 0, 0, 8, 0, 0, 0, 1, 1, 2, 3, 4];
    assert!(Decoder::new()
        .decode(&mut BytesMut::from(&garbage_headers[..]))
        .is_err());
    let bad_settings = [0x80, 0x03, 0x00, 0x04, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff];
    assert!(Decoder::new()
        .decode(&mut BytesMut::from(&bad_settings[..]))
        .is_err());
    // A block claiming more pairs than it holds.
    assert!(parse_header_block(&[0, 0, 0, 2, 0, 0, 0, 1, b'a', 0, 0, 0, 0]).is_err());
}

#[test]
fn unknown_control_frames_are_skipped() {
    let mut wire = BytesMut::from(&[0x80, 0x03, 0x00, 0x0a, 0, 0, 0, 2, 9, 9][..]);
    assert_eq!(
        Decoder::new().decode(&mut wire).unwrap(),
        Some(Frame::Unknown { kind: 10 })
    );
    assert!(wire.is_empty());
}

#[test]
fn huge_header_blocks_are_refused() {
    let value = "a".repeat(MAX_HEADER_BLOCK);
    let mut wire = BytesMut::new();
    Encoder::new()
        .encode(
            &Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: headers(&[("big", &value)]),
            },
            &mut wire,
        )
        .unwrap();
    assert!(wire.len() < 4096, "compresses well: {}", wire.len());
    assert!(matches!(
        Decoder::new().decode(&mut wire),
        Err(SpdyError::HeaderBlockTooLarge)
    ));
}

#[test]
fn oversized_data_is_refused() {
    let frame = Frame::Data {
        stream_id: 1,
        flags: 0,
        data: Bytes::from(vec![0u8; MAX_PAYLOAD + 1]),
    };
    assert!(matches!(
        Encoder::new().encode(&frame, &mut BytesMut::new()),
        Err(SpdyError::TooLarge(_))
    ));
}
