//! Cold storage is a normal state of an archive (invariant 8): which objects S3 serves now, and
//! the retrieval request for those it does not. Pure decisions over what a HEAD says (storage
//! class, `x-amz-restore`, Intelligent-Tiering archive status) and the settings; the requests
//! themselves are [`crate::archive::store`]'s.
//!
//! - STANDARD, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING's access tiers, GLACIER_IR (and the
//!   other instantly readable classes): GET works now.
//! - GLACIER (Flexible Retrieval), DEEP_ARCHIVE, INTELLIGENT_TIERING's ARCHIVE_ACCESS and
//!   DEEP_ARCHIVE_ACCESS tiers: GET fails with `InvalidObjectState` until a `RestoreObject` has
//!   finished (hours in AWS); then a temporary copy is readable for the days requested
//!   (Intelligent-Tiering instead moves the object back to its frequent tier, and takes no days).
//! - Anything else is refused by name: a class this tool does not know is not guessed at.

use crate::error::ConfigError;
use serde::Serialize;

/// The retrieval tier of a `RestoreObject` request (`RESTORE_RETRIEVAL_TIER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Tier {
    Standard,
    Bulk,
    Expedited,
}

impl Tier {
    /// The S3 name (`Standard`) or its lower case.
    pub fn parse(s: &str) -> Option<Self> {
        let named = |t: &Self| t.as_str() == s || t.as_str().to_lowercase() == s;
        [Self::Standard, Self::Bulk, Self::Expedited].into_iter().find(named)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "Standard",
            Self::Bulk => "Bulk",
            Self::Expedited => "Expedited",
        }
    }
}

/// How archived objects are brought back: tier and the days a restored copy stays readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RetrievalSettings {
    pub tier: Tier,
    pub days: u32,
}

/// A restored copy is billed as STANDARD storage for each of its days: a week is enough to restore
/// (or re-run a restore) and keeps a forgotten copy cheap.
pub const DEFAULT_DAYS: u32 = 7;
/// At most a year: longer, and the copy costs more than the cold storage saved.
pub const MAX_DAYS: u32 = 365;

impl Default for RetrievalSettings {
    fn default() -> Self {
        Self { tier: Tier::Standard, days: DEFAULT_DAYS }
    }
}

impl RetrievalSettings {
    /// `RESTORE_RETRIEVAL_TIER` (Standard, Bulk, Expedited; default Standard) and
    /// `RESTORE_RETRIEVAL_DAYS` (1-365; default 7).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let tier = match get("RESTORE_RETRIEVAL_TIER") {
            None => Tier::Standard,
            Some(t) => Tier::parse(&t)
                .ok_or_else(|| ConfigError::invalid("RESTORE_RETRIEVAL_TIER", &t, "Standard, Bulk or Expedited"))?,
        };
        let days = match get("RESTORE_RETRIEVAL_DAYS") {
            None => DEFAULT_DAYS,
            Some(d) => d.trim().parse::<u32>().ok().filter(|n| (1..=MAX_DAYS).contains(n)).ok_or_else(|| {
                ConfigError::invalid("RESTORE_RETRIEVAL_DAYS", &d, "a whole number of days from 1 to 365")
            })?,
        };
        Ok(Self { tier, days })
    }
}

/// What a HEAD says about reading an object now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// GET works now: an instantly readable class, or a restored copy of an archived object.
    Readable,
    /// An archived object whose retrieval is running.
    InProgress,
    /// An archived object with no readable copy and no retrieval running.
    Archived,
}

/// Is the class (and Intelligent-Tiering archive status) one whose GET waits for a retrieval?
/// `Err` names a class or status this tool does not know.
pub fn is_archived(storage_class: Option<&str>, archive_status: Option<&str>) -> Result<bool, String> {
    let archived = match storage_class.unwrap_or("STANDARD") {
        "STANDARD" | "REDUCED_REDUNDANCY" | "STANDARD_IA" | "ONEZONE_IA" | "GLACIER_IR" | "EXPRESS_ONEZONE"
        | "OUTPOSTS" | "SNOW" => false,
        "GLACIER" | "DEEP_ARCHIVE" => true,
        "INTELLIGENT_TIERING" => match archive_status {
            None => false,
            Some("ARCHIVE_ACCESS" | "DEEP_ARCHIVE_ACCESS") => true,
            Some(other) => return Err(format!("unknown Intelligent-Tiering archive status {other:?}")),
        },
        other => return Err(format!("unknown storage class {other:?}")),
    };
    Ok(archived)
}

/// Whether the object can be read now, from its storage class, archive status and `x-amz-restore`.
pub fn access(
    storage_class: Option<&str>,
    archive_status: Option<&str>,
    restore: Option<&str>,
) -> Result<Access, String> {
    if !is_archived(storage_class, archive_status)? {
        return Ok(Access::Readable);
    }
    Ok(match restore.map(|r| r.replace(' ', "")) {
        Some(r) if r.contains("ongoing-request=\"true\"") => Access::InProgress,
        Some(r) if r.contains("ongoing-request=\"false\"") => Access::Readable,
        _ => Access::Archived,
    })
}

/// Deep Archive, as a class or as Intelligent-Tiering's deepest tier: retrieval takes up to 12
/// hours (Standard) or 48 (Bulk), and Expedited is not offered.
fn is_deep(storage_class: Option<&str>, archive_status: Option<&str>) -> bool {
    storage_class == Some("DEEP_ARCHIVE") || archive_status == Some("DEEP_ARCHIVE_ACCESS")
}

/// The `RestoreObject` parameters for an archived object: the tier, and the days the copy stays
/// (`None` for Intelligent-Tiering, whose archive tiers take none). `Err` when S3 does not offer
/// the configured tier for that class.
pub fn request_for(
    storage_class: Option<&str>,
    archive_status: Option<&str>,
    settings: RetrievalSettings,
) -> Result<(Tier, Option<u32>), String> {
    if is_deep(storage_class, archive_status) && settings.tier == Tier::Expedited {
        return Err("Expedited retrieval is not offered for Deep Archive: set RESTORE_RETRIEVAL_TIER to Standard \
                    (within 12 hours) or Bulk (within 48 hours)"
            .into());
    }
    let days = if storage_class == Some("INTELLIGENT_TIERING") { None } else { Some(settings.days) };
    Ok((settings.tier, days))
}

/// A restore that must wait for S3: what the caller is told (JSON `"pending"`, CLI exit code 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    /// `requested` (this call started the retrieval) or `in_progress` (one was already running).
    pub retrieval: &'static str,
    pub tier: Tier,
    pub storage_class: String,
    /// `s3://bucket/key` of the object waited for.
    pub object: String,
    /// Days the restored copy stays readable (none for Intelligent-Tiering).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    pub message: String,
}

impl Pending {
    /// `started`: this call sent the request (else one was already running, maybe with another
    /// tier than the configured one).
    pub fn new(
        started: bool,
        tier: Tier,
        storage_class: &str,
        archive_status: Option<&str>,
        object: String,
        days: Option<u32>,
    ) -> Self {
        let hours = match (is_deep(Some(storage_class), archive_status), tier) {
            (false, Tier::Expedited) => "1-5 minutes",
            (true, Tier::Standard) => "up to 12 hours",
            (true, _) => "up to 48 hours",
            (false, Tier::Standard) => "3-5 hours",
            (false, Tier::Bulk) => "5-12 hours",
        };
        let what = if started {
            format!("retrieval requested ({} tier, {hours})", tier.as_str())
        } else {
            "a retrieval requested earlier is in progress".to_string()
        };
        let class = archive_status.map_or_else(|| storage_class.to_string(), |s| format!("{storage_class} ({s})"));
        Self {
            retrieval: if started { "requested" } else { "in_progress" },
            tier,
            storage_class: storage_class.to_string(),
            message: format!(
                "{object} is in {class}: {what}; nothing was changed. Run restore again later (or restore --wait)"
            ),
            object,
            days,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (storage class, archive status, x-amz-restore, expected access or error fragment)
    type Case<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, Result<Access, &'a str>);

    #[test]
    fn access_by_class_status_and_restore_header() {
        let done = Some(r#"ongoing-request="false", expiry-date="Fri, 23 Dec 2026 00:00:00 GMT""#);
        let running = Some(r#"ongoing-request="true""#);
        let cases: &[Case] = &[
            (None, None, None, Ok(Access::Readable)),
            (Some("STANDARD"), None, None, Ok(Access::Readable)),
            (Some("STANDARD_IA"), None, None, Ok(Access::Readable)),
            (Some("GLACIER_IR"), None, None, Ok(Access::Readable)),
            (Some("INTELLIGENT_TIERING"), None, None, Ok(Access::Readable)),
            (Some("GLACIER"), None, None, Ok(Access::Archived)),
            (Some("DEEP_ARCHIVE"), None, None, Ok(Access::Archived)),
            (Some("DEEP_ARCHIVE"), None, running, Ok(Access::InProgress)),
            (Some("DEEP_ARCHIVE"), None, done, Ok(Access::Readable)),
            (Some("GLACIER"), None, Some(r#"ongoing-request = "true""#), Ok(Access::InProgress)),
            (Some("INTELLIGENT_TIERING"), Some("ARCHIVE_ACCESS"), None, Ok(Access::Archived)),
            (Some("INTELLIGENT_TIERING"), Some("DEEP_ARCHIVE_ACCESS"), running, Ok(Access::InProgress)),
            (Some("INTELLIGENT_TIERING"), Some("FROZEN"), None, Err("unknown Intelligent-Tiering archive status")),
            (Some("MOON_STORAGE"), None, None, Err("unknown storage class \"MOON_STORAGE\"")),
        ];
        for (class, status, restore, want) in cases {
            let got = access(*class, *status, *restore);
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(w, g, "{class:?} {status:?} {restore:?}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "{class:?} {status:?}: {g}"),
                _ => panic!("{class:?} {status:?} {restore:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn requests_by_class_and_tier() {
        let s = |tier| RetrievalSettings { tier, days: 3 };
        assert_eq!(request_for(Some("GLACIER"), None, s(Tier::Expedited)), Ok((Tier::Expedited, Some(3))));
        assert_eq!(request_for(Some("DEEP_ARCHIVE"), None, s(Tier::Bulk)), Ok((Tier::Bulk, Some(3))));
        assert_eq!(
            request_for(Some("INTELLIGENT_TIERING"), Some("ARCHIVE_ACCESS"), s(Tier::Standard)),
            Ok((Tier::Standard, None))
        );
        for (class, status) in
            [(Some("DEEP_ARCHIVE"), None), (Some("INTELLIGENT_TIERING"), Some("DEEP_ARCHIVE_ACCESS"))]
        {
            let e = request_for(class, status, s(Tier::Expedited)).unwrap_err();
            assert!(e.contains("RESTORE_RETRIEVAL_TIER"), "{e}");
        }
    }

    #[test]
    fn settings_defaults_and_bad_values() {
        let parse = |pairs: &[(&str, &str)]| RetrievalSettings::from_lookup(&crate::error::lookup_of(pairs));
        assert_eq!(parse(&[]).unwrap(), RetrievalSettings { tier: Tier::Standard, days: 7 });
        assert_eq!(
            parse(&[("RESTORE_RETRIEVAL_TIER", "Bulk"), ("RESTORE_RETRIEVAL_DAYS", "30")]).unwrap(),
            RetrievalSettings { tier: Tier::Bulk, days: 30 }
        );
        for (key, value) in [
            ("RESTORE_RETRIEVAL_TIER", "Fast"),
            ("RESTORE_RETRIEVAL_TIER", ""),
            ("RESTORE_RETRIEVAL_DAYS", "0"),
            ("RESTORE_RETRIEVAL_DAYS", "-3"),
            ("RESTORE_RETRIEVAL_DAYS", "366"),
            ("RESTORE_RETRIEVAL_DAYS", "seven"),
        ] {
            let e = parse(&[(key, value)]).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(&format!("{value:?}")), "{key}={value}: {e}");
        }
    }
}
