//! Parsing `--duration`, `--wait-timeout` and `--from`, and showing how much time is left.

use std::time::Duration;

use jiff::{SignedDuration, Span, SpanRelativeTo, Timestamp};

/// Parses a duration such as `1h`, `90m`, `1h30m`, `2d`, `1w`, `2 hours`, `45s` or ISO 8601
/// `PT1H` (jiff's "friendly" and ISO 8601 formats). Days are 24 hours and weeks 7 days; months
/// and years are refused (their length depends on the date). The result must be positive.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let text = value.trim();
    if text.is_empty() {
        return Err("the duration is empty; write for example 1h, 30m or 2d".to_owned());
    }
    if text
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'-' || b == b'+')
    {
        return Err(format!(
            "{text:?} has no unit; write for example {n}s, {n}m or {n}h",
            n = text.trim_start_matches(['+', '-'])
        ));
    }
    let span: Span = text.parse().map_err(|e| {
        format!("{text:?} is not a duration ({e}); write for example 1h, 30m, 1h30m or 2d")
    })?;
    let signed: SignedDuration = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|_| {
            format!(
                "{text:?}: months and years have no fixed length; write the duration in weeks, days, hours, minutes or seconds"
            )
        })?;
    if signed.is_negative() || signed.is_zero() {
        return Err(format!("{text:?}: the duration must be greater than zero"));
    }
    Duration::try_from(signed).map_err(|e| format!("{text:?}: {e}"))
}

/// Parses `--duration` into the whole seconds of `spec.durationSec`.
pub fn parse_duration_secs(value: &str) -> Result<i64, String> {
    let duration = parse_duration(value)?;
    if duration.subsec_nanos() != 0 {
        return Err(format!(
            "{:?}: a token lasts a whole number of seconds",
            value.trim()
        ));
    }
    i64::try_from(duration.as_secs()).map_err(|_| format!("{:?} is too long", value.trim()))
}

/// Parses `--from`: an RFC 3339 date-time with a time zone (`2026-05-01T09:00:00Z`,
/// `2026-05-01T11:00:00+02:00`), `now`, or `+DURATION` (that long from `now`). Returns the value
/// to write into `spec.from` (`None` for now) and the start time.
pub fn parse_from(value: &str, now: Timestamp) -> Result<(Option<String>, Timestamp), String> {
    let text = value.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("now") {
        return Ok((None, now));
    }
    if let Some(offset) = text.strip_prefix('+') {
        let offset = parse_duration(offset).map_err(|e| format!("--from {text}: {e}"))?;
        let offset = SignedDuration::try_from(offset).map_err(|e| format!("--from {text}: {e}"))?;
        let start = now
            .checked_add(offset)
            .map_err(|e| format!("--from {text}: {e}"))?;
        // Whole seconds, UTC, as the operator writes status.data.from.
        let start = Timestamp::from_second(start.as_second()).map_err(|e| e.to_string())?;
        return Ok((Some(format_rfc3339(start)), start));
    }
    let start = virt_gateway_api::parse_rfc3339(text).map_err(|e| {
        format!("--from {text:?}: {e}; write an RFC 3339 time such as 2026-05-01T09:00:00Z, now, or +30m")
    })?;
    Ok((Some(text.to_owned()), start))
}

/// RFC 3339 in UTC with whole seconds, e.g. `2026-05-01T09:00:00Z`.
pub fn format_rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A short human duration with at most two units: `45s`, `59m30s`, `1h59m`, `3d4h`.
pub fn human(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m, sec) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    let parts: [(i64, &str); 4] = [(d, "d"), (h, "h"), (m, "m"), (sec, "s")];
    let Some(first) = parts.iter().position(|(n, _)| *n != 0) else {
        return "0s".to_owned();
    };
    let mut out = format!("{}{}", parts[first].0, parts[first].1);
    if let Some((n, unit)) = parts.get(first + 1)
        && *n != 0
    {
        out.push_str(&format!("{n}{unit}"));
    }
    out
}

/// [`human`] for a [`Duration`]; below one second in milliseconds.
pub fn human_std(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        human(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// What the TIME-LEFT column of `kubectl gate list` shows for a token with phase `phase`, valid
/// from `nbf` until `exp` (Unix seconds; 0 when not issued yet), at `now`.
pub fn time_left(phase: &str, nbf: i64, exp: i64, now: i64) -> String {
    match phase {
        "Revoked" => "revoked".to_owned(),
        "Completed" => "expired".to_owned(),
        "Error" => "-".to_owned(),
        _ if exp == 0 => "-".to_owned(),
        _ if exp <= now => "expired".to_owned(),
        _ if nbf > now => format!("{} (starts in {})", human(exp - nbf), human(nbf - now)),
        _ => human(exp - now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_common_forms() {
        let secs = |s| parse_duration_secs(s).unwrap();
        assert_eq!(secs("1h"), 3600);
        assert_eq!(secs("90m"), 5400);
        assert_eq!(secs("1h30m"), 5400);
        assert_eq!(secs("1h 30m"), 5400);
        assert_eq!(secs("45s"), 45);
        assert_eq!(secs("2d"), 172_800);
        assert_eq!(secs("1w"), 604_800);
        assert_eq!(secs("2 hours"), 7200);
        assert_eq!(secs("PT1H"), 3600);
        assert_eq!(secs(" 10m "), 600);
        assert_eq!(secs("1h0m0s"), 3600, "Go's time.Duration spelling");
    }

    #[test]
    fn durations_refused_with_a_reason() {
        for (input, says) in [
            ("0s", "greater than zero"),
            ("0", "no unit"),
            ("3600", "no unit; write for example 3600s"),
            ("-1h", "greater than zero"),
            ("", "empty"),
            ("soon", "not a duration"),
            ("1mo", "months and years"),
            ("1y", "months and years"),
            ("1.5s", "whole number of seconds"),
        ] {
            let err = parse_duration_secs(input).expect_err(input);
            assert!(err.contains(says), "{input:?}: {err}");
        }
        assert_eq!(
            parse_duration("500ms").unwrap(),
            Duration::from_millis(500),
            "a wait timeout may be sub-second"
        );
    }

    #[test]
    fn from_forms() {
        let now: Timestamp = "2026-05-01T09:00:00.750Z".parse().unwrap();
        assert_eq!(parse_from("now", now).unwrap(), (None, now));
        assert_eq!(parse_from("", now).unwrap(), (None, now));
        let (written, start) = parse_from("+30m", now).unwrap();
        assert_eq!(written.as_deref(), Some("2026-05-01T09:30:00Z"));
        assert_eq!(start.as_second(), now.as_second() + 1800);
        let (written, start) = parse_from("2026-05-02T10:00:00+02:00", now).unwrap();
        assert_eq!(written.as_deref(), Some("2026-05-02T10:00:00+02:00"));
        assert_eq!(format_rfc3339(start), "2026-05-02T08:00:00Z");
        for bad in [
            "tomorrow",
            "2026-05-02 10:00:00Z",
            "2026-05-02T10:00:00",
            "+0s",
            "+x",
        ] {
            assert!(parse_from(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(0), "0s");
        assert_eq!(human(-5), "0s");
        assert_eq!(human(45), "45s");
        assert_eq!(human(60), "1m");
        assert_eq!(human(3570), "59m30s");
        assert_eq!(human(3600), "1h");
        assert_eq!(human(7140), "1h59m");
        assert_eq!(human(7141), "1h59m");
        assert_eq!(human(3600 * 24 * 3 + 3600 * 4 + 12), "3d4h");
        assert_eq!(human(3600 * 24 + 59), "1d");
        assert_eq!(human_std(Duration::from_millis(250)), "250ms");
        assert_eq!(human_std(Duration::from_secs(10)), "10s");
    }

    #[test]
    fn time_left_by_phase() {
        assert_eq!(time_left("Ready", 100, 3700, 100), "1h");
        assert_eq!(time_left("Ready", 100, 3700, 3700), "expired");
        assert_eq!(time_left("Pending", 700, 4300, 100), "1h (starts in 10m)");
        assert_eq!(time_left("Completed", 100, 200, 150), "expired");
        assert_eq!(time_left("Revoked", 100, 3700, 150), "revoked");
        assert_eq!(time_left("Error", 0, 0, 150), "-");
        assert_eq!(time_left("", 0, 0, 150), "-");
    }
}
