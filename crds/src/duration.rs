//! Go duration strings (`30m`, `1h30m`, `1.5h`, `90s`), as `spec.timeout` takes them.
//!
//! The syntax is Go's `time.ParseDuration`, the format Kubernetes users know from
//! `metav1.Duration` fields and `kubectl wait --timeout`: one or more `<number><unit>`
//! pairs, the number a decimal with an optional fraction, the unit one of `h`, `m`, `s`,
//! `ms`, `us` (or `µs`/`μs`) and `ns`. Kiln takes no sign (a timeout cannot be
//! negative). Like Go, the value is summed in integer nanoseconds and may not exceed
//! Go's `time.Duration` range (about 292 years).
//!
//! Written here rather than taken from `kube::core::Duration` because that parser
//! panics on values past the `std::time::Duration` range and accepts the empty string;
//! a user's typo in a spec must become an error, never a panic.

use std::time::Duration;

/// Why a duration string was rejected. Each variant names the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("empty duration; expected for example \"30m\" or \"1h30m\"")]
    Empty,
    /// A unit without a number before it, or a stray character (such as a sign).
    #[error("invalid duration {input:?}: expected a number at byte {offset}")]
    ExpectedNumber {
        /// The whole input.
        input: String,
        /// Byte offset of the character that should start a number.
        offset: usize,
    },
    /// A number without a unit after it (Go accepts a bare `0` only).
    #[error(
        "invalid duration {input:?}: missing unit after {number:?} (use h, m, s, ms, us or ns)"
    )]
    MissingUnit {
        /// The whole input.
        input: String,
        /// The number that lacks a unit.
        number: String,
    },
    /// A unit Go does not know.
    #[error("invalid duration {input:?}: unknown unit {unit:?} (use h, m, s, ms, us or ns)")]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The unknown unit.
        unit: String,
    },
    /// The value exceeds Go's `time.Duration` range (2^63-1 ns, about 292 years).
    #[error("invalid duration {input:?}: too large")]
    Overflow {
        /// The whole input.
        input: String,
    },
}

/// Nanoseconds per unit, longest unit names first so that `ms` is not read as `m`.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{00b5}s", 1_000),
    ("\u{03bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Go's `time.Duration` maximum, in nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration string such as `30m`, `1h30m`, `1.5h` or `250ms`.
///
/// `0` alone is accepted (as in Go) and gives zero. Fractions are exact down to the
/// nanosecond: digits past the ninth fractional digit of a second are truncated, as Go
/// does.
///
/// Errors: [`DurationError`] naming the input and the part that is wrong.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    let bytes = input.as_bytes();
    let mut pos = 0;
    let mut total: u128 = 0;
    while pos < bytes.len() {
        // The number: digits, optionally '.', optionally more digits; at least one digit.
        let number_start = pos;
        let mut whole: u128 = 0;
        let mut whole_digits = 0;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            whole = whole
                .checked_mul(10)
                .and_then(|w| w.checked_add(u128::from(bytes[pos] - b'0')))
                .filter(|w| *w <= MAX_NANOS)
                .ok_or_else(|| DurationError::Overflow {
                    input: input.to_owned(),
                })?;
            whole_digits += 1;
            pos += 1;
        }
        // Fraction as numerator / 10^scale; digits beyond what nanosecond precision of
        // the largest unit needs (and beyond u128) are dropped, like Go's leadingFraction.
        let mut frac: u128 = 0;
        let mut scale: u128 = 1;
        let mut frac_digits = 0;
        if pos < bytes.len() && bytes[pos] == b'.' {
            pos += 1;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                if scale < 10u128.pow(30) {
                    frac = frac * 10 + u128::from(bytes[pos] - b'0');
                    scale *= 10;
                }
                frac_digits += 1;
                pos += 1;
            }
        }
        if whole_digits == 0 && frac_digits == 0 {
            return Err(DurationError::ExpectedNumber {
                input: input.to_owned(),
                offset: number_start,
            });
        }
        let number = &input[number_start..pos];

        // The unit: everything up to the next digit or '.'.
        let unit_start = pos;
        while pos < bytes.len() && bytes[pos] != b'.' && !bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        let unit = &input[unit_start..pos];
        if unit.is_empty() {
            return Err(DurationError::MissingUnit {
                input: input.to_owned(),
                number: number.to_owned(),
            });
        }
        let per_unit = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, nanos)| *nanos)
            .ok_or_else(|| DurationError::UnknownUnit {
                input: input.to_owned(),
                unit: unit.to_owned(),
            })?;

        let overflow = || DurationError::Overflow {
            input: input.to_owned(),
        };
        let whole_nanos = whole.checked_mul(per_unit).ok_or_else(overflow)?;
        // frac < scale <= 10^30 and per_unit <= 3.6e12, so the product fits in u128.
        let frac_nanos = frac * per_unit / scale;
        total = total
            .checked_add(whole_nanos)
            .and_then(|t| t.checked_add(frac_nanos))
            .filter(|t| *t <= MAX_NANOS)
            .ok_or_else(overflow)?;
    }
    let secs = (total / 1_000_000_000) as u64;
    let nanos = (total % 1_000_000_000) as u32;
    Ok(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_go_duration(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn whole_units() {
        assert_eq!(ok("30m"), Duration::from_secs(1800));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("45s"), Duration::from_secs(45));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("7us"), Duration::from_micros(7));
        assert_eq!(ok("7µs"), Duration::from_micros(7));
        assert_eq!(ok("7μs"), Duration::from_micros(7));
        assert_eq!(ok("12ns"), Duration::from_nanos(12));
    }

    #[test]
    fn compound_values_add_up() {
        // 1h30m = 3600 + 1800 s; 2h45m10s = 7200 + 2700 + 10 s.
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("2h45m10s"), Duration::from_secs(9910));
        assert_eq!(ok("1m500ms"), Duration::from_millis(60_500));
        // Go allows units in any order and repeated.
        assert_eq!(ok("30s1m30s"), Duration::from_secs(120));
    }

    #[test]
    fn fractions() {
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok(".5m"), Duration::from_secs(30));
        assert_eq!(ok("1.m"), Duration::from_secs(60));
        assert_eq!(ok("0.25s"), Duration::from_millis(250));
        // One third of a second, truncated to whole nanoseconds like Go.
        assert_eq!(ok("0.3333333333s"), Duration::from_nanos(333_333_333));
        assert_eq!(ok("1.0000000001h"), Duration::from_nanos(3_600_000_000_360));
    }

    #[test]
    fn zero_forms() {
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("0h0m"), Duration::ZERO);
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(parse_go_duration(""), Err(DurationError::Empty));
    }

    #[test]
    fn rejects_missing_unit() {
        assert_eq!(
            parse_go_duration("30"),
            Err(DurationError::MissingUnit {
                input: "30".into(),
                number: "30".into()
            })
        );
        assert_eq!(
            parse_go_duration("1h30"),
            Err(DurationError::MissingUnit {
                input: "1h30".into(),
                number: "30".into()
            })
        );
    }

    #[test]
    fn rejects_unknown_units() {
        for (input, unit) in [("3d", "d"), ("1h 30m", "h "), ("5min", "min"), ("1H", "H")] {
            assert_eq!(
                parse_go_duration(input),
                Err(DurationError::UnknownUnit {
                    input: input.into(),
                    unit: unit.into()
                }),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_signs_and_stray_characters() {
        for (input, offset) in [("-5m", 0), ("+5m", 0), ("m", 0), (".m", 0), ("1h.", 2)] {
            assert_eq!(
                parse_go_duration(input),
                Err(DurationError::ExpectedNumber {
                    input: input.into(),
                    offset
                }),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_values_beyond_go_range() {
        // Go's limit is 2^63-1 ns = 2562047h47m16.854775807s.
        assert_eq!(
            ok("2562047h47m16.854775807s"),
            Duration::from_nanos(i64::MAX as u64)
        );
        for input in [
            "2562048h",
            "2562047h47m16.854775808s",
            "99999999999999999999999h",
        ] {
            assert_eq!(
                parse_go_duration(input),
                Err(DurationError::Overflow {
                    input: input.into()
                }),
                "{input}"
            );
        }
    }

    #[test]
    fn error_messages_name_the_input() {
        let msg = parse_go_duration("3d").unwrap_err().to_string();
        assert!(msg.contains("\"3d\"") && msg.contains("\"d\""), "{msg}");
    }
}
