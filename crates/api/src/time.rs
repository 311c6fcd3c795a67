//! Token validity: parsing `spec.from` (RFC 3339) and computing `nbf`, `exp` and `until`.

use std::time::Duration;

use jiff::Timestamp;

use crate::error::{SpecError, TimeError};
use crate::gatetoken::GateTokenPhase;

/// Parses an RFC 3339 `date-time` (RFC 3339 §5.6) into a timestamp.
///
/// Accepted: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, with `T` and `Z` in either case, any
/// number of fraction digits (digits beyond nanoseconds are truncated) and any offset up to
/// ±23:59. Rejected: a missing time zone, a space instead of `T`, missing seconds, leap second
/// `60` (as Go's `time.Parse`, which the upstream operator used, and the API server's date-time
/// check do), impossible dates such as February 30, and anything else outside the grammar.
pub fn parse_rfc3339(value: &str) -> Result<Timestamp, TimeError> {
    let err = |reason: &str| TimeError {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let b = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    let two = |at: usize| u32::from(b[at] - b'0') * 10 + u32::from(b[at + 1] - b'0');

    if !(digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10))
    {
        return Err(err("the date must be written YYYY-MM-DD"));
    }
    match b.get(10) {
        Some(b'T' | b't') => {}
        Some(b' ') => return Err(err("date and time must be separated by 'T', not a space")),
        _ => return Err(err("the date must be followed by 'T' and a time")),
    }
    if !(digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19))
    {
        return Err(err("the time must be written HH:MM:SS"));
    }
    if two(11) > 23 || two(14) > 59 {
        return Err(err("hour or minute out of range"));
    }
    if two(17) > 59 {
        return Err(err("second out of range (leap seconds are not supported)"));
    }
    let mut pos = 19;
    let mut fraction = "";
    if b.get(pos) == Some(&b'.') {
        let start = pos + 1;
        let len = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return Err(err(
                "a '.' must be followed by the digits of a fraction of a second",
            ));
        }
        fraction = &value[start..start + len.min(9)];
        pos = start + len;
    }
    let offset = match b.get(pos) {
        Some(b'Z' | b'z') if pos + 1 == b.len() => "Z".to_owned(),
        Some(b'+' | b'-')
            if b.len() == pos + 6
                && digits(pos + 1..pos + 3)
                && b[pos + 3] == b':'
                && digits(pos + 4..pos + 6) =>
        {
            if two(pos + 1) > 23 || two(pos + 4) > 59 {
                return Err(err("time zone offset out of range"));
            }
            value[pos..].to_owned()
        }
        None => {
            return Err(err(
                "the time zone is missing: end with Z (UTC) or an offset such as +02:00",
            ));
        }
        _ => {
            return Err(err(
                "the time must end with Z (UTC) or an offset such as +02:00",
            ));
        }
    };
    let normalised = if fraction.is_empty() {
        format!("{}T{}{offset}", &value[..10], &value[11..19])
    } else {
        format!("{}T{}.{fraction}{offset}", &value[..10], &value[11..19])
    };
    normalised
        .parse::<Timestamp>()
        .map_err(|e| err(&e.to_string()))
}

/// Formats a timestamp as RFC 3339 in UTC with whole seconds, e.g. `2021-04-22T10:00:00Z`,
/// the form the upstream operator wrote into `status.data`. Sub-second digits are dropped
/// (rounding toward the past).
pub fn format_rfc3339_seconds(ts: Timestamp) -> String {
    // from_second cannot fail for the floor of a valid timestamp.
    Timestamp::from_second(floor_second(ts))
        .unwrap_or(ts)
        .to_string()
}

/// Whole Unix seconds of `ts`, rounded toward the past (as Go's `time.Time.Unix`).
pub fn floor_second(ts: Timestamp) -> i64 {
    let s = ts.as_second();
    if ts.subsec_nanosecond() < 0 { s - 1 } else { s }
}

/// When a token is valid: the values the operator writes into `status.data` and signs as the
/// JWT's `nbf` and `exp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenValidity {
    /// `spec.from` exactly as written, or "now" formatted as RFC 3339 UTC seconds when `from` is
    /// absent or empty (Gen B `status.data.from`).
    pub from: String,
    /// Not-before, in Unix seconds: `from` rounded down to a whole second.
    pub nbf: i64,
    /// Expiry, in Unix seconds: `nbf + durationSec`.
    pub exp: i64,
    /// `exp` formatted as RFC 3339 UTC seconds (Gen B `status.data.until`).
    pub until: String,
    /// `spec.durationSec`.
    pub duration_sec: i64,
}

impl TokenValidity {
    /// Computes the validity of a token from its `from` and `durationSec`, with `now` standing
    /// in for an absent or empty `from`.
    pub fn compute(
        from: Option<&str>,
        duration_sec: i64,
        now: Timestamp,
    ) -> Result<Self, SpecError> {
        if duration_sec <= 0 {
            return Err(SpecError::NonPositiveDuration(duration_sec));
        }
        let (from, start) = match from {
            Some(f) if !f.is_empty() => (f.to_owned(), parse_rfc3339(f)?),
            _ => (format_rfc3339_seconds(now), now),
        };
        let nbf = floor_second(start);
        let out_of_range = || SpecError::ExpiryOutOfRange {
            from: from.clone(),
            duration_sec,
        };
        let exp = nbf.checked_add(duration_sec).ok_or_else(out_of_range)?;
        let until = Timestamp::from_second(exp)
            .map_err(|_| out_of_range())?
            .to_string();
        Ok(Self {
            from,
            nbf,
            exp,
            until,
            duration_sec,
        })
    }

    /// The phase a token with this validity has at `now`: `Pending` before `nbf`, `Ready` until
    /// `exp`, `Completed` from `exp` on (as upstream: a token is completed once `exp <= now`).
    pub fn phase_at(&self, now: Timestamp) -> GateTokenPhase {
        let now = floor_second(now);
        if now < self.nbf {
            GateTokenPhase::Pending
        } else if now < self.exp {
            GateTokenPhase::Ready
        } else {
            GateTokenPhase::Completed
        }
    }

    /// The next phase change after `now` (at `nbf`, then at `exp`), or `None` once completed.
    pub fn next_transition(&self, now: Timestamp) -> Option<Timestamp> {
        let now_s = floor_second(now);
        let at = if now_s < self.nbf {
            self.nbf
        } else if now_s < self.exp {
            self.exp
        } else {
            return None;
        };
        Timestamp::from_second(at).ok()
    }

    /// How long to wait from `now` until [`next_transition`](Self::next_transition), for a
    /// requeue; `None` once completed.
    pub fn until_next_transition(&self, now: Timestamp) -> Option<Duration> {
        let next = self.next_transition(now)?;
        let span = next.duration_since(now);
        Some(span.try_into().unwrap_or(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn parses_rfc3339_forms() {
        let cases = [
            ("2021-04-22T10:00:00Z", "2021-04-22T10:00:00Z"),
            ("2021-04-22t10:00:00z", "2021-04-22T10:00:00Z"),
            ("2021-04-22T12:00:00+02:00", "2021-04-22T10:00:00Z"),
            ("2021-04-22T05:30:00-04:30", "2021-04-22T10:00:00Z"),
            ("2021-04-22T10:00:00.5Z", "2021-04-22T10:00:00.5Z"),
            (
                "2021-04-22T10:00:00.123456789Z",
                "2021-04-22T10:00:00.123456789Z",
            ),
            (
                "2021-04-22T10:00:00.1234567891234Z",
                "2021-04-22T10:00:00.123456789Z",
            ),
            ("2021-04-22T10:00:00-00:00", "2021-04-22T10:00:00Z"),
            ("2024-02-29T00:00:00Z", "2024-02-29T00:00:00Z"),
            ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
            ("9999-12-30T21:59:59Z", "9999-12-30T21:59:59Z"),
            ("1969-12-31T23:59:59.5Z", "1969-12-31T23:59:59.5Z"),
        ];
        for (input, want) in cases {
            let got = parse_rfc3339(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got, ts(want), "{input}");
        }
    }

    #[test]
    fn rejects_non_rfc3339() {
        let cases = [
            "",
            "now",
            "2021-04-22",
            "2021-04-22T10:00:00",
            "2021-04-22 10:00:00Z",
            "2021-04-22T10:00Z",
            "2021-04-22T10:00:60Z",
            "2021-04-22T24:00:00Z",
            "2021-02-30T10:00:00Z",
            "2021-13-01T10:00:00Z",
            "2021-04-22T10:00:00.Z",
            "2021-04-22T10:00:00+0200",
            "2021-04-22T10:00:00+02",
            "2021-04-22T10:00:00+24:00",
            "2021-04-22T10:00:00Z ",
            " 2021-04-22T10:00:00Z",
            "2021-04-22T10:00:00ZT",
            "2021-04-22T10:00:00+02:00[Europe/Paris]",
            "20210422T100000Z",
            "+002021-04-22T10:00:00Z",
            "2021-04-22T10:00:00\u{0}Z",
            "２０２１-04-22T10:00:00Z",
        ];
        for input in cases {
            let e = parse_rfc3339(input).expect_err(input);
            assert_eq!(e.value, input);
            assert!(e.to_string().contains("RFC 3339"), "{e}");
        }
    }

    #[test]
    fn reasons_are_specific() {
        let reason = |s: &str| parse_rfc3339(s).unwrap_err().reason;
        assert!(reason("2021-04-22T10:00:00").contains("time zone is missing"));
        assert!(reason("2021-04-22 10:00:00Z").contains("not a space"));
        assert!(reason("2021-04-22T10:00:60Z").contains("leap"));
    }

    #[test]
    fn validity_from_now() {
        let now = ts("2021-04-22T10:00:00.75Z");
        let v = TokenValidity::compute(None, 3600, now).unwrap();
        assert_eq!(v.from, "2021-04-22T10:00:00Z");
        assert_eq!(v.nbf, 1_619_085_600);
        assert_eq!(v.exp, 1_619_085_600 + 3600);
        assert_eq!(v.until, "2021-04-22T11:00:00Z");
        assert_eq!(v.duration_sec, 3600);
        assert_eq!(TokenValidity::compute(Some(""), 3600, now).unwrap(), v);
    }

    #[test]
    fn validity_from_written_value_is_kept_verbatim() {
        let now = ts("2030-01-01T00:00:00Z");
        let v = TokenValidity::compute(Some("2021-04-22T12:00:00.9+02:00"), 60, now).unwrap();
        assert_eq!(v.from, "2021-04-22T12:00:00.9+02:00");
        assert_eq!(v.nbf, 1_619_085_600);
        assert_eq!(v.exp, 1_619_085_660);
        assert_eq!(v.until, "2021-04-22T10:01:00Z");
    }

    #[test]
    fn validity_before_epoch_rounds_down() {
        let v = TokenValidity::compute(Some("1969-12-31T23:59:59.5Z"), 1, Timestamp::UNIX_EPOCH)
            .unwrap();
        assert_eq!(v.nbf, -1);
        assert_eq!(v.exp, 0);
        assert_eq!(v.until, "1970-01-01T00:00:00Z");
    }

    #[test]
    fn validity_errors() {
        let now = Timestamp::UNIX_EPOCH;
        assert_eq!(
            TokenValidity::compute(None, 0, now),
            Err(SpecError::NonPositiveDuration(0))
        );
        assert_eq!(
            TokenValidity::compute(None, -5, now),
            Err(SpecError::NonPositiveDuration(-5))
        );
        assert!(matches!(
            TokenValidity::compute(Some("yesterday"), 10, now),
            Err(SpecError::InvalidFrom(_))
        ));
        assert!(matches!(
            TokenValidity::compute(Some("9999-12-30T21:00:00Z"), 7200, now),
            Err(SpecError::ExpiryOutOfRange { .. })
        ));
        assert!(matches!(
            TokenValidity::compute(None, i64::MAX, now),
            Err(SpecError::ExpiryOutOfRange { .. })
        ));
        let msg = TokenValidity::compute(Some("2021-04-22T10:00:00"), 10, now)
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("from: \"2021-04-22T10:00:00\" is not an RFC 3339"),
            "{msg}"
        );
    }

    #[test]
    fn phases_and_transitions() {
        let v = TokenValidity::compute(Some("2021-04-22T10:00:00Z"), 60, Timestamp::UNIX_EPOCH)
            .unwrap();
        let before = ts("2021-04-22T09:59:59.5Z");
        assert_eq!(v.phase_at(before), GateTokenPhase::Pending);
        assert_eq!(v.next_transition(before), Some(ts("2021-04-22T10:00:00Z")));
        assert_eq!(
            v.until_next_transition(before),
            Some(Duration::from_millis(500))
        );
        let at_nbf = ts("2021-04-22T10:00:00Z");
        assert_eq!(v.phase_at(at_nbf), GateTokenPhase::Ready);
        assert_eq!(v.next_transition(at_nbf), Some(ts("2021-04-22T10:01:00Z")));
        assert_eq!(
            v.until_next_transition(at_nbf),
            Some(Duration::from_secs(60))
        );
        let at_exp = ts("2021-04-22T10:01:00Z");
        assert_eq!(v.phase_at(at_exp), GateTokenPhase::Completed);
        assert_eq!(v.next_transition(at_exp), None);
        assert_eq!(v.until_next_transition(at_exp), None);
    }

    #[test]
    fn formats_whole_seconds_in_utc() {
        assert_eq!(
            format_rfc3339_seconds(ts("2021-04-22T12:00:00.999+02:00")),
            "2021-04-22T10:00:00Z"
        );
        assert_eq!(floor_second(ts("1969-12-31T23:59:59.1Z")), -1);
        assert_eq!(floor_second(ts("1970-01-01T00:00:00.9Z")), 0);
    }
}
