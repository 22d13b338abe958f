//! The kubelet's end of `kubectl attach` (and of `kubectl run -i`): the output of a
//! container's main process from now on, read from its CRI log file (the shim owns the
//! process's stdio, see DESIGN 3b), sent on the stdout and stderr streams until the
//! container stops or restarts; the client's input goes to the container's stdin when
//! it has one (`stdin: true`; else it is dropped, as the container reads none), and its
//! terminal is resized with the client's. A `stdinOnce` container's stdin closes for
//! good when the first attach ends.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use super::exec::{write_client, CLOSE_WAIT, OUTBOUND_BUFFER};
use super::remotecommand as rc;
use super::server::{log_file, FOLLOW_POLL};
use crate::agent::runtime::logger::{self, Stream};
use crate::agent::runtime::{ContainerRuntime, ContainerState, ExecRequest};

/// Runs an attach session until the container stops or restarts (then the final
/// `Status` is success) or the client goes away.
pub async fn run<S>(
    ws: WebSocketStream<S>,
    runtime: Arc<dyn ContainerRuntime>,
    id: &str,
    logs: &Path,
    request: &ExecRequest,
    protocol: &'static str,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stdin = if request.stdin {
        match runtime.attach_stdin(id).await {
            Ok(stdin) => stdin,
            Err(e) => {
                debug!(error = %e, "the container's stdin cannot be opened; input is dropped");
                None
            }
        }
    } else {
        None
    };
    let once = stdin.as_ref().is_some_and(|s| s.once);
    let log_end = log_end(id, logs).await;
    let (sink, mut incoming) = ws.split();
    let (outbound, queue) = mpsc::channel::<Vec<u8>>(OUTBOUND_BUFFER);
    let writer = tokio::spawn(write_client(sink, queue));
    let first = if request.stdout || request.tty {
        rc::STDOUT
    } else if request.stderr {
        rc::STDERR
    } else {
        rc::ERROR
    };
    let _ = outbound.send(rc::frame(first, &[])).await;
    let client_gone = async {
        let mut stdin = stdin.map(|s| s.writer);
        while let Some(Ok(message)) = incoming.next().await {
            let data = match message {
                Message::Binary(data) => data,
                // As upstream's stream reader: a text frame's bytes count as a binary
                // one's (the Python client sends str stdin in text frames).
                Message::Text(text) => text.into(),
                Message::Close(_) => break,
                _ => continue,
            };
            match rc::parse(&data, protocol) {
                rc::Inbound::Stdin(bytes) => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(bytes).await.is_err() || w.flush().await.is_err() {
                            stdin = None;
                        }
                    }
                }
                rc::Inbound::Resize(size) if request.tty => {
                    runtime.resize_terminal(id, size).await;
                }
                rc::Inbound::CloseStdin => {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                    if once {
                        runtime.close_stdin(id).await;
                    }
                }
                rc::Inbound::Invalid(why) => debug!(%why, "attach client message ignored"),
                _ => {}
            }
        }
        // The client went: a stdinOnce container's input ends with it.
        drop(stdin);
        if once {
            runtime.close_stdin(id).await;
        }
    };
    tokio::pin!(client_gone);
    let followed = tokio::select! {
        followed = follow(&*runtime, id, logs, request, &outbound, log_end) => followed,
        _ = &mut client_gone => {
            debug!("attach client went away");
            writer.abort();
            return;
        }
    };
    let status = match followed {
        Ok(()) => rc::exit_status(&[], 0),
        Err(message) => rc::failure_status(&message),
    };
    let _ = outbound
        .send(rc::frame(rc::ERROR, status.to_string().as_bytes()))
        .await;
    drop(outbound);
    let _ = tokio::time::timeout(CLOSE_WAIT, writer).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, client_gone).await;
}

/// Sends the records appended to the container's current log file until the container
/// is no longer running (after one last read, as the logger may lag) or a newer log file
/// (a restart) appears.
async fn follow(
    runtime: &dyn ContainerRuntime,
    id: &str,
    logs: &Path,
    request: &ExecRequest,
    outbound: &mpsc::Sender<Vec<u8>>,
    log_end: Result<LogEnd, String>,
) -> Result<(), String> {
    let LogEnd {
        file,
        mut f,
        mut offset,
    } = log_end?;
    let mut ticker = tokio::time::interval(FOLLOW_POLL);
    // Polls without new output since the container stopped: the logger may still be
    // writing its last lines (on a busy machine well after the exit is seen), so the
    // session ends once the file has been quiet for QUIET_POLLS polls, or after
    // STOPPED_MAX polls in all.
    let mut stopped_polls: Option<(u32, u32)> = None;
    loop {
        ticker.tick().await;
        let running = matches!(
            runtime.status(id).await.map(|s| s.state),
            Ok(ContainerState::Running { .. })
        );
        let restarted = log_file(logs, false).as_deref() != Some(file.as_path());
        let mut more = Vec::new();
        let read_error = |e: std::io::Error| format!("read {}: {e}", file.display());
        f.seek(SeekFrom::Start(offset)).await.map_err(read_error)?;
        f.read_to_end(&mut more).await.map_err(read_error)?;
        let got = more.iter().rposition(|&b| b == b'\n');
        if let Some(end) = got {
            offset += end as u64 + 1;
            for frame in frames(&more[..=end], request) {
                if outbound.send(frame).await.is_err() {
                    return Ok(());
                }
            }
        }
        if restarted {
            return Ok(());
        }
        if !running {
            let (quiet, all) = stopped_polls.unwrap_or((0, 0));
            let quiet = if got.is_some() { 0 } else { quiet + 1 };
            if quiet >= QUIET_POLLS || all + 1 >= STOPPED_MAX {
                return Ok(());
            }
            stopped_polls = Some((quiet, all + 1));
        } else {
            stopped_polls = None;
        }
    }
}

/// The container's current log file, open at its end: where the attach's output
/// starts.
struct LogEnd {
    file: PathBuf,
    f: tokio::fs::File,
    offset: u64,
}

/// [`LogEnd`] of container `id`, taken before any of the client's input reaches the
/// container (its answer must not land before the point the attach reads from).
async fn log_end(id: &str, logs: &Path) -> Result<LogEnd, String> {
    let file: PathBuf =
        log_file(logs, false).ok_or_else(|| format!("container {id} has no log file"))?;
    let mut f = tokio::fs::File::open(&file)
        .await
        .map_err(|e| format!("open {}: {e}", file.display()))?;
    let offset = f
        .seek(SeekFrom::End(0))
        .await
        .map_err(|e| format!("read {}: {e}", file.display()))?;
    Ok(LogEnd { file, f, offset })
}

/// Polls without new output after which a stopped container's attach ends.
const QUIET_POLLS: u32 = 2;
/// Most polls an attach goes on for after its container stopped (5 s).
const STOPPED_MAX: u32 = 20;

/// CRI log records → messages on the streams the client asked for (everything on
/// stdout with a tty).
pub fn frames(records: &[u8], request: &ExecRequest) -> Vec<Vec<u8>> {
    records
        .split(|&b| b == b'\n')
        .filter_map(logger::parse_line)
        .filter_map(|rec| {
            let stream = match rec.stream {
                _ if request.tty => rc::STDOUT,
                Stream::Stdout => rc::STDOUT,
                Stream::Stderr => rc::STDERR,
            };
            let wanted = match stream {
                rc::STDOUT => request.stdout,
                _ => request.stderr,
            };
            wanted.then(|| {
                let mut frame = rc::frame(stream, &rec.content);
                if !rec.partial {
                    frame.push(b'\n');
                }
                frame
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn records_go_to_the_streams_asked_for() {
        let t = Utc::now();
        let mut data = logger::format_line(t, Stream::Stdout, false, b"out");
        data.extend(logger::format_line(t, Stream::Stderr, true, b"par"));
        data.extend(logger::format_line(t, Stream::Stderr, false, b"tial"));
        let both = ExecRequest {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        assert_eq!(
            frames(&data, &both),
            vec![
                b"\x01out\n".to_vec(),
                b"\x02par".to_vec(),
                b"\x02tial\n".to_vec()
            ]
        );
        let stdout_only = ExecRequest {
            stdout: true,
            ..Default::default()
        };
        assert_eq!(frames(&data, &stdout_only), vec![b"\x01out\n".to_vec()]);
        let tty = ExecRequest {
            stdout: true,
            tty: true,
            ..Default::default()
        };
        assert_eq!(frames(&data, &tty).len(), 3);
        assert!(frames(&data, &tty).iter().all(|f| f[0] == rc::STDOUT));
    }
}
