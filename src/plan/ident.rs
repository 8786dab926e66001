//! PostgreSQL identifiers: parsing what a user typed, and quoting for SQL.
//!
//! Identifiers cannot be bind parameters, so every name that reaches SQL text goes through
//! [`quote_ident`] (`postgres-protocol`'s escaping: wrap in `"` and double any `"`). Names are
//! parsed the way PostgreSQL reads them: unquoted parts are folded to lower case, quoted parts are
//! taken as written.

use serde::{Serialize, Serializer};
use std::fmt;

/// PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
pub const MAX_IDENT_BYTES: usize = 63;

/// Quotes an identifier for SQL text.
pub fn quote_ident(ident: &str) -> String {
    postgres_protocol::escape::escape_identifier(ident)
}

/// Quotes a string literal for SQL text (for DDL, where bind parameters are not allowed).
pub fn quote_literal(value: &str) -> String {
    postgres_protocol::escape::escape_literal(value)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    #[error("empty identifier in {0:?}")]
    Empty(String),
    #[error("identifier {0:?} is longer than {MAX_IDENT_BYTES} bytes")]
    TooLong(String),
    #[error("identifier {0:?} contains a control character")]
    ControlChar(String),
    #[error(
        "{0:?} is not a valid identifier: unquoted names are letters, digits, _ and $ (quote other names with \")"
    )]
    Invalid(String),
    #[error("unterminated quoted identifier in {0:?}")]
    Unterminated(String),
    #[error("{0:?} has more than two parts: expected table or schema.table")]
    TooManyParts(String),
}

/// Validates a single, already-unquoted identifier (a column or schema name from configuration).
pub fn validate_ident(ident: &str) -> Result<(), IdentError> {
    if ident.is_empty() {
        return Err(IdentError::Empty(ident.into()));
    }
    if ident.len() > MAX_IDENT_BYTES {
        return Err(IdentError::TooLong(ident.into()));
    }
    if ident.chars().any(char::is_control) {
        return Err(IdentError::ControlChar(ident.into()));
    }
    Ok(())
}

/// A schema-qualified relation name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QualifiedName {
    pub schema: String,
    pub name: String,
}

impl QualifiedName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self { schema: schema.into(), name: name.into() }
    }

    /// Parses `table`, `schema.table`, `"Odd Schema"."odd.table"`; the schema defaults to `public`.
    pub fn parse(input: &str) -> Result<Self, IdentError> {
        let parts = split_parts(input)?;
        match parts.as_slice() {
            [name] => Ok(Self::new("public", name.clone())),
            [schema, name] => Ok(Self::new(schema.clone(), name.clone())),
            _ => Err(IdentError::TooManyParts(input.into())),
        }
    }

    /// The name quoted for SQL text: `"schema"."name"`.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// A sibling relation in the same schema.
    pub fn sibling(&self, name: impl Into<String>) -> Self {
        Self::new(self.schema.clone(), name)
    }
}

impl fmt::Display for QualifiedName {
    /// `schema.name`, with parts quoted only where PostgreSQL would need it to read them back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", display_part(&self.schema), display_part(&self.name))
    }
}

impl Serialize for QualifiedName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn display_part(part: &str) -> String {
    let plain = part.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        part.to_string()
    } else {
        quote_ident(part)
    }
}

fn split_parts(input: &str) -> Result<Vec<String>, IdentError> {
    let mut parts = Vec::new();
    let mut chars = input.trim().chars().peekable();
    if chars.peek().is_none() {
        return Err(IdentError::Empty(input.into()));
    }
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(IdentError::Unterminated(input.into())),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if !(c.is_alphanumeric() || c == '_' || c == '$') {
                    return Err(IdentError::Invalid(input.into()));
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
            if part.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '$') {
                return Err(IdentError::Invalid(input.into()));
            }
        }
        validate_ident(&part).map_err(|e| match e {
            IdentError::Empty(_) => IdentError::Empty(input.into()),
            other => other,
        })?;
        parts.push(part);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(_) => return Err(IdentError::Invalid(input.into())),
        }
    }
}

impl From<IdentError> for crate::error::Error {
    fn from(e: IdentError) -> Self {
        Self::invalid(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_like_postgres() {
        type Expected = Result<(&'static str, &'static str), ()>;
        let cases: &[(&str, Expected)] = &[
            ("trades", Ok(("public", "trades"))),
            ("public.trades", Ok(("public", "trades"))),
            ("Sales.Orders", Ok(("sales", "orders"))),
            (r#""Sales"."Big Orders""#, Ok(("Sales", "Big Orders"))),
            (r#"public."x; drop table trades""#, Ok(("public", "x; drop table trades"))),
            (r#"public."a""b""#, Ok(("public", "a\"b"))),
            ("a.b.c", Err(())),
            ("", Err(())),
            ("public.", Err(())),
            ("x; drop table trades", Err(())),
            ("1abc", Err(())),
            (r#"public."unterminated"#, Err(())),
            ("\"tab\tname\"", Err(())),
            (&"x".repeat(64), Err(())),
        ];
        for (input, expected) in cases {
            let got = QualifiedName::parse(input).map(|q| (q.schema, q.name));
            match expected {
                Ok((s, n)) => {
                    assert_eq!(got, Ok((s.to_string(), n.to_string())), "input {input:?}")
                }
                Err(()) => assert!(got.is_err(), "input {input:?} should fail, got {got:?}"),
            }
        }
    }

    #[test]
    fn quotes_for_sql_and_displays_readably() {
        let q = QualifiedName::new("public", "x\"; drop table trades; --");
        assert_eq!(q.quoted(), r#""public"."x""; drop table trades; --""#);
        assert_eq!(QualifiedName::new("public", "trades").to_string(), "public.trades");
        assert_eq!(QualifiedName::new("Sales", "t").to_string(), r#""Sales".t"#);
        assert_eq!(quote_literal("it's"), "'it''s'");
        // round trip through Display and parse
        for q in [QualifiedName::new("A b", "c\"d"), QualifiedName::new("s", "t_1")] {
            assert_eq!(QualifiedName::parse(&q.to_string()).unwrap(), q);
        }
    }
}
