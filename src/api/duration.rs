//! Durations as Go writes them (`metav1.Duration`, kubelet flags): `500ms`, `40s`, `5m`,
//! `1m30s`, `1h`.

use std::time::Duration;

/// Parses a Go-style duration; `example` goes into the error message.
pub fn parse_go_duration(s: &str, example: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {s:?}: use e.g. {example}");
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .filter(|&i| i > 0)
            .ok_or_else(invalid)?;
        let n: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        let unit_end = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |i| digits + i);
        total += match &rest[digits..unit_end] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            _ => return Err(invalid()),
        };
        rest = &rest[unit_end..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_add_their_parts() {
        assert_eq!(parse_go_duration("1m30s", ""), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_go_duration("500ms", ""),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(parse_go_duration("2h", ""), Ok(Duration::from_secs(7200)));
        for bad in ["", "5", "m", "5x", "1.5s"] {
            assert!(parse_go_duration(bad, "30s").is_err(), "{bad}");
        }
    }
}
