//! Calendar periods (days, ISO weeks, months, quarters or years) in a time zone, and the exact
//! bounds written into DDL.
//!
//! Planning happens in local wall time of the table's zone: a period starts at local midnight of
//! its first day (a Monday for ISO weeks), so a daily period on a DST day is 23 or 25 hours long. Only when a bound is written into DDL for a `timestamptz` key is it turned into an
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
    Day,
    /// ISO 8601 weeks: Monday to Sunday, numbered within their ISO year.
    Week,
    Month,
    Quarter,
    Year,
}

impl Interval {
    pub const ALL: [Interval; 5] = [Self::Day, Self::Week, Self::Month, Self::Quarter, Self::Year];

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "day" | "daily" => Some(Self::Day),
            "week" | "weekly" => Some(Self::Week),
            "month" | "monthly" => Some(Self::Month),
            "quarter" | "quarterly" => Some(Self::Quarter),
            "year" | "yearly" => Some(Self::Year),
            _ => None,
        }
    }
    /// The `part_config.partition_interval` value, also PostgreSQL's `date_trunc` field name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
            Self::Quarter => "quarter",
            Self::Year => "year",
        }
    }

    /// The interval whose single period `[from, to)` is, if any (`None` for a range that is not
    /// one whole period: a foreign partition, or the remainder created after an interval change).
    /// The table's own interval is preferred, so a range keeps the key it has always had.
    pub fn of_range(preferred: Interval, from: NaiveDateTime, to: NaiveDateTime) -> Option<Interval> {
        let exact = |i: Interval| {
            let p = Period::containing(i, from);
            p.start() == from && p.end() == to
        };
        std::iter::once(preferred).chain(Self::ALL).find(|i| exact(*i))
    }
}

/// How a key that is not a date or timestamp holds time (`part_config.epoch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Epoch {
    /// An integer (`bigint`, `integer`) of seconds since 1970-01-01 UTC.
    Seconds,
    Milliseconds,
    Microseconds,
    /// A `uuid` column of UUIDv7 values, whose first 48 bits are the creation time in
    /// milliseconds since 1970-01-01 UTC.
    Uuidv7,
}

impl Epoch {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "seconds" => Some(Self::Seconds),
            "milliseconds" => Some(Self::Milliseconds),
            "microseconds" => Some(Self::Microseconds),
            "uuidv7" => Some(Self::Uuidv7),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Seconds => "seconds",
            Self::Milliseconds => "milliseconds",
            Self::Microseconds => "microseconds",
            Self::Uuidv7 => "uuidv7",
        }
    }
}

/// The type of the partition key column, and how it holds time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    Timestamptz,
    Timestamp,
    Date,
    /// `bigint` or `integer` seconds, milliseconds or microseconds since the Unix epoch.
    EpochSeconds,
    EpochMilliseconds,
    EpochMicroseconds,
    /// `uuid` holding UUIDv7 values.
    Uuidv7,
}

impl KeyType {
    /// The manifest's `key_type` text (as serialized).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "timestamptz" => Self::Timestamptz,
            "timestamp" => Self::Timestamp,
            "date" => Self::Date,
            "epoch_seconds" => Self::EpochSeconds,
            "epoch_milliseconds" => Self::EpochMilliseconds,
            "epoch_microseconds" => Self::EpochMicroseconds,
            "uuidv7" => Self::Uuidv7,
            _ => return None,
        })
    }

    /// The key type of a column of PostgreSQL type `type_name` (`format_type`) with the
    /// policy's `epoch`; `Err` says why they do not go together.
    pub fn of_column(type_name: &str, epoch: Option<Epoch>) -> Result<Self, String> {
        match (type_name, epoch) {
            ("timestamp with time zone", None) => Ok(Self::Timestamptz),
            ("timestamp without time zone", None) => Ok(Self::Timestamp),
            ("date", None) => Ok(Self::Date),
            // An integer holds seconds until 2038-01-19; milliseconds and microseconds need bigint.
            ("bigint" | "integer", Some(Epoch::Seconds)) => Ok(Self::EpochSeconds),
            ("bigint", Some(Epoch::Milliseconds)) => Ok(Self::EpochMilliseconds),
            ("bigint", Some(Epoch::Microseconds)) => Ok(Self::EpochMicroseconds),
            ("integer", Some(e @ (Epoch::Milliseconds | Epoch::Microseconds))) => Err(format!(
                "{} since 1970 do not fit an integer (they pass 2^31 within a month of 1970): the key must be bigint",
                e.as_str()
            )),
            ("uuid", Some(Epoch::Uuidv7)) => Ok(Self::Uuidv7),
            ("timestamp with time zone" | "timestamp without time zone" | "date", Some(e)) => Err(format!(
                "part_config.epoch is '{}', which is for integer or uuid keys, not {type_name}: set it to NULL",
                e.as_str()
            )),
            ("bigint" | "integer", None) => Err(format!(
                "an {type_name} key is time only with part_config.epoch ('seconds', 'milliseconds' or 'microseconds' \
                 since 1970-01-01 UTC); a table partitioned by id is not managed"
            )),
            ("bigint" | "integer", Some(Epoch::Uuidv7)) => {
                Err(format!("part_config.epoch 'uuidv7' is for a uuid key, not {type_name}"))
            }
            ("uuid", _) => Err("a uuid key needs part_config.epoch = 'uuidv7' (UUIDv7 values)".into()),
            _ => Err(format!(
                "expected timestamptz, timestamp or date, an integer with part_config.epoch, or a uuid with epoch 'uuidv7'; not {type_name}"
            )),
        }
    }

    /// How the key holds time, when it is not a date or timestamp.
    pub fn epoch(self) -> Option<Epoch> {
        match self {
            Self::EpochSeconds => Some(Epoch::Seconds),
            Self::EpochMilliseconds => Some(Epoch::Milliseconds),
            Self::EpochMicroseconds => Some(Epoch::Microseconds),
            Self::Uuidv7 => Some(Epoch::Uuidv7),
            Self::Timestamptz | Self::Timestamp | Self::Date => None,
        }
    }

    /// The epoch unit of an integer key, in microseconds.
    fn micros_per_unit(self) -> Option<i64> {
        match self {
            Self::EpochSeconds => Some(1_000_000),
            Self::EpochMilliseconds => Some(1_000),
            Self::EpochMicroseconds => Some(1),
            _ => None,
        }
    }
}

/// One calendar period, identified by its first day (local to the table's zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    pub interval: Interval,
    /// A total order that makes stepping exact: days since 0001-01-01 (daily), weeks since the
    /// Monday 0001-01-01 (weekly), months since year 0, quarters since year 0, or the year.
    index: i64,
}

impl Period {
    pub fn containing(interval: Interval, local: NaiveDateTime) -> Self {
        let days = local.date().num_days_from_ce() as i64 - 1; // 0001-01-01, a Monday, is day 0
        let index = match interval {
            Interval::Day => days,
            Interval::Week => days.div_euclid(7),
            Interval::Month => local.year() as i64 * 12 + local.month0() as i64,
            Interval::Quarter => local.year() as i64 * 4 + local.month0() as i64 / 3,
            Interval::Year => local.year() as i64,
        };
        Self { interval, index }
    }

    /// The period `n` steps later (earlier when negative).
    pub fn offset(self, n: i64) -> Self {
        Self { interval: self.interval, index: self.index + n }
    }

    pub fn start_date(self) -> NaiveDate {
        let from_days = |d: i64| NaiveDate::from_num_days_from_ce_opt((d + 1) as i32);
        let month = |m: i64| NaiveDate::from_ymd_opt(m.div_euclid(12) as i32, m.rem_euclid(12) as u32 + 1, 1);
        match self.interval {
            Interval::Day => from_days(self.index),
            Interval::Week => from_days(self.index * 7),
            Interval::Month => month(self.index),
            Interval::Quarter => month(self.index * 3),
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

    /// The calendar fields that name the period, coarsest first: the name's suffix and the
    /// Hive-style path are both written from them. A week is named by its ISO year and week.
    fn fields(self) -> Vec<(&'static str, String)> {
        let d = self.start_date();
        let year = ("year", format!("{:04}", d.year()));
        match self.interval {
            Interval::Day => vec![year, ("month", format!("{:02}", d.month())), ("day", format!("{:02}", d.day()))],
            Interval::Week => {
                let week = d.iso_week();
                vec![("year", format!("{:04}", week.year())), ("week", format!("{:02}", week.week()))]
            }
            Interval::Month => vec![year, ("month", format!("{:02}", d.month()))],
            Interval::Quarter => vec![year, ("quarter", (d.month0() / 3 + 1).to_string())],
            Interval::Year => vec![year],
        }
    }

    /// The name's suffix: sorts in time order within an interval and states the period.
    /// `2026_12_06` (day), `2026_w49` (ISO week of its ISO year), `2026_12` (month), `2026_q4`
    /// (quarter), `2026` (year).
    fn suffix(self) -> String {
        let marked = |(field, value): (&str, String)| match field {
            "week" => format!("w{value}"),
            "quarter" => format!("q{value}"),
            _ => value,
        };
        self.fields().into_iter().map(marked).collect::<Vec<_>>().join("_")
    }

    /// `trades_2026_12` (monthly), `trades_2026_12_06` (daily) ...: see [`Period::suffix`].
    pub fn partition_name(self, table: &str) -> String {
        format!("{table}_{}", self.suffix())
    }

    /// The Hive-style path of the period's objects, so engines prune by it: `year=2026/month=12/day=06`
    /// (daily), `year=2026/week=49` (weekly: the ISO year and week), `year=2026/month=12`,
    /// `year=2026/quarter=4`, `year=2026`.
    pub fn hive_path(self) -> String {
        self.fields().into_iter().map(|(field, value)| format!("{field}={value}")).collect::<Vec<_>>().join("/")
    }
}

impl fmt::Display for Period {
    /// `2026-12-06`, `2026-W49`, `2026-12`, `2026-Q4`, `2026`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.start_date();
        match self.interval {
            Interval::Day => write!(f, "{}", d.format("%Y-%m-%d")),
            Interval::Week => write!(f, "{:04}-W{:02}", d.iso_week().year(), d.iso_week().week()),
            Interval::Month => write!(f, "{:04}-{:02}", d.year(), d.month()),
            Interval::Quarter => write!(f, "{:04}-Q{}", d.year(), d.month0() / 3 + 1),
            Interval::Year => write!(f, "{:04}", d.year()),
        }
    }
}

/// Local wall time in `tz` of an instant.
pub fn to_local(tz: Tz, instant: DateTime<Utc>) -> NaiveDateTime {
    instant.with_timezone(&tz).naive_local()
}

/// The instant of a local wall time in `tz`, resolved as PostgreSQL's `AT TIME ZONE` does: an
/// ambiguous time (a fall-back hour) takes the offset in force after the transition, which is the
/// later instant; a time that does not exist (a spring-forward gap) is read with the offset in
/// force before the gap. (A midnight is ambiguous where clocks fall back at 01:00 to 00:00:
/// Havana in November, the Azores in October.)
pub fn to_instant(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.max(b).with_timezone(&Utc),
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
///
/// An epoch key's bound is the instant as an integer of its unit. A UUIDv7 key's bound is the
/// smallest UUID whose 48-bit timestamp is the instant's millisecond (every other bit zero):
/// every UUIDv7 made from that millisecond on sorts at or after it, every one made before sorts
/// before it, so each period holds exactly the UUIDv7 values created in it.
pub fn bound_literal(key: KeyType, tz: Tz, local: NaiveDateTime) -> String {
    match key {
        KeyType::Timestamptz => to_instant(tz, local).format("%Y-%m-%dT%H:%M:%S+00:00").to_string(),
        KeyType::Timestamp => local.format("%Y-%m-%dT%H:%M:%S").to_string(),
        KeyType::Date => local.format("%Y-%m-%d").to_string(),
        KeyType::EpochSeconds | KeyType::EpochMilliseconds | KeyType::EpochMicroseconds => {
            let micros = to_instant(tz, local).timestamp_micros();
            micros.div_euclid(key.micros_per_unit().expect("an epoch key")).to_string()
        }
        KeyType::Uuidv7 => {
            let ms = to_instant(tz, local).timestamp_millis().clamp(0, (1 << 48) - 1) as u64;
            let hex = format!("{ms:012x}");
            format!("{}-{}-0000-0000-000000000000", &hex[..8], &hex[8..])
        }
    }
}

/// The local time in `tz` a bound literal stands for (as `pg_get_expr` or [`bound_literal`]
/// writes it, quotes removed): the inverse of [`bound_literal`]. A UUID's time is its first 48
/// bits (milliseconds).
pub fn local_of_literal(key: KeyType, tz: Tz, text: &str) -> Option<NaiveDateTime> {
    let instant = |micros: i64| DateTime::<Utc>::from_timestamp_micros(micros).map(|t| to_local(tz, t));
    match key {
        KeyType::Timestamptz => {
            let t = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
                .or_else(|_| DateTime::parse_from_rfc3339(text))
                .ok()?;
            Some(to_local(tz, t.with_timezone(&Utc)))
        }
        KeyType::Timestamp => NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
            .ok(),
        KeyType::Date => NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0),
        KeyType::EpochSeconds | KeyType::EpochMilliseconds | KeyType::EpochMicroseconds => {
            instant(text.parse::<i64>().ok()?.checked_mul(key.micros_per_unit()?)?)
        }
        KeyType::Uuidv7 => {
            let hex: String = text.chars().filter(|c| *c != '-').take(12).collect();
            instant(i64::from_str_radix(&hex, 16).ok()?.checked_mul(1000)?)
        }
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
        assert_eq!(p.offset(5).offset(-5), p);
    }

    #[test]
    fn every_interval_names_keys_and_steps_its_periods() {
        // (interval, an instant inside, start, next start, name, display, Hive path)
        let cases = [
            (
                Interval::Day,
                "2026-12-06 13:00:00",
                "2026-12-06",
                "2026-12-07",
                "t_2026_12_06",
                "2026-12-06",
                "year=2026/month=12/day=06",
            ),
            (
                Interval::Day,
                "2026-12-31 23:59:59",
                "2026-12-31",
                "2027-01-01",
                "t_2026_12_31",
                "2026-12-31",
                "year=2026/month=12/day=31",
            ),
            (
                Interval::Day,
                "2028-02-29 00:00:00",
                "2028-02-29",
                "2028-03-01",
                "t_2028_02_29",
                "2028-02-29",
                "year=2028/month=02/day=29",
            ),
            // ISO weeks start on Monday; 2026-12-06 is a Sunday, in week 49 (Mon 11-30 .. Sun 12-06).
            (
                Interval::Week,
                "2026-12-06 23:00:00",
                "2026-11-30",
                "2026-12-07",
                "t_2026_w49",
                "2026-W49",
                "year=2026/week=49",
            ),
            // 2027-01-01 (a Friday) is in the last ISO week of 2026, week 53.
            (
                Interval::Week,
                "2027-01-01 00:00:00",
                "2026-12-28",
                "2027-01-04",
                "t_2026_w53",
                "2026-W53",
                "year=2026/week=53",
            ),
            // 2024-12-30 (a Monday) starts week 1 of ISO year 2025.
            (
                Interval::Week,
                "2024-12-31 00:00:00",
                "2024-12-30",
                "2025-01-06",
                "t_2025_w01",
                "2025-W01",
                "year=2025/week=01",
            ),
            (
                Interval::Month,
                "2026-02-14 00:00:00",
                "2026-02-01",
                "2026-03-01",
                "t_2026_02",
                "2026-02",
                "year=2026/month=02",
            ),
            (
                Interval::Quarter,
                "2026-12-06 00:00:00",
                "2026-10-01",
                "2027-01-01",
                "t_2026_q4",
                "2026-Q4",
                "year=2026/quarter=4",
            ),
            (
                Interval::Quarter,
                "2026-03-31 23:59:59",
                "2026-01-01",
                "2026-04-01",
                "t_2026_q1",
                "2026-Q1",
                "year=2026/quarter=1",
            ),
            (Interval::Year, "2026-07-01 00:00:00", "2026-01-01", "2027-01-01", "t_2026", "2026", "year=2026"),
        ];
        for (interval, at, start, next, name, shown, hive) in cases {
            let p = Period::containing(interval, local(at));
            let day = |s: &str| local(&format!("{s} 00:00:00"));
            assert_eq!((p.start(), p.end()), (day(start), day(next)), "{interval:?} {at}");
            assert_eq!(p.partition_name("t"), name);
            assert_eq!(p.to_string(), shown);
            assert_eq!(p.hive_path(), hive);
            // Stepping is exact both ways, and a period's end is the next one's start.
            assert_eq!(p.offset(1).start(), p.end());
            assert_eq!(p.offset(1).offset(-1), p);
            assert_eq!(Period::containing(interval, p.end()), p.offset(1));
            assert_eq!(Interval::of_range(Interval::Year, p.start(), p.end()), Some(interval));
        }
    }

    #[test]
    fn names_sort_in_time_order_within_each_interval() {
        for interval in Interval::ALL {
            let first = Period::containing(interval, local("2025-11-20 00:00:00"));
            let names: Vec<String> = (0..400).map(|i| first.offset(i).partition_name("t")).collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted, "{interval:?}");
        }
    }

    #[test]
    fn daily_bounds_on_dst_days_are_23_and_25_hours_apart() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let hours = |day: &str| {
            let p = Period::containing(Interval::Day, local(&format!("{day} 12:00:00")));
            (to_instant(ny, p.end()) - to_instant(ny, p.start())).num_hours()
        };
        assert_eq!(hours("2026-03-08"), 23); // clocks spring forward
        assert_eq!(hours("2026-11-01"), 25); // and fall back
        assert_eq!(hours("2026-11-02"), 24);
        let p = Period::containing(Interval::Day, local("2026-11-01 12:00:00"));
        assert_eq!(bound_literal(KeyType::Timestamptz, ny, p.start()), "2026-11-01T04:00:00+00:00");
        assert_eq!(bound_literal(KeyType::Timestamptz, ny, p.end()), "2026-11-02T05:00:00+00:00");
    }

    #[test]
    fn a_range_is_keyed_by_the_interval_it_is_one_period_of() {
        let day = |s: &str| local(&format!("{s} 00:00:00"));
        // The table's interval goes first; a month is never taken for a quarter or a year.
        assert_eq!(Interval::of_range(Interval::Day, day("2026-12-01"), day("2027-01-01")), Some(Interval::Month));
        assert_eq!(Interval::of_range(Interval::Month, day("2026-10-01"), day("2027-01-01")), Some(Interval::Quarter));
        assert_eq!(Interval::of_range(Interval::Month, day("2026-01-01"), day("2027-01-01")), Some(Interval::Year));
        assert_eq!(Interval::of_range(Interval::Week, day("2026-12-06"), day("2026-12-07")), Some(Interval::Day));
        // The remainder of a period after an interval change, or a foreign range: none.
        assert_eq!(Interval::of_range(Interval::Month, day("2026-12-14"), day("2027-01-01")), None);
    }

    #[test]
    fn bounds_are_exact_instants_with_offsets() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // March 1st is before the US DST switch (EST, -05:00); July 1st is in EDT (-04:00).
        assert_eq!(bound_literal(KeyType::Timestamptz, ny, local("2026-03-01 00:00:00")), "2026-03-01T05:00:00+00:00");
        assert_eq!(bound_literal(KeyType::Timestamptz, ny, local("2026-07-01 00:00:00")), "2026-07-01T04:00:00+00:00");
        assert_eq!(bound_literal(KeyType::Timestamp, ny, local("2026-07-01 00:00:00")), "2026-07-01T00:00:00");
        assert_eq!(bound_literal(KeyType::Date, ny, local("2026-07-01 00:00:00")), "2026-07-01");
        // Epoch keys: the instant in the key's unit; UUIDv7: the smallest UUID of the millisecond.
        // 2026-07-01 00:00 in New York is 2026-07-01T04:00:00Z = 1782878400 s.
        let july = local("2026-07-01 00:00:00");
        let cases = [
            (KeyType::EpochSeconds, "1782878400"),
            (KeyType::EpochMilliseconds, "1782878400000"),
            (KeyType::EpochMicroseconds, "1782878400000000"),
            (KeyType::Uuidv7, "019f1bd5-6e00-0000-0000-000000000000"),
        ];
        for (key, literal) in cases {
            assert_eq!(bound_literal(key, ny, july), literal, "{key:?}");
            assert_eq!(local_of_literal(key, ny, literal), Some(july), "{key:?}");
        }
        // Every literal reads back, for every key type.
        for key in [KeyType::Timestamptz, KeyType::Timestamp, KeyType::Date] {
            assert_eq!(local_of_literal(key, ny, &bound_literal(key, ny, july)), Some(july), "{key:?}");
        }
        // Sao Paulo skipped midnight on 2018-11-04: PostgreSQL reads 00:00 with the offset before the gap (-03).
        let sp: Tz = "America/Sao_Paulo".parse().unwrap();
        assert_eq!(to_instant(sp, local("2018-11-04 00:00:00")).to_rfc3339(), "2018-11-04T03:00:00+00:00");
        // Midnights that happen twice: PostgreSQL 15 reads them with the offset after the fall
        // back (`'2026-11-01 00:00'::timestamp AT TIME ZONE 'America/Havana'` is 05:00+00), so
        // the binary's bounds meet the SQL function's.
        for (zone, midnight, instant) in [
            ("America/Havana", "2026-11-01 00:00:00", "2026-11-01T05:00:00+00:00"),
            ("Atlantic/Azores", "2026-10-25 00:00:00", "2026-10-25T01:00:00+00:00"),
            ("America/New_York", "2026-11-01 01:30:00", "2026-11-01T06:30:00+00:00"),
        ] {
            let tz: Tz = zone.parse().unwrap();
            assert_eq!(to_instant(tz, local(midnight)).to_rfc3339(), instant, "{zone}");
        }
    }
}
