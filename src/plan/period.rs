//! Calendar periods (months or years) in a time zone, and the exact bounds written into DDL.
//!
//! Planning happens in local wall time of the table's zone: a period starts at local midnight of
//! the 1st. Only when a bound is written into DDL for a `timestamptz` key is it turned into an
//! exact instant, and it is written with an explicit UTC offset so the session's `TimeZone` never
//! changes its meaning (design invariant 6). The SQL function `partition_archiver.bound_literal`
//! produces the same text.

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Month,
    Year,
}

impl Interval {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "month" | "monthly" => Some(Self::Month),
            "year" | "yearly" => Some(Self::Year),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Month => "month",
            Self::Year => "year",
        }
    }
}

/// The type of the partition key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    Timestamptz,
    Timestamp,
    Date,
}

/// One calendar period, identified by its first day (local to the table's zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    pub interval: Interval,
    /// Months since year 0 (monthly) or the year (yearly): a total order that makes stepping exact.
    index: i64,
}

impl Period {
    pub fn containing(interval: Interval, local: NaiveDateTime) -> Self {
        let index = match interval {
            Interval::Month => local.year() as i64 * 12 + local.month0() as i64,
            Interval::Year => local.year() as i64,
        };
        Self { interval, index }
    }

    /// The period `n` steps later (earlier when negative).
    pub fn offset(self, n: i64) -> Self {
        Self { interval: self.interval, index: self.index + n }
    }

    /// Periods between two periods of the same interval (`other - self`).
    pub fn steps_to(self, other: Period) -> i64 {
        other.index - self.index
    }

    pub fn start_date(self) -> NaiveDate {
        match self.interval {
            Interval::Month => {
                NaiveDate::from_ymd_opt(self.index.div_euclid(12) as i32, self.index.rem_euclid(12) as u32 + 1, 1)
            }
            Interval::Year => NaiveDate::from_ymd_opt(self.index as i32, 1, 1),
        }
        .expect("period within chrono's range")
    }

    pub fn start(self) -> NaiveDateTime {
        self.start_date().and_hms_opt(0, 0, 0).expect("midnight exists")
    }

    pub fn end(self) -> NaiveDateTime {
        self.offset(1).start()
    }

    /// `trades_2026_01` (monthly) or `trades_2026` (yearly).
    pub fn partition_name(self, table: &str) -> String {
        let d = self.start_date();
        match self.interval {
            Interval::Month => format!("{table}_{:04}_{:02}", d.year(), d.month()),
            Interval::Year => format!("{table}_{:04}", d.year()),
        }
    }

    /// Is `local` exactly the start of a period of this interval?
    pub fn is_boundary(interval: Interval, local: NaiveDateTime) -> bool {
        Period::containing(interval, local).start() == local
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.start_date();
        match self.interval {
            Interval::Month => write!(f, "{:04}-{:02}", d.year(), d.month()),
            Interval::Year => write!(f, "{:04}", d.year()),
        }
    }
}

/// Local wall time in `tz` of an instant.
pub fn to_local(tz: Tz, instant: DateTime<Utc>) -> NaiveDateTime {
    instant.with_timezone(&tz).naive_local()
}

/// The instant of a local wall time in `tz`, resolved as PostgreSQL's `AT TIME ZONE` does: an
/// ambiguous time (a fall-back hour) takes the earlier instant; a time that does not exist (a
/// spring-forward gap) is read with the offset in force before the gap.
pub fn to_instant(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            let before = local - chrono::Duration::hours(3);
            let offset = tz.offset_from_local_datetime(&before).earliest().map(|t| t.fix());
            let secs = offset.map(|o| o.local_minus_utc()).unwrap_or(0);
            Utc.from_utc_datetime(&(local - chrono::Duration::seconds(secs as i64)))
        }
    }
}

use chrono::Offset;

/// The literal written into `FOR VALUES FROM (...) TO (...)` for a local period boundary.
pub fn bound_literal(key: KeyType, tz: Tz, local: NaiveDateTime) -> String {
    match key {
        KeyType::Timestamptz => to_instant(tz, local).format("%Y-%m-%dT%H:%M:%S+00:00").to_string(),
        KeyType::Timestamp => local.format("%Y-%m-%dT%H:%M:%S").to_string(),
        KeyType::Date => local.format("%Y-%m-%d").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn months_step_across_years() {
        let p = Period::containing(Interval::Month, local("2026-12-31 23:59:59"));
        assert_eq!(p.to_string(), "2026-12");
        assert_eq!(p.offset(1).to_string(), "2027-01");
        assert_eq!(p.offset(-12).to_string(), "2025-12");
        assert_eq!(p.offset(-23).start(), local("2025-01-01 00:00:00"));
        assert_eq!(p.end(), local("2027-01-01 00:00:00"));
        assert_eq!(p.partition_name("trades"), "trades_2026_12");
        let y = Period::containing(Interval::Year, local("2024-02-29 12:00:00"));
        assert_eq!(y.partition_name("trades"), "trades_2024");
        assert_eq!(y.end(), local("2025-01-01 00:00:00"));
        assert_eq!(p.steps_to(p.offset(5)), 5);
    }

    #[test]
    fn bounds_are_exact_instants_with_offsets() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // March 1st is before the US DST switch (EST, -05:00); July 1st is in EDT (-04:00).
        assert_eq!(bound_literal(KeyType::Timestamptz, ny, local("2026-03-01 00:00:00")), "2026-03-01T05:00:00+00:00");
        assert_eq!(bound_literal(KeyType::Timestamptz, ny, local("2026-07-01 00:00:00")), "2026-07-01T04:00:00+00:00");
        assert_eq!(bound_literal(KeyType::Timestamp, ny, local("2026-07-01 00:00:00")), "2026-07-01T00:00:00");
        assert_eq!(bound_literal(KeyType::Date, ny, local("2026-07-01 00:00:00")), "2026-07-01");
        // Sao Paulo skipped midnight on 2018-11-04: PostgreSQL reads 00:00 with the offset before the gap (-03).
        let sp: Tz = "America/Sao_Paulo".parse().unwrap();
        assert_eq!(to_instant(sp, local("2018-11-04 00:00:00")).to_rfc3339(), "2018-11-04T03:00:00+00:00");
    }
}
