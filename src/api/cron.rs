//! CronJob schedules: the standard five-field cron syntax and descriptors as upstream's
//! parser (robfig/cron v3 `ParseStandard`) reads them, with its error messages, and the
//! next activation after a time in a time zone. Pure: no clock, no I/O.
//!
//! Fields are minute, hour, day of month, month (1-12 or JAN-DEC) and day of week (0-6
//! or SUN-SAT); each a list of `*`, `?`, values and ranges with optional `/step`. When
//! both day fields are restricted a day matching either runs (as cron and upstream).

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Why a schedule does not parse (the message is upstream's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(String);

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Five cron fields.
    Spec(Spec),
    /// `@every <duration>`: a fixed delay after the previous run (whole seconds).
    Every(i64),
}

/// The five fields as bit sets (bit n = value n allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// The day fields were written as `*` or `?` (then only the other one restricts).
    dom_star: bool,
    dow_star: bool,
    /// A `CRON_TZ=`/`TZ=` prefix (refused by CronJob validation, kept for the parser).
    pub time_zone: Option<String>,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

/// How far ahead `next_after` looks before giving up (a schedule such as `0 0 30 2 *`
/// never fires).
const SEARCH_YEARS: i32 = 5;

fn err(msg: impl Into<String>) -> CronError {
    CronError(msg.into())
}

/// Parses a schedule as upstream's `cron.ParseStandard`.
pub fn parse(spec: &str) -> Result<Schedule, CronError> {
    let mut spec = spec.trim();
    if spec.is_empty() {
        return Err(err("empty spec string"));
    }
    let mut time_zone = None;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let (prefix, rest) = spec.split_once(' ').unwrap_or((spec, ""));
        let name = prefix.split_once('=').map(|(_, n)| n).unwrap_or("");
        if name.parse::<Tz>().is_err() {
            return Err(err(format!(
                "provided bad location {name}: unknown time zone {name}"
            )));
        }
        time_zone = Some(name.to_string());
        spec = rest.trim();
    }
    if let Some(descriptor) = spec.strip_prefix('@') {
        return parse_descriptor(descriptor, spec, time_zone);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        )));
    }
    let (dom, dom_star) = parse_field(fields[2], &DOM)?;
    let (dow, dow_star) = parse_field(fields[4], &DOW)?;
    Ok(Schedule::Spec(Spec {
        minute: parse_field(fields[0], &MINUTES)?.0,
        hour: parse_field(fields[1], &HOURS)?.0,
        dom,
        month: parse_field(fields[3], &MONTHS)?.0,
        dow,
        dom_star,
        dow_star,
        time_zone,
    }))
}

fn parse_descriptor(
    descriptor: &str,
    spec: &str,
    time_zone: Option<String>,
) -> Result<Schedule, CronError> {
    let fields = |f: &str| match parse(f)? {
        Schedule::Spec(s) => Ok(Schedule::Spec(Spec {
            time_zone: time_zone.clone(),
            ..s
        })),
        every => Ok(every),
    };
    match descriptor {
        "yearly" | "annually" => fields("0 0 1 1 *"),
        "monthly" => fields("0 0 1 * *"),
        "weekly" => fields("0 0 * * 0"),
        "daily" | "midnight" => fields("0 0 * * *"),
        "hourly" => fields("0 * * * *"),
        d if d.starts_with("every ") => {
            let text = d["every ".len()..].trim();
            let seconds = parse_go_duration(text).ok_or_else(|| {
                err(format!(
                    "failed to parse duration {spec}: time: invalid duration {}",
                    crate::api::validation::go_quote(text)
                ))
            })?;
            Ok(Schedule::Every(seconds.max(1)))
        }
        _ => Err(err(format!("unrecognized descriptor: {spec}"))),
    }
}

/// A Go duration (`1h30m`, `90s`, `2h`) in whole seconds; fractions of a second drop.
fn parse_go_duration(text: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Some(total as i64)
}

/// One field: a comma-separated list of ranges. Returns the bits and whether the field
/// starts with `*` or `?`.
fn parse_field(field: &str, bounds: &Bounds) -> Result<(u64, bool), CronError> {
    let mut bits = 0;
    for range in field.split(',') {
        bits |= parse_range(range, bounds)?;
    }
    Ok((bits, field.starts_with('*') || field.starts_with('?')))
}

fn parse_range(expr: &str, b: &Bounds) -> Result<u64, CronError> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single_digit = low_and_high.len() == 1;
    let (start, mut end);
    if low_and_high[0] == "*" || low_and_high[0] == "?" {
        start = b.min;
        end = b.max;
    } else {
        start = parse_int_or_name(low_and_high[0], b.names)?;
        end = match low_and_high.len() {
            1 => start,
            2 => parse_int_or_name(low_and_high[1], b.names)?,
            _ => return Err(err(format!("too many hyphens: {expr}"))),
        };
    }
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = must_parse_int(range_and_step[1])?;
            // "N/step" means N-max/step.
            if single_digit {
                end = b.max;
            }
            step
        }
        _ => return Err(err(format!("too many slashes: {expr}"))),
    };
    if start < b.min {
        return Err(err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        )));
    }
    if end > b.max {
        return Err(err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        )));
    }
    if start > end {
        return Err(err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        )));
    }
    if step == 0 {
        return Err(err(format!(
            "step of range should be a positive number: {expr}"
        )));
    }
    let mut bits = 0u64;
    let mut v = start;
    while v <= end {
        bits |= 1 << v;
        v += step;
    }
    Ok(bits)
}

fn parse_int_or_name(expr: &str, names: &[(&str, u32)]) -> Result<u32, CronError> {
    let lower = expr.to_ascii_lowercase();
    if let Some((_, v)) = names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    must_parse_int(expr)
}

fn must_parse_int(expr: &str) -> Result<u32, CronError> {
    let n: i64 = expr.parse().map_err(|_| {
        err(format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {}: invalid syntax",
            crate::api::validation::go_quote(expr)
        ))
    })?;
    if n < 0 {
        return Err(err(format!("negative number ({n}) not allowed: {expr}")));
    }
    u32::try_from(n).map_err(|_| err(format!("end of range ({n}) above maximum: {expr}")))
}

impl Spec {
    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = self.dom & (1 << date.day()) != 0;
        let dow = self.dow & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first matching minute strictly after `after` (local wall-clock time).
    fn next_local(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut t = after.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let limit = t.year() + SEARCH_YEARS;
        while t.year() <= limit {
            if self.month & (1 << t.month()) == 0 {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t.date().succ_opt()?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if self.hour & (1 << t.hour()) == 0 {
                t = t.with_minute(0)? + Duration::hours(1);
                continue;
            }
            if self.minute & (1 << t.minute()) == 0 {
                t += Duration::minutes(1);
                continue;
            }
            return Some(t);
        }
        None
    }
}

impl Schedule {
    /// The first activation strictly after `after`, read in `tz` (upstream's
    /// `Schedule.Next`); `None` when the schedule never fires in the next years.
    pub fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(seconds) => {
                let whole = after.with_nanosecond(0)?;
                Some(whole + Duration::seconds(*seconds))
            }
            Schedule::Spec(spec) => {
                let tz = spec
                    .time_zone
                    .as_deref()
                    .and_then(|n| n.parse::<Tz>().ok())
                    .unwrap_or(tz);
                let mut local = after.with_timezone(&tz).naive_local();
                // A wall-clock minute skipped by a DST change is not a time: look on.
                for _ in 0..4 {
                    let next = spec.next_local(local)?;
                    match tz.from_local_datetime(&next).earliest() {
                        Some(t) if t.with_timezone(&Utc) > after => {
                            return Some(t.with_timezone(&Utc))
                        }
                        _ => local = next,
                    }
                }
                None
            }
        }
    }
}

/// The time zone a CronJob names (`spec.timeZone`), UTC when it names none.
pub fn time_zone(name: Option<&str>) -> Option<Tz> {
    match name {
        None => Some(Tz::UTC),
        Some(n) => n.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(spec: &str, after: &str) -> String {
        parse(spec)
            .unwrap()
            .next_after(at(after), Tz::UTC)
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn every_minute_fires_at_the_next_minute_boundary() {
        assert_eq!(
            next("* * * * *", "2024-05-01T10:00:00Z"),
            "2024-05-01T10:01:00+00:00"
        );
        assert_eq!(
            next("* * * * *", "2024-05-01T10:00:59Z"),
            "2024-05-01T10:01:00+00:00"
        );
    }

    #[test]
    fn steps_ranges_lists_and_names() {
        assert_eq!(
            next("*/15 * * * *", "2024-05-01T10:16:00Z"),
            "2024-05-01T10:30:00+00:00"
        );
        assert_eq!(
            next("5/20 * * * *", "2024-05-01T10:26:00Z"),
            "2024-05-01T10:45:00+00:00"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2024-05-01T10:00:00Z"),
            "2024-05-01T13:00:00+00:00"
        );
        assert_eq!(
            next("0,30 8 * * *", "2024-05-01T08:10:00Z"),
            "2024-05-01T08:30:00+00:00"
        );
        // 2024-05-01 is a Wednesday.
        assert_eq!(
            next("0 0 * * MON", "2024-05-01T10:00:00Z"),
            "2024-05-06T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 1 jan,Jul *", "2024-05-01T10:00:00Z"),
            "2024-07-01T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 29 2 *", "2024-03-01T00:00:00Z"),
            "2028-02-29T00:00:00+00:00"
        );
    }

    #[test]
    fn both_day_fields_restricted_match_either() {
        // The 15th (a Wednesday in May 2024) or any Friday.
        assert_eq!(
            next("0 0 15 * FRI", "2024-05-01T10:00:00Z"),
            "2024-05-03T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 15 * FRI", "2024-05-11T00:00:00Z"),
            "2024-05-15T00:00:00+00:00"
        );
        // A star day-of-week leaves only the day of month.
        assert_eq!(
            next("0 0 15 * *", "2024-05-01T00:00:00Z"),
            "2024-05-15T00:00:00+00:00"
        );
    }

    #[test]
    fn descriptors_are_the_standard_schedules() {
        let from = "2024-05-01T10:30:00Z";
        assert_eq!(next("@hourly", from), "2024-05-01T11:00:00+00:00");
        assert_eq!(next("@daily", from), "2024-05-02T00:00:00+00:00");
        assert_eq!(next("@midnight", from), "2024-05-02T00:00:00+00:00");
        assert_eq!(next("@weekly", from), "2024-05-05T00:00:00+00:00");
        assert_eq!(next("@monthly", from), "2024-06-01T00:00:00+00:00");
        assert_eq!(next("@yearly", from), "2025-01-01T00:00:00+00:00");
        assert_eq!(next("@annually", from), "2025-01-01T00:00:00+00:00");
        assert_eq!(next("@every 1h30m", from), "2024-05-01T12:00:00+00:00");
    }

    #[test]
    fn bad_schedules_say_what_is_wrong_as_upstream() {
        let e = |s: &str| parse(s).unwrap_err().to_string();
        assert_eq!(e(""), "empty spec string");
        assert_eq!(e("foo"), "expected exactly 5 fields, found 1: [foo]");
        assert_eq!(
            e("* * * *"),
            "expected exactly 5 fields, found 4: [* * * *]"
        );
        assert_eq!(e("60 * * * *"), "end of range (60) above maximum (59): 60");
        assert_eq!(
            e("* * 0 * *"),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(e("* * * * 7"), "end of range (7) above maximum (6): 7");
        assert_eq!(
            e("5-1 * * * *"),
            "beginning of range (5) beyond end of range (1): 5-1"
        );
        assert_eq!(
            e("*/0 * * * *"),
            "step of range should be a positive number: */0"
        );
        assert_eq!(e("1-2-3 * * * *"), "too many hyphens: 1-2-3");
        assert_eq!(e("@fortnightly"), "unrecognized descriptor: @fortnightly");
        assert_eq!(
            e("x * * * *"),
            "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert!(parse("CRON_TZ=Nowhere/Land * * * * *").is_err());
        assert!(parse("TZ=Europe/Paris * * * * *").is_ok());
    }

    #[test]
    fn time_zones_move_the_wall_clock() {
        let s = parse("0 9 * * *").unwrap();
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 09:00 in Berlin in summer is 07:00 UTC.
        assert_eq!(
            s.next_after(at("2024-07-01T00:00:00Z"), tz)
                .unwrap()
                .to_rfc3339(),
            "2024-07-01T07:00:00+00:00"
        );
        // 02:30 does not exist in Berlin on 2024-03-31 (clocks jump 02:00 → 03:00).
        let s = parse("30 2 * * *").unwrap();
        assert_eq!(
            s.next_after(at("2024-03-30T12:00:00Z"), tz)
                .unwrap()
                .to_rfc3339(),
            "2024-04-01T00:30:00+00:00"
        );
        assert!(time_zone(Some("Mars/Olympus")).is_none());
        assert_eq!(time_zone(None), Some(Tz::UTC));
    }

    #[test]
    fn an_impossible_date_never_fires() {
        let s = parse("0 0 30 2 *").unwrap();
        assert!(s.next_after(at("2024-01-01T00:00:00Z"), Tz::UTC).is_none());
    }
}
