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
