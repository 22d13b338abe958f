//! The container logger the shim runs (`orc container-logger PATH` through a `binary://`
//! log URI): it owns the container's stdout/stderr pipes, so an orc restart never breaks
//! them, and writes CRI log lines (`2024-01-01T00:00:00.000000000Z stdout F text`).
//! With a size limit it rotates the file itself, between records: `N.log` is renamed
//! to `N.log.<UTC timestamp>` and a fresh `N.log` opened, so no line is lost or cut and
//! the container never notices; the oldest rotated files beyond the limit are removed.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
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

/// Flag of the logger giving the size a log file is rotated at (bytes).
pub const MAX_SIZE_FLAG: &str = "--max-size";
/// Flag of the logger giving how many files (current and rotated) are kept.
pub const MAX_FILES_FLAG: &str = "--max-files";
/// Format of the timestamp suffix of rotated files: fixed width, so names sort in time
/// order (upstream's `20060102-150405`, with nanoseconds so fast rotations never clash).
const ROTATED_TIME_FORMAT: &str = "%Y%m%d-%H%M%S%.9f";

/// When a container's log file is rotated (upstream's `--container-log-max-size` and
/// `--container-log-max-files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// A file is rotated before a record would take it past this many bytes.
    pub max_size: u64,
    /// Files kept per container instance, the current one included (at least 2).
    pub max_files: usize,
}

/// Upstream's defaults: 10Mi, 5 files.
pub const DEFAULT_ROTATION: Rotation = Rotation {
    max_size: 10 * 1024 * 1024,
    max_files: 5,
};

/// The name `log` (`…/0.log`) is rotated to at `time`: `…/0.log.20240101-000000.000000000`.
pub fn rotated_name(log: &Path, time: DateTime<Utc>) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".");
    name.push(time.format(ROTATED_TIME_FORMAT).to_string());
    PathBuf::from(name)
}

/// The time in a rotated file's name.
pub fn rotated_time(rotated: &Path) -> Option<DateTime<Utc>> {
    let name = rotated.file_name()?.to_str()?;
    let (_, stamp) = name.split_once(".log.")?;
    let t = chrono::NaiveDateTime::parse_from_str(stamp, ROTATED_TIME_FORMAT).ok()?;
    Some(t.and_utc())
}

/// The rotated files of `log` (`0.log.<timestamp>`), oldest first.
pub fn rotated_files(log: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name()) else {
        return Vec::new();
    };
    let mut prefix = name.to_owned();
    prefix.push(".");
    let prefix = prefix.to_string_lossy().into_owned();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| {
                n.strip_prefix(&prefix).is_some_and(|t| {
                    !t.is_empty()
                        && t.bytes()
                            .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.')
                })
            })
        })
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// Every file of `log`, oldest first: its rotated files, then `log` itself if it exists.
pub fn log_files_in_order(log: &Path) -> Vec<PathBuf> {
    let mut files = rotated_files(log);
    if log.exists() {
        files.push(log.to_path_buf());
    }
    files
}

/// The CRI log file of one container instance, rotated by size when asked to.
pub struct RotatingFile<C: Fn() -> DateTime<Utc>> {
    path: PathBuf,
    file: File,
    /// Bytes in the current file.
    size: u64,
    rotation: Option<Rotation>,
    now: C,
}

impl<C: Fn() -> DateTime<Utc>> RotatingFile<C> {
    /// Opens (appending to) `path`.
    pub fn open(path: &Path, rotation: Option<Rotation>, now: C) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
            now,
        })
    }

    /// Appends one whole record, rotating first if it would take the file past the limit.
    pub fn write_record(&mut self, record: &[u8]) -> std::io::Result<()> {
        if let Some(rotation) = self.rotation {
            if self.size > 0 && self.size + record.len() as u64 > rotation.max_size {
                self.rotate(rotation)?;
            }
        }
        self.file.write_all(record)?;
        self.size += record.len() as u64;
        Ok(())
    }

    /// Renames the current file aside, opens a fresh one, and removes the oldest rotated
    /// files beyond `max_files - 1`. The rename comes first: a reader following the old
    /// file reads it to its end, then finds the new one under the same name.
    fn rotate(&mut self, rotation: Rotation) -> std::io::Result<()> {
        let mut time = (self.now)();
        // Names must sort in rotation order even if the clock went back (a Raspberry
        // Pi has no real-time clock until NTP answers): never before the newest one.
        if let Some(newest) = rotated_files(&self.path)
            .last()
            .and_then(|p| rotated_time(p))
        {
            if newest >= time {
                time = newest + chrono::Duration::nanoseconds(1);
            }
        }
        let mut target = rotated_name(&self.path, time);
        while target.exists() {
            time += chrono::Duration::nanoseconds(1);
            target = rotated_name(&self.path, time);
        }
        std::fs::rename(&self.path, &target)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        let rotated = rotated_files(&self.path);
        let keep = rotation.max_files.saturating_sub(1);
        for old in rotated.iter().take(rotated.len().saturating_sub(keep)) {
            match std::fs::remove_file(old) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl<C: Fn() -> DateTime<Utc>> Write for RotatingFile<C> {
    /// Each call is taken as one whole record (as [`copy_stream`] writes them).
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_record(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.write_record(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The arguments the shim starts the logger with, in the order clap expects. The shim
/// turns the log URI's query into `key value` pairs in Go map order (random), so the
/// `container-logger PATH` pair is moved first; any other command line is left alone.
pub fn reorder_shim_args(args: Vec<OsString>) -> Vec<OsString> {
    let Some((program, rest)) = args.split_first() else {
        return args;
    };
    if rest.first().is_some_and(|a| a == SUBCOMMAND) || rest.len() % 2 != 0 {
        return args;
    }
    let pairs: Vec<&[OsString]> = rest.chunks(2).collect();
    let Some(at) = pairs.iter().position(|p| p[0] == SUBCOMMAND) else {
        return args;
    };
    // The logger's other arguments are all flags; anything else is not the shim's call.
    let flags_only = pairs
        .iter()
        .enumerate()
        .all(|(i, p)| i == at || p[0].to_string_lossy().starts_with("--"));
    if !flags_only {
        return args;
    }
    let mut out = vec![program.clone()];
    out.extend(pairs[at].iter().cloned());
    for (i, pair) in pairs.iter().enumerate() {
        if i != at {
            out.extend(pair.iter().cloned());
        }
    }
    out
}

/// Flags of a logger orc starts itself for a container with stdin and no terminal (the
/// shim's binary logging has no stdin): the fifos the shim copies the output into.
pub const STDOUT_FIFO_FLAG: &str = "--stdout-fifo";
pub const STDERR_FIFO_FLAG: &str = "--stderr-fifo";

/// What `orc container-logger PATH [--max-size N] [--max-files N]` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerArgs {
    pub path: PathBuf,
    pub rotation: Option<Rotation>,
    /// Read the output from these fifos (stdout, stderr) instead of the shim's pipes.
    pub fifos: Option<(PathBuf, PathBuf)>,
}

impl LoggerArgs {
    /// The rotation `--max-size`/`--max-files` give: none without a size; at least two
    /// files (the current one and one rotated) with one.
    pub fn new(path: PathBuf, max_size: Option<u64>, max_files: usize) -> Self {
        LoggerArgs {
            path,
            rotation: max_size.map(|max_size| Rotation {
                max_size,
                max_files: max_files.max(2),
            }),
            fifos: None,
        }
    }
}

/// The logger's command line (`orc container-logger PATH [--max-size N] [--max-files N]`,
/// after [`reorder_shim_args`]) read without clap, so that the shim's wait for the
/// logger (it runs nothing before the logger says it is ready) costs no more than the
/// exec: no argument parser for the whole CLI, no config file, no tracing, no runtime.
/// `None` when `args` is not a logger invocation or not one of the shapes the shim
/// makes (e.g. `--help`, `--max-size=N`, a bad number): clap then reads it and answers
/// as for any other subcommand.
pub fn fast_args(args: &[OsString]) -> Option<LoggerArgs> {
    let mut rest = args.get(1..)?.iter();
    if rest.next()? != SUBCOMMAND {
        return None;
    }
    let path = PathBuf::from(rest.next()?);
    if path.as_os_str().is_empty() || path.to_string_lossy().starts_with('-') {
        return None;
    }
    let (mut max_size, mut max_files) = (None, None);
    while let Some(flag) = rest.next() {
        let value = rest.next()?.to_str()?;
        match flag.to_str()? {
            MAX_SIZE_FLAG if max_size.is_none() => max_size = Some(value.parse().ok()?),
            MAX_FILES_FLAG if max_files.is_none() => max_files = Some(value.parse().ok()?),
            _ => return None,
        }
    }
    Some(LoggerArgs::new(
        path,
        max_size,
        max_files.unwrap_or(DEFAULT_ROTATION.max_files),
    ))
}

/// Body of `orc container-logger PATH`: opens the log file, signals readiness to the
/// shim, then copies both pipes into PATH until the container closes them. SIGTERM from
/// the shim is ignored so that what is still in the pipes gets written (the shim SIGKILLs
/// after its timeout). Nothing before the ready signal but the file: the shim waits for
/// it before `runc create`, on every container start.
pub fn run(args: &LoggerArgs) -> std::io::Result<()> {
    let path = &args.path;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = RotatingFile::open(path, args.rotation, Utc::now)?;
    let (stdout, stderr) = match &args.fifos {
        // Started by orc: the output ends when the shim closes its ends of the fifos
        // (opening them waits for the shim to open its ends).
        Some((out, err)) => (File::open(out)?, File::open(err)?),
        None => {
            // SAFETY: the containerd shim starts a binary:// logger with fds 3 and 4
            // open on the read ends of the stdout/stderr pipes and fd 5 on the write end
            // of its ready pipe; nothing else in this process owns them.
            let (stdout, stderr, ready) = unsafe {
                (
                    File::from(OwnedFd::from_raw_fd(STDOUT_FD)),
                    File::from(OwnedFd::from_raw_fd(STDERR_FD)),
                    OwnedFd::from_raw_fd(READY_FD),
                )
            };
            ignore_sigterm()?;
            drop(ready);
            (stdout, stderr)
        }
    };

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

/// Sets SIGTERM's disposition to "ignore" for this process.
fn ignore_sigterm() -> std::io::Result<()> {
    // SAFETY: SIG_IGN installs no handler code; the logger has no other thread yet.
    let previous = unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    if previous == libc::SIG_ERR {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `orc container-logger` as a whole process: [`run`], its error on stderr.
pub fn main(args: &LoggerArgs) -> std::process::ExitCode {
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orc: container logger for {}: {e}", args.path.display());
            std::process::ExitCode::FAILURE
        }
    }
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

    /// A clock that moves one millisecond per reading.
    fn ticking() -> impl Fn() -> DateTime<Utc> {
        let n = std::sync::atomic::AtomicI64::new(0);
        move || {
            t0() + chrono::Duration::milliseconds(
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
            )
        }
    }

    fn record(i: usize) -> Vec<u8> {
        format_line(
            t0(),
            Stream::Stdout,
            false,
            format!("line {i:04}").as_bytes(),
        )
    }

    #[test]
    fn rotated_names_sort_in_time_order() {
        let log = Path::new("/p/logs/app/0.log");
        let a = rotated_name(log, t0());
        let b = rotated_name(log, t0() + chrono::Duration::nanoseconds(1));
        let c = rotated_name(log, t0() + chrono::Duration::seconds(10));
        assert_eq!(a, Path::new("/p/logs/app/0.log.20240101-000000.000000000"));
        assert_eq!(
            rotated_time(&b),
            Some(t0() + chrono::Duration::nanoseconds(1))
        );
        assert!(a < b && b < c, "{a:?} {b:?} {c:?}");
    }

    #[test]
    fn rotation_keeps_whole_records_within_size_and_file_limits() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        let rec_len = record(0).len() as u64;
        let rotation = Rotation {
            max_size: rec_len * 3,
            max_files: 3,
        };
        let mut f = RotatingFile::open(&log, Some(rotation), ticking()).unwrap();
        for i in 0..20 {
            f.write_all(&record(i)).unwrap();
        }
        let files = log_files_in_order(&log);
        assert_eq!(files.len(), 3, "{files:?}");
        assert_eq!(rotated_files(&log).len(), 2);
        let mut all = Vec::new();
        for file in &files {
            let data = std::fs::read(file).unwrap();
            assert!(data.len() as u64 <= rotation.max_size, "{file:?}");
            assert!(data.ends_with(b"\n"));
            all.extend(data);
        }
        // The newest records, in order, nothing cut: 18 and 19 in the current file,
        // 12 … 17 in the two rotated ones.
        let expected: Vec<u8> = (12..20).flat_map(record).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn nothing_is_lost_while_files_are_kept_and_a_reopened_file_keeps_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("1.log");
        let rotation = Rotation {
            max_size: 200,
            max_files: 100,
        };
        let mut f = RotatingFile::open(&log, Some(rotation), ticking()).unwrap();
        for i in 0..10 {
            f.write_all(&record(i)).unwrap();
        }
        drop(f);
        // A new logger (the task restarted) appends to the same file; its clock went
        // back, yet its rotated files still sort after the older ones.
        let mut f = RotatingFile::open(&log, Some(rotation), ticking()).unwrap();
        for i in 10..30 {
            f.write_all(&record(i)).unwrap();
        }
        let all: Vec<u8> = log_files_in_order(&log)
            .iter()
            .flat_map(|p| std::fs::read(p).unwrap())
            .collect();
        assert_eq!(all, (0..30).flat_map(record).collect::<Vec<u8>>());
        assert!(log_files_in_order(&log)
            .iter()
            .all(|p| std::fs::metadata(p).unwrap().len() <= 200));
        // Without rotation, one file grows.
        let plain = dir.path().join("2.log");
        let mut f = RotatingFile::open(&plain, None, ticking()).unwrap();
        for i in 0..30 {
            f.write_all(&record(i)).unwrap();
        }
        assert_eq!(log_files_in_order(&plain), vec![plain.clone()]);
    }

    #[test]
    fn only_this_instances_rotated_files_are_its_own() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "0.log",
            "0.log.20240101-000000.000000000",
            "0.log.tmp",
            "10.log.20240101-000000.000000000",
            "1.log",
        ] {
            std::fs::write(dir.path().join(n), "").unwrap();
        }
        assert_eq!(
            rotated_files(&dir.path().join("0.log")),
            vec![dir.path().join("0.log.20240101-000000.000000000")]
        );
        assert!(rotated_files(&dir.path().join("1.log")).is_empty());
    }

    #[test]
    fn shim_arguments_in_any_order_become_a_command_line() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let want = args(&[
            "orc",
            "container-logger",
            "/l/0.log",
            "--max-size",
            "10",
            "--max-files",
            "5",
        ]);
        assert_eq!(
            reorder_shim_args(args(&[
                "orc",
                "--max-size",
                "10",
                "container-logger",
                "/l/0.log",
                "--max-files",
                "5"
            ])),
            want
        );
        assert_eq!(reorder_shim_args(want.clone()), want);
        for other in [
            args(&["orc", "server", "--node-name", "container-logger"]),
            args(&[
                "orc",
                "server",
                "--node-name",
                "container-logger",
                "--disable-dns",
            ]),
        ] {
            assert_eq!(reorder_shim_args(other.clone()), other);
        }
    }

    #[test]
    fn unusual_logger_command_lines_are_left_to_clap() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        for argv in [
            args(&["orc"]),
            args(&["orc", "server"]),
            args(&["orc", "container-logger"]),
            args(&["orc", "container-logger", "--help"]),
            args(&["orc", "container-logger", "/l/0.log", "--help"]),
            args(&["orc", "container-logger", "/l/0.log", "--max-size=10"]),
            args(&["orc", "container-logger", "/l/0.log", "--max-size"]),
            args(&["orc", "container-logger", "/l/0.log", "--max-size", "ten"]),
            args(&[
                "orc",
                "container-logger",
                "/l/0.log",
                "--max-size",
                "1",
                "--max-size",
                "2",
            ]),
            args(&["orc", "container-logger", "/l/0.log", "--max-files", "-1"]),
            args(&[
                "orc",
                "container-logger",
                "/l/0.log",
                "--max-files",
                "2",
                "--max-files",
                "3",
            ]),
            args(&[
                "orc",
                "container-logger",
                "/l/0.log",
                "--log-level",
                "debug",
            ]),
            args(&["orc", "container-logger", "/l/0.log", "extra", "x"]),
            args(&[
                "orc",
                "--log-level",
                "debug",
                "container-logger",
                "/l/0.log",
            ]),
        ] {
            assert_eq!(fast_args(&argv), None, "{argv:?}");
        }
    }
}
