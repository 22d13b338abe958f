//! The Kubernetes remote command protocol over WebSocket (`v5.channel.k8s.io`,
//! `v4.channel.k8s.io`), as `kubectl exec` speaks it: every binary message starts with
//! the id of its stream; the error stream carries one final `Status`. No I/O here.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::agent::runtime::{ExecRequest, TerminalSize};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// The final `Status` of the command.
pub const ERROR: u8 = 3;
/// Terminal size changes, JSON `{"Width":W,"Height":H}`.
pub const RESIZE: u8 = 4;
/// v5: `[CLOSE, stream]` half-closes a stream (the client's stdin at its EOF).
pub const CLOSE: u8 = 255;

pub const PROTOCOL_V5: &str = "v5.channel.k8s.io";
pub const PROTOCOL_V4: &str = "v4.channel.k8s.io";
/// The protocols orc speaks, best first.
const SUPPORTED: [&str; 2] = [PROTOCOL_V5, PROTOCOL_V4];

/// The protocol to speak: the first one in the client's `Sec-WebSocket-Protocol` offer
/// that orc supports.
pub fn negotiate<'a>(offers: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    offers
        .into_iter()
        .flat_map(|header| header.split(','))
        .map(str::trim)
        .find_map(|offer| SUPPORTED.iter().find(|p| **p == offer).copied())
}

/// What a message from the client means.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    Stdin(&'a [u8]),
    Resize(TerminalSize),
    /// The client's stdin reached EOF (v5 only).
    CloseStdin,
    /// A message orc has no use for (a close of another stream, an empty message).
    Ignored,
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResizeMessage {
    width: u16,
    height: u16,
}

/// Decodes one binary message of `protocol`.
pub fn parse<'a>(message: &'a [u8], protocol: &str) -> Inbound<'a> {
    let Some((&stream, data)) = message.split_first() else {
        return Inbound::Ignored;
    };
    match stream {
        STDIN => Inbound::Stdin(data),
        RESIZE => match serde_json::from_slice::<ResizeMessage>(data) {
            Ok(r) => Inbound::Resize(TerminalSize {
                width: r.width,
                height: r.height,
            }),
            Err(e) => Inbound::Invalid(format!("invalid resize message: {e}")),
        },
        CLOSE if protocol == PROTOCOL_V5 => match data {
            [STDIN] => Inbound::CloseStdin,
            _ => Inbound::Ignored,
        },
        other => Inbound::Invalid(format!("unexpected message on stream {other}")),
    }
}

/// A message carrying `data` on `stream`.
pub fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(stream);
    out.extend_from_slice(data);
    out
}

/// The final `Status` of a command that exited with `code` (kubectl turns a
/// `NonZeroExitCode` into its own exit code).
pub fn exit_status(cmd: &[String], code: u32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            cmd.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The final `Status` of a command that could not run or be waited for: upstream's
/// `NewInternalError`, whose one cause carries the error (clients such as the Python
/// one read `details.causes[0].message` of every failure).
pub fn failure_status(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

/// An exec's command and streams from its query (`command` repeated, `stdin`, `stdout`,
/// `stderr`, `tty` as `true`/`1`); an error names what is wrong.
pub fn exec_request(query: &str) -> Result<ExecRequest, String> {
    let request = streams_request(query)?;
    if request.cmd.is_empty() {
        return Err("you must specify at least one command for the container".into());
    }
    Ok(request)
}

/// An attach's streams from its query (as an exec's, without a command).
pub fn attach_request(query: &str) -> Result<ExecRequest, String> {
    let mut request = streams_request(query)?;
    request.cmd.clear();
    Ok(request)
}

fn streams_request(query: &str) -> Result<ExecRequest, String> {
    let mut request = ExecRequest::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let on = value == "true" || value == "1";
        match key.as_ref() {
            "command" => request.cmd.push(value.into_owned()),
            "stdin" => request.stdin = on,
            "stdout" => request.stdout = on,
            "stderr" => request.stderr = on,
            "tty" => request.tty = on,
            _ => {}
        }
    }
    if !(request.stdin || request.stdout || request.stderr) {
        return Err("you must specify at least one of stdin, stdout, stderr".into());
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_offered_supported_protocol_wins() {
        let kubectl = "v5.channel.k8s.io, v4.channel.k8s.io, v3.channel.k8s.io, v2.channel.k8s.io, channel.k8s.io";
        assert_eq!(negotiate([kubectl]), Some(PROTOCOL_V5));
        assert_eq!(
            negotiate(["base64.channel.k8s.io", "v4.channel.k8s.io"]),
            Some(PROTOCOL_V4)
        );
        assert_eq!(negotiate(["v3.channel.k8s.io"]), None);
        assert_eq!(negotiate([]), None);
    }

    #[test]
    fn client_messages_decode_by_stream() {
        assert_eq!(parse(b"\x00hi", PROTOCOL_V5), Inbound::Stdin(b"hi"));
        assert_eq!(
            parse(b"\x04{\"Width\":80,\"Height\":24}", PROTOCOL_V4),
            Inbound::Resize(TerminalSize {
                width: 80,
                height: 24
            })
        );
        assert!(matches!(
            parse(b"\x04nope", PROTOCOL_V5),
            Inbound::Invalid(_)
        ));
        assert_eq!(parse(&[CLOSE, STDIN], PROTOCOL_V5), Inbound::CloseStdin);
        assert!(matches!(
            parse(&[CLOSE, STDIN], PROTOCOL_V4),
            Inbound::Invalid(_)
        ));
        assert_eq!(parse(&[CLOSE, RESIZE], PROTOCOL_V5), Inbound::Ignored);
        assert_eq!(parse(b"", PROTOCOL_V5), Inbound::Ignored);
        assert_eq!(frame(STDERR, b"err"), b"\x02err");
    }

    #[test]
    fn exit_codes_become_kubectl_statuses() {
        assert_eq!(
            exit_status(&[], 0),
            json!({"metadata": {}, "status": "Success"})
        );
        let cmd = vec!["sh".to_string(), "-c".to_string(), "exit 7".to_string()];
        let s = exit_status(&cmd, 7);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(
            s["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "7"})
        );
        assert!(s["message"]
            .as_str()
            .unwrap()
            .ends_with("[sh -c exit 7], exit code 7"));
        assert_eq!(failure_status("boom")["status"], "Failure");
        assert_eq!(
            failure_status("boom")["details"]["causes"][0]["message"],
            "boom"
        );
    }

    #[test]
    fn exec_queries_name_command_and_streams() {
        let r = exec_request(
            "command=sh&command=-c&command=echo%20hi&stdin=true&stdout=1&tty=true&container=c",
        )
        .unwrap();
        assert_eq!(r.cmd, ["sh", "-c", "echo hi"]);
        assert!(r.stdin && r.stdout && !r.stderr && r.tty);
        assert!(exec_request("stdout=true").unwrap_err().contains("command"));
        assert!(exec_request("command=ls")
            .unwrap_err()
            .contains("stdin, stdout"));
    }
}
