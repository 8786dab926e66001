//! What `restore --attach` changes in a restored table so that its parent, whose columns may have
//! changed since the archive, accepts it as a partition. Pure: the archive's columns, the parent's
//! columns now and the operator's `--drop-columns` in, the changes (or why there are none) out.
//!
//! Only changes that lose no value are made on the operator's behalf:
//! - a column the parent gained since is added with the parent's default (NULL without one), or
//!   with its generation expression; one that is `NOT NULL` without a default, or an identity
//!   column, has no value for the archived rows and is refused;
//! - a column whose type changed is converted when every value fits the new type
//!   ([`lossless`]: wider integers, integers to `numeric`, `real` to `double precision`, longer or
//!   unbounded `varchar`, `numeric` with room for every digit); any other change is refused;
//! - a column the parent no longer has is refused, naming it, unless the operator names it in
//!   `--drop-columns` (the archive keeps it);
//! - a column the parent made `NOT NULL` is set `NOT NULL` (PostgreSQL checks the rows).
//!
//! `restore` without `--attach` never reshapes: it gives the month exactly as archived. With it,
//! the same check runs before anything is loaded (a refusal then changes nothing) and again in
//! the attach's transaction.

use crate::plan::ident::{quote_ident, QualifiedName};

/// A column of the restored table, as the archive's manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedColumn {
    pub name: String,
    /// `format_type()` at archive time, e.g. `character varying(20)`.
    pub type_name: String,
    pub not_null: bool,
}

/// A column of the parent as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParentColumn {
    pub name: String,
    pub type_name: String,
    pub not_null: bool,
    /// The default expression (`pg_get_expr`), for a column that is not generated.
    pub default: Option<String>,
    /// The generation expression of a `GENERATED ALWAYS AS (...) STORED` column.
    pub generated: Option<String>,
    pub identity: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Drop { column: String },
    Retype { column: String, from: String, to: String },
    Add { column: String, type_name: String, not_null: bool, default: Option<String>, generated: Option<String> },
    SetNotNull { column: String },
}

impl Change {
    /// The statement for `table`. Names are quoted; types and expressions are the catalog's own
    /// text (`format_type`, `pg_get_expr`), never the operator's.
    pub fn sql(&self, table: &QualifiedName) -> String {
        let t = table.quoted();
        match self {
            Change::Drop { column } => format!("ALTER TABLE {t} DROP COLUMN {}", quote_ident(column)),
            Change::Retype { column, to, .. } => {
                format!("ALTER TABLE {t} ALTER COLUMN {} TYPE {to}", quote_ident(column))
            }
            Change::Add { column, type_name, not_null, default, generated } => {
                let value = match (generated, default) {
                    (Some(expr), _) => format!(" GENERATED ALWAYS AS ({expr}) STORED"),
                    (None, Some(expr)) => format!(" DEFAULT {expr}"),
                    (None, None) => String::new(),
                };
                let not_null = if *not_null { " NOT NULL" } else { "" };
                format!("ALTER TABLE {t} ADD COLUMN {} {type_name}{value}{not_null}", quote_ident(column))
            }
            Change::SetNotNull { column } => {
                format!("ALTER TABLE {t} ALTER COLUMN {} SET NOT NULL", quote_ident(column))
            }
        }
    }

    /// For the report: `added column venue (default 'XNAS'::text)`.
    pub fn describe(&self) -> String {
        match self {
            Change::Drop { column } => format!("dropped column {column} (the archive keeps it)"),
            Change::Retype { column, from, to } => format!("changed column {column} from {from} to {to}"),
            Change::Add { column, generated: Some(expr), .. } => format!("added column {column} (generated as {expr})"),
            Change::Add { column, default: Some(expr), .. } => format!("added column {column} (default {expr})"),
            Change::Add { column, .. } => format!("added column {column} (NULL)"),
            Change::SetNotNull { column } => format!("set column {column} NOT NULL"),
        }
    }
}

/// The changes that make a table with the `archived` columns attachable under a parent with the
/// `parent` columns, dropping the `drop` columns; or every reason it cannot be done.
pub fn reshape(archived: &[ArchivedColumn], parent: &[ParentColumn], drop: &[String]) -> Result<Vec<Change>, String> {
    let mut changes = Vec::new();
    let mut refused = Vec::new();
    for a in archived {
        match parent.iter().find(|p| p.name == a.name) {
            None if drop.contains(&a.name) => changes.push(Change::Drop { column: a.name.clone() }),
            None => refused.push(format!(
                "column {} is no longer in the parent (name it in --drop-columns to restore without it; the archive keeps it)",
                a.name
            )),
            Some(p) if drop.contains(&a.name) => {
                refused.push(format!("--drop-columns names {}, which the parent still has", p.name))
            }
            Some(p) if p.generated.is_some() => {
                refused.push(format!("column {} is generated in the parent but holds archived values", p.name))
            }
            Some(p) if p.type_name != a.type_name => {
                if lossless(&a.type_name, &p.type_name) {
                    changes.push(Change::Retype {
                        column: a.name.clone(),
                        from: a.type_name.clone(),
                        to: p.type_name.clone(),
                    });
                } else {
                    refused.push(format!(
                        "column {} is {} in the archive and {} in the parent: not converted, it could lose values",
                        a.name, a.type_name, p.type_name
                    ));
                }
            }
            Some(_) => {}
        }
    }
    for p in parent.iter().filter(|p| !archived.iter().any(|a| a.name == p.name)) {
        if p.identity {
            refused.push(format!(
                "column {} is an identity column added since the archive: the archived rows have no value for it",
                p.name
            ));
        } else if p.not_null && p.default.is_none() && p.generated.is_none() {
            refused.push(format!(
                "column {} is NOT NULL without a default in the parent: the archived rows have no value for it",
                p.name
            ));
        } else {
            changes.push(Change::Add {
                column: p.name.clone(),
                type_name: p.type_name.clone(),
                not_null: p.not_null,
                default: p.default.clone(),
                generated: p.generated.clone(),
            });
        }
    }
    // A column the parent made NOT NULL since (an added one gets it in its ADD COLUMN).
    for p in parent.iter().filter(|p| p.not_null && archived.iter().any(|a| a.name == p.name && !a.not_null)) {
        changes.push(Change::SetNotNull { column: p.name.clone() });
    }
    if refused.is_empty() {
        Ok(changes)
    } else {
        Err(refused.join("; "))
    }
}

/// Can every value of type `from` be held by type `to` unchanged? `format_type` spellings.
pub fn lossless(from: &str, to: &str) -> bool {
    let int_rank = |t: &str| match t {
        "smallint" => Some(1),
        "integer" => Some(2),
        "bigint" => Some(3),
        _ => None,
    };
    // (precision, scale) of `numeric(p,s)`; `None` for an unbounded `numeric`. Signed: PostgreSQL
    // 15 allows a scale above the precision, or below zero.
    let numeric = |t: &str| -> Option<Option<(i64, i64)>> {
        if t == "numeric" {
            return Some(None);
        }
        let inner = t.strip_prefix("numeric(")?.strip_suffix(')')?;
        let (p, s) = inner.split_once(',').unwrap_or((inner, "0"));
        Some(Some((p.trim().parse().ok()?, s.trim().parse().ok()?)))
    };
    let varchar = |t: &str| -> Option<Option<u32>> {
        match t {
            "character varying" | "text" => Some(None),
            _ => Some(Some(t.strip_prefix("character varying(")?.strip_suffix(')')?.parse().ok()?)),
        }
    };
    if let (Some(a), Some(b)) = (int_rank(from), int_rank(to)) {
        return a <= b;
    }
    if int_rank(from).is_some() {
        // An integer fits a numeric with at least as many integer digits (bigint has 19).
        return match numeric(to) {
            Some(None) => true,
            Some(Some((p, s))) => p - s >= [0, 5, 10, 19][int_rank(from).unwrap_or(3)],
            None => false,
        };
    }
    if from == "real" && to == "double precision" {
        return true;
    }
    if let (Some(a), Some(b)) = (numeric(from), numeric(to)) {
        return match (a, b) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some((p1, s1)), Some((p2, s2))) => s2 >= s1 && p2 - s2 >= p1 - s1,
        };
    }
    if let (Some(a), Some(b)) = (varchar(from), varchar(to)) {
        return match (a, b) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(n), Some(m)) => m >= n,
        };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archived(cols: &[(&str, &str, bool)]) -> Vec<ArchivedColumn> {
        cols.iter()
            .map(|(n, t, nn)| ArchivedColumn { name: n.to_string(), type_name: t.to_string(), not_null: *nn })
            .collect()
    }

    fn parent(name: &str, type_name: &str) -> ParentColumn {
        ParentColumn { name: name.into(), type_name: type_name.into(), ..Default::default() }
    }

    #[test]
    fn lossless_conversions_only() {
        for (from, to, ok) in [
            ("smallint", "integer", true),
            ("integer", "bigint", true),
            ("bigint", "integer", false),
            ("integer", "numeric", true),
            ("integer", "numeric(12,2)", true),
            ("integer", "numeric(10,2)", false),
            ("bigint", "numeric(19,0)", true),
            ("real", "double precision", true),
            ("double precision", "real", false),
            ("numeric(10,2)", "numeric(12,4)", true),
            ("numeric(10,2)", "numeric(12,1)", false),
            ("numeric(10,2)", "numeric(10,4)", false),
            ("numeric(10,2)", "numeric", true),
            // PostgreSQL 15 allows a scale above the precision: 0.00123 in numeric(3,5).
            ("numeric(3,5)", "numeric(10,6)", true),
            ("numeric(3,5)", "numeric(10,4)", false),
            ("numeric", "numeric(38,10)", false),
            ("character varying(10)", "character varying(20)", true),
            ("character varying(20)", "character varying(10)", false),
            ("character varying(10)", "text", true),
            ("text", "character varying", true),
            ("text", "character varying(100)", false),
            ("character(3)", "text", false),
            ("timestamp without time zone", "timestamp with time zone", false),
            ("integer", "text", false),
        ] {
            assert_eq!(lossless(from, to), ok, "{from} -> {to}");
        }
    }

    #[test]
    fn the_changes_that_lose_nothing_are_made_and_the_rest_refused() {
        let month = archived(&[("id", "bigint", true), ("qty", "integer", false), ("fee", "numeric(10,2)", false)]);
        let id = ParentColumn { not_null: true, ..parent("id", "bigint") };
        let venue = ParentColumn { not_null: true, default: Some("'XNAS'::text".into()), ..parent("venue", "text") };
        let total = ParentColumn { generated: Some("(qty * 2)".into()), ..parent("total", "bigint") };
        let note = parent("note", "text");

        // Unchanged parent: nothing to do.
        let same = [id.clone(), parent("qty", "integer"), parent("fee", "numeric(10,2)")];
        assert_eq!(reshape(&month, &same, &[]), Ok(vec![]));

        // Added columns (default, NULL, generated), a widened type, a dropped column named.
        let now = [id.clone(), parent("qty", "bigint"), venue.clone(), total, note];
        let changes = reshape(&month, &now, &["fee".to_string()]).unwrap();
        let described: Vec<String> = changes.iter().map(Change::describe).collect();
        assert_eq!(
            described,
            [
                "changed column qty from integer to bigint",
                "dropped column fee (the archive keeps it)",
                "added column venue (default 'XNAS'::text)",
                "added column total (generated as (qty * 2))",
                "added column note (NULL)",
            ]
        );
        let t = QualifiedName::new("archive_restore", "trades_2026_05");
        assert_eq!(changes[1].sql(&t), r#"ALTER TABLE "archive_restore"."trades_2026_05" DROP COLUMN "fee""#);
        assert_eq!(
            changes[2].sql(&t),
            r#"ALTER TABLE "archive_restore"."trades_2026_05" ADD COLUMN "venue" text DEFAULT 'XNAS'::text NOT NULL"#
        );

        // The dropped column not named: refused, naming it. Every reason is given at once.
        let refused = |parent: &[ParentColumn], drop: &[&str]| {
            let drop: Vec<String> = drop.iter().map(|s| s.to_string()).collect();
            reshape(&month, parent, &drop).unwrap_err()
        };
        let why = refused(&[id.clone(), parent("qty", "integer")], &[]);
        assert!(why.contains("column fee is no longer in the parent") && why.contains("--drop-columns"), "{why}");
        let why = refused(&[id.clone(), parent("qty", "smallint"), parent("fee", "text")], &[]);
        assert!(why.contains("column qty is integer in the archive and smallint in the parent"), "{why}");
        assert!(why.contains("column fee is numeric(10,2) in the archive and text"), "{why}");
        let strict = ParentColumn { not_null: true, ..parent("venue", "text") };
        let why = refused(&[id.clone(), parent("qty", "integer"), parent("fee", "numeric(10,2)"), strict], &[]);
        assert!(why.contains("column venue is NOT NULL without a default"), "{why}");
        let serial = ParentColumn { identity: true, not_null: true, ..parent("seq", "bigint") };
        let why = refused(&[id.clone(), parent("qty", "integer"), parent("fee", "numeric(10,2)"), serial], &[]);
        assert!(why.contains("column seq is an identity column"), "{why}");
        let why = refused(&[id.clone(), parent("qty", "integer"), parent("fee", "numeric(10,2)")], &["qty"]);
        assert!(why.contains("--drop-columns names qty, which the parent still has"), "{why}");

        // A column the parent made NOT NULL is set so (PostgreSQL then checks the rows).
        let now = [id, ParentColumn { not_null: true, ..parent("qty", "integer") }, parent("fee", "numeric(10,2)")];
        assert_eq!(reshape(&month, &now, &[]), Ok(vec![Change::SetNotNull { column: "qty".into() }]));
    }
}
