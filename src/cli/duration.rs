//! Durations as flags take them: `500ms`, `2s`, `1m30s`, or a bare number of
//! seconds.
//!
//! Owns the parse and its bounds. Must never accept a duration that could
//! overflow a clock when added to now.

use std::time::Duration;

/// Longest duration any flag takes: far beyond any sane timeout, and small enough
/// that `now + duration` can never overflow a clock.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses human durations: `250ms`, `2s`, `1m 30s`. A bare number means seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d = match s.parse::<f64>() {
        Ok(secs) if secs < 0.0 => return Err(format!("{s:?}: a duration cannot be negative")),
        Ok(secs) => Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))?,
        Err(_) => {
            humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (try 500ms, 2s, 1m)"))?
        }
    };
    if d > MAX_DURATION {
        return Err(format!("{s:?} is too long (at most a year)"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_units_and_bare_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("1.8e19").is_err());
        assert!(parse_duration("400days").is_err());
    }
}
