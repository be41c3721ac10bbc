//! Reading the journal's timestamps and writing times and durations the way
//! a post-incident review reads them: UTC wall-clock times, offsets from the
//! start of the run, and short durations.

use chrono::{DateTime, Utc};

/// Parses an RFC 3339 timestamp of the journal. A timestamp that does not
/// parse is treated as unknown rather than failing the whole report.
pub(crate) fn parse(ts: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Milliseconds from `from` to `to`, when both parse and `to` is not earlier.
pub(crate) fn between(from: &str, to: &str) -> Option<u64> {
    let ms = (parse(to)? - parse(from)?).num_milliseconds();
    u64::try_from(ms).ok()
}

/// A duration for people: `450ms`, `2.3s`, `1m 05s`, `2h 03m`, each
/// rounded to its last digit (so the terminal's summary of a run, `runs`
/// and the report say the same).
pub fn format_duration(ms: u64) -> String {
    let tenths = ms.saturating_add(50) / 100;
    let seconds = ms.saturating_add(500) / 1_000;
    let minutes = ms.saturating_add(30_000) / 60_000;
    if ms < 1_000 {
        format!("{ms}ms")
    } else if tenths < 600 {
        // One decimal under a minute: retries and timeouts live at this scale.
        format!("{}.{}s", tenths / 10, tenths % 10)
    } else if seconds < 3_600 {
        format!("{}m {:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{}h {:02}m", minutes / 60, minutes % 60)
    }
}

/// An offset from the start of the run: `T+0:04`, `T+12:30`, `T+1:02:03`.
pub fn format_offset(ms: u64) -> String {
    let secs = ms / 1_000;
    let (h, m, s) = (secs / 3_600, (secs % 3_600) / 60, secs % 60);
    if h > 0 {
        format!("T+{h}:{m:02}:{s:02}")
    } else {
        format!("T+{m}:{s:02}")
    }
}

/// A full UTC time: `2026-11-26 20:30:15 UTC`. Unparseable text is shown
/// as it is, so nothing the journal says is hidden.
pub fn format_datetime(ts: &str) -> String {
    match parse(ts) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => ts.to_string(),
    }
}

/// A time within the run: `20:30:15.120`, with the date in front when it is
/// not the day the run started (a run across midnight stays unambiguous).
pub fn format_time_of_day(ts: &str, run_start: Option<&str>) -> String {
    let Some(t) = parse(ts) else {
        return ts.to_string();
    };
    let same_day = run_start
        .and_then(parse)
        .is_none_or(|start| start.date_naive() == t.date_naive());
    if same_day {
        t.format("%H:%M:%S%.3f").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M:%S%.3f").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(0), "0ms");
        assert_eq!(format_duration(999), "999ms");
        assert_eq!(format_duration(2_345), "2.3s");
        assert_eq!(format_duration(1_487), "1.5s");
        assert_eq!(format_duration(59_960), "1m 00s");
        assert_eq!(format_duration(3_599_600), "1h 00m");
        assert_eq!(format_duration(65_000), "1m 05s");
        assert_eq!(format_duration(7_380_000), "2h 03m");
    }

    #[test]
    fn offsets_and_times() {
        assert_eq!(format_offset(4_999), "T+0:04");
        assert_eq!(format_offset(750_000), "T+12:30");
        assert_eq!(format_offset(3_723_000), "T+1:02:03");
        let start = "2026-11-26T23:59:00.000Z";
        assert_eq!(
            format_time_of_day("2026-11-26T23:59:30.120Z", Some(start)),
            "23:59:30.120"
        );
        assert_eq!(
            format_time_of_day("2026-11-27T00:00:01.000Z", Some(start)),
            "2026-11-27 00:00:01.000"
        );
        assert_eq!(format_datetime("garbage"), "garbage");
        assert_eq!(between(start, "2026-11-26T23:59:01.500Z"), Some(1_500));
        assert_eq!(between("2026-11-26T23:59:01.500Z", start), None);
    }
}
