//! Reading the `--timeout SECONDS` argument and writing durations for people.
//! The parser is strict on purpose: a timeout typed wrong in a cron line should fail loudly
//! rather than quietly mean "forever" or "zero".

use std::time::Duration;

/// Parses a non-negative decimal number of seconds: `5`, `0.25`, `.5`, `10.`.
///
/// Refused: an empty string, a sign, spaces, exponents (`1e3`), hex (`0x10`), `inf`, `nan`,
/// and anything too large to represent.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(flockrun::duration::parse_seconds("0.25"), Ok(Duration::from_millis(250)));
/// assert!(flockrun::duration::parse_seconds("-1").is_err());
/// ```
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a number of seconds such as 5 or 0.25";
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() {
        return Err(EXPECTED.to_owned());
    }
    if !all_digits(whole) || !all_digits(fraction) {
        return Err(EXPECTED.to_owned());
    }
    let too_large = || format!("{text} seconds is too large");
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    // Nanosecond precision: further digits are dropped, not rounded.
    let mut nanos: u32 = 0;
    for (i, digit) in fraction.bytes().take(9).enumerate() {
        let exponent = u32::try_from(8 - i).unwrap_or(0);
        nanos += u32::from(digit - b'0') * 10u32.pow(exponent);
    }
    Duration::new(secs, 0)
        .checked_add(Duration::from_nanos(u64::from(nanos)))
        .ok_or_else(too_large)
}

/// Parses a duration as timeout(1) takes one: a decimal number of seconds with an optional
/// unit, `s`, `m`, `h` or `d` (`90`, `1.5`, `30s`, `10m`, `2h`, `1d`), for `--run-limit` and
/// `--kill-after`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(flockrun::duration::parse_span("1.5m"), Ok(Duration::from_secs(90)));
/// assert!(flockrun::duration::parse_span("5x").is_err());
/// ```
pub fn parse_span(text: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "expected a duration such as 90, 1.5, 30s, 10m, 2h or 1d (seconds unless s, m, h or d \
         follows)";
    let (number, unit) = match text.as_bytes().last() {
        Some(b's') => (&text[..text.len() - 1], 1),
        Some(b'm') => (&text[..text.len() - 1], 60),
        Some(b'h') => (&text[..text.len() - 1], 3600),
        Some(b'd') => (&text[..text.len() - 1], 86_400),
        _ => (text, 1),
    };
    let seconds = parse_seconds(number).map_err(|_| EXPECTED.to_owned())?;
    seconds
        .checked_mul(unit)
        .filter(|d| d.as_secs() <= 100 * 365 * 86_400)
        .ok_or_else(|| format!("{text} is too long; give at most 100 years"))
}

/// A lease's time to live (`--ttl`): a decimal number of seconds from 0.1 to a week, kept
/// as the float py-filelock keeps its `lease_duration` and `stale_threshold`, so that both
/// spell it alike in a marker and compare it alike. etcd's leases take whole seconds
/// ([`Ttl::whole_seconds`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ttl(f64);

impl Ttl {
    /// The shortest TTL: renewals every TTL/3 must still fit between scheduling delays.
    pub const MIN_SECONDS: f64 = 0.1;
    /// A week: a lease longer than that outlives any reason to hold a lock after a crash.
    pub const MAX_SECONDS: u32 = 7 * 24 * 3600;

    /// Parses `10`, `1.5`, `0.25`: digits with an optional fraction, as `--timeout` takes
    /// them, from 0.1 to a week.
    ///
    /// ```
    /// use flockrun::duration::Ttl;
    /// assert_eq!(Ttl::parse("1.5").unwrap().python_repr(), "1.5");
    /// assert_eq!(Ttl::parse("2").unwrap().python_repr(), "2.0");
    /// assert!(Ttl::parse("0.05").is_err());
    /// ```
    ///
    /// # Errors
    /// A message for the command line when `text` is not such a number.
    pub fn parse(text: &str) -> Result<Ttl, String> {
        let range = || {
            format!(
                "expected seconds from {} to {} (a week), such as 10 or 1.5",
                Ttl::MIN_SECONDS,
                Ttl::MAX_SECONDS
            )
        };
        parse_seconds(text).map_err(|_| range())?;
        // The float Python's float() gives for the same digits (both round correctly).
        let seconds: f64 = text.parse().map_err(|_| range())?;
        if !(Ttl::MIN_SECONDS..=f64::from(Ttl::MAX_SECONDS)).contains(&seconds) {
            return Err(range());
        }
        Ok(Ttl(seconds))
    }

    #[must_use]
    pub fn from_secs(seconds: u32) -> Ttl {
        Ttl(f64::from(seconds))
    }

    #[must_use]
    pub fn as_secs_f64(self) -> f64 {
        self.0
    }

    #[must_use]
    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }

    /// The TTL in whole seconds, if it is one.
    #[must_use]
    pub fn whole_seconds(self) -> Option<u32> {
        // The range check in `parse` keeps the value within u32.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        (self.0.fract() == 0.0).then_some(self.0 as u32)
    }

    /// How py-filelock writes this float into a record (`repr(float(...))`): `2.0`, `1.5`.
    #[must_use]
    pub fn python_repr(self) -> String {
        python_repr(self.0)
    }
}

impl std::fmt::Display for Ttl {
    /// As a person would write it back: `10`, `1.5`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A float as Python's `repr` writes it: the shortest round-tripping digits, positional
/// from 1e-4 up to 1e16, else with an exponent of at least two digits (`1e-05`, `1e+16`).
#[must_use]
pub fn python_repr(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 || (1e-4..1e16).contains(&magnitude) {
        return format!("{value:?}");
    }
    let text = format!("{value:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let (sign, digits) = match exponent.strip_prefix('-') {
        Some(digits) => ('-', digits),
        None => ('+', exponent),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

/// Seconds with two decimals for short spans (`0.30s`), then `3m12s`, `2h05m`, `3d4h`.
#[must_use]
pub fn format_seconds(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        return format!("{:.2}s", d.as_secs_f64());
    }
    let (m, s) = (secs / 60, secs % 60);
    if m < 60 {
        return format!("{m}m{s:02}s");
    }
    let (h, m) = (m / 60, m % 60);
    if h < 24 {
        return format!("{h}h{m:02}m");
    }
    format!("{}d{}h", h / 24, h % 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_spelled_as_python_repr_spells_them() {
        for (value, text) in [
            (90.0, "90.0"),
            (2.0, "2.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1.234_567_890_123_456_8e17, "1.2345678901234568e+17"),
            (604_800.0, "604800.0"),
        ] {
            assert_eq!(python_repr(value), text);
        }
    }

    #[test]
    fn accepts_plain_decimals() {
        assert_eq!(parse_seconds("0"), Ok(Duration::ZERO));
        assert_eq!(parse_seconds("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_seconds("0.3"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_seconds(".5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_seconds("10."), Ok(Duration::from_secs(10)));
        assert_eq!(
            parse_seconds("1.0000000019"),
            Ok(Duration::new(1, 1)),
            "digits past nanoseconds are dropped"
        );
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "", ".", "-1", "+1", " 1", "1 ", "1e3", "1e400", "0x10", "inf", "NaN", "1,5", "1.2.3",
            "١",
        ] {
            assert!(parse_seconds(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_seconds("99999999999999999999999").is_err());
    }

    #[test]
    fn spans_take_timeouts_units() {
        for (text, secs) in [
            ("90", 90.0),
            ("1.5", 1.5),
            ("30s", 30.0),
            ("10m", 600.0),
            ("2h", 7200.0),
            ("1d", 86400.0),
            ("0.5m", 30.0),
            ("0", 0.0),
        ] {
            assert_eq!(
                parse_span(text),
                Ok(Duration::from_secs_f64(secs)),
                "{text}"
            );
        }
        for bad in [
            "",
            "-1",
            "5x",
            "s",
            "1.5.m",
            "m5",
            "1 m",
            "1e3s",
            "99999999999d",
        ] {
            assert!(parse_span(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format_seconds(Duration::from_millis(300)), "0.30s");
        assert_eq!(format_seconds(Duration::from_secs(192)), "3m12s");
        assert_eq!(format_seconds(Duration::from_secs(7500)), "2h05m");
        assert_eq!(
            format_seconds(Duration::from_secs(3 * 86400 + 4 * 3600)),
            "3d4h"
        );
    }
}
