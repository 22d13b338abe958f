//! The container logger the shim runs (`orc container-logger PATH` through a `binary://`
//! log URI): it owns the container's stdout/stderr pipes, so an orc restart never breaks
//! them, and writes CRI log lines (`2024-01-01T00:00:00.000000000Z stdout F text`).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};

/// Hidden subcommand name the shim invokes orc with.
pub const SUBCOMMAND: &str = "container-logger";
/// Longest line written as one record; longer lines are split into partial (`P`) records.
pub const MAX_LINE: usize = 16 * 1024;

/// File descriptors the containerd shim hands a `binary://` logger.
const STDOUT_FD: i32 = 3;
const STDERR_FD: i32 = 4;
const READY_FD: i32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One CRI log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriLine {
    pub time: DateTime<Utc>,
    pub stream: Stream,
    /// A partial (`P`) record continues in the next record of the same stream.
    pub partial: bool,
    pub content: Vec<u8>,
}

/// Formats one record, newline-terminated.
pub fn format_line(time: DateTime<Utc>, stream: Stream, partial: bool, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 48);
    out.extend_from_slice(time.to_rfc3339_opts(SecondsFormat::Nanos, true).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// Parses one record (without its newline); `None` for a malformed line.
pub fn parse_line(line: &[u8]) -> Option<CriLine> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let time = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(CriLine {
        time,
        stream,
        partial,
        content: parts.next().unwrap_or_default().to_vec(),
    })
}

/// Reassembles a CRI log into the bytes each stream carried (lines end with `\n`;
/// the last line of a stream gets one too, as the logger cannot tell).
pub fn split_streams(log: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for line in log.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Some(rec) = parse_line(line) else {
            continue;
        };
        let out = match rec.stream {
            Stream::Stdout => &mut stdout,
            Stream::Stderr => &mut stderr,
        };
        out.extend_from_slice(&rec.content);
        if !rec.partial {
            out.push(b'\n');
        }
    }
    (stdout, stderr)
}

/// Copies `input` to `sink` as CRI records until EOF.
pub fn copy_stream(
    input: impl Read,
    stream: Stream,
    sink: &Mutex<impl Write>,
    now: impl Fn() -> DateTime<Utc>,
) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(MAX_LINE, input);
    let mut buf = Vec::with_capacity(MAX_LINE);
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        let full = buf.last() == Some(&b'\n');
        if full {
            buf.pop();
        }
        // A line cut at MAX_LINE continues; a last line without newline at EOF is full.
        let partial = !full && n == MAX_LINE;
        let record = format_line(now(), stream, partial, &buf);
        let mut out = sink.lock().unwrap_or_else(|e| e.into_inner());
        out.write_all(&record)?;
    }
}

/// Body of `orc container-logger PATH`: signals readiness to the shim, then copies both
/// pipes into PATH until the container closes them. SIGTERM from the shim is ignored so
/// that what is still in the pipes gets written (the shim SIGKILLs after its timeout).
pub fn run(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    // SAFETY: the containerd shim starts a binary:// logger with fds 3 and 4 open on the
    // read ends of the stdout/stderr pipes and fd 5 on the write end of its ready pipe;
    // nothing else in this process owns them.
    let (stdout, stderr, ready) = unsafe {
        (
            File::from(OwnedFd::from_raw_fd(STDOUT_FD)),
            File::from(OwnedFd::from_raw_fd(STDERR_FD)),
            OwnedFd::from_raw_fd(READY_FD),
        )
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Installing a handler replaces SIGTERM's default action (terminate) for the process.
    let _sigterm = runtime.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    })?;
    drop(ready);

    let sink = Arc::new(Mutex::new(file));
    let err_sink = sink.clone();
    let stderr_thread =
        std::thread::spawn(move || copy_stream(stderr, Stream::Stderr, &err_sink, Utc::now));
    let out = copy_stream(stdout, Stream::Stdout, &sink, Utc::now);
    let err = stderr_thread
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("stderr copier panicked")));
    out.and(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn records_use_the_cri_format() {
        assert_eq!(
            format_line(t0(), Stream::Stdout, false, b"hello world"),
            b"2024-01-01T00:00:00.000000000Z stdout F hello world\n"
        );
        assert_eq!(
            format_line(t0(), Stream::Stderr, true, b""),
            b"2024-01-01T00:00:00.000000000Z stderr P \n"
        );
    }

    #[test]
    fn parse_round_trips_format() {
        let line = format_line(t0(), Stream::Stderr, true, b"a b  c");
        let rec = parse_line(&line[..line.len() - 1]).unwrap();
        assert_eq!(
            rec,
            CriLine {
                time: t0(),
                stream: Stream::Stderr,
                partial: true,
                content: b"a b  c".to_vec()
            }
        );
        assert_eq!(parse_line(b"garbage"), None);
        assert_eq!(parse_line(b"2024-01-01T00:00:00Z stdin F x"), None);
    }

    #[test]
    fn copy_splits_lines_and_marks_long_ones_partial() {
        let mut input = b"one\ntwo\n".to_vec();
        input.extend(vec![b'x'; MAX_LINE + 10]);
        input.extend_from_slice(b"\nlast without newline");
        let sink = Mutex::new(Vec::new());
        copy_stream(&input[..], Stream::Stdout, &sink, t0).unwrap();
        let log = sink.into_inner().unwrap();
        let records: Vec<CriLine> = log
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| parse_line(l).unwrap())
            .collect();
        let shape: Vec<(bool, usize)> = records
            .iter()
            .map(|r| (r.partial, r.content.len()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (false, 3),
                (false, 3),
                (true, MAX_LINE),
                (false, 10),
                (false, 20)
            ]
        );
        let (stdout, stderr) = split_streams(&log);
        assert!(stderr.is_empty());
        let mut expected = input.clone();
        expected.push(b'\n');
        assert_eq!(stdout, expected);
    }
}
