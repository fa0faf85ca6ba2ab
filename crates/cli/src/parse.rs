//! Parsers for option values, written once: headers, and durations (humantime, or a bare number
//! of seconds as the options always took). Every bad value is refused when the command line is
//! parsed, with a message saying what was expected.

use std::time::Duration;

/// `KEY=VALUE` (the key non-empty; the value may contain `=`).
pub fn header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// A duration: `500ms`, `90s`, `10m`, `1h 30m` (humantime), or a bare number of seconds (`2.5`).
/// NaN, infinities and negative numbers are refused.
fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| {
            format!("{s:?} is not a usable number of seconds (finite and not negative)")
        });
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("bad duration {s:?} ({e}): expected seconds (2.5) or 500ms, 90s, 10m"))
}

/// A duration that may be zero (`peers --wait`).
pub fn wait(s: &str) -> Result<Duration, String> {
    duration(s)
}

/// A duration that must be positive (`tester --duration`).
pub fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    if d.is_zero() {
        return Err(format!("duration must be positive: {s:?}"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(wait("2.5").unwrap(), Duration::from_millis(2500));
        assert_eq!(wait("0").unwrap(), Duration::ZERO);
        assert_eq!(wait("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(wait("1m 30s").unwrap(), Duration::from_secs(90));
        assert_eq!(positive_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(positive_duration("90").unwrap(), Duration::from_secs(90));
        for bad in [
            "nan",
            "NaN",
            "inf",
            "-1",
            "-0.5",
            "abc",
            "10 parsecs",
            "",
            "1e400",
        ] {
            assert!(wait(bad).is_err(), "{bad:?} accepted");
        }
        assert!(positive_duration("0s").is_err());
        assert!(positive_duration("0").is_err());
    }

    #[test]
    fn headers() {
        assert_eq!(header("K=V").unwrap(), ("K".into(), "V".into()));
        assert_eq!(header("K=a=b").unwrap(), ("K".into(), "a=b".into()));
        assert_eq!(header("K=").unwrap(), ("K".into(), String::new()));
        assert!(header("=V").is_err());
        assert!(header("KV").is_err());
    }
}
