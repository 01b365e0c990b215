//! Validation before anything is written: table names, keys, values.
//!
//! ⚑ Everything PostgreSQL would reject (NUL in text, `\u0000` in jsonb, identifiers
//! over 63 bytes) is refused here, before the WAL, or one record would block the flush
//! forever. Table names are the only identifiers spliced into SQL, and only after
//! passing [`table_name`].

use crate::error::{Error, Result};

/// Prefix of every PostgreSQL table memdb owns.
pub const TABLE_PREFIX: &str = "memdb_";
/// Suffix of a table's GIN index: the longest name memdb derives from a table name.
pub const INDEX_SUFFIX: &str = "_data_gin";
/// PostgreSQL's identifier limit in bytes (longer ones are silently truncated).
const PG_IDENTIFIER_MAX: usize = 63;
/// The longest table name: prefix + name + suffix must fit an identifier.
pub const MAX_TABLE_NAME: usize = PG_IDENTIFIER_MAX - TABLE_PREFIX.len() - INDEX_SUFFIX.len();
/// The longest key in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Checks a logical table name: `^[a-z_][a-z0-9_]*$`, at most [`MAX_TABLE_NAME`] bytes.
///
/// # Errors
/// [`Error::InvalidTableName`] saying why.
pub fn table_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_TABLE_NAME {
        Some("it is longer than 48 bytes (PostgreSQL identifiers hold 63, with memdb's prefix and index suffix)")
    } else if !name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_') {
        Some("it must start with a lowercase letter or an underscore")
    } else if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        Some("only lowercase ASCII letters, digits and underscores are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidTableName { name: name.chars().take(80).collect(), reason }),
        None => Ok(()),
    }
}

/// Checks the PostgreSQL schema name (`MEMDB_SCHEMA`): `^[a-z_][a-z0-9_]*$`, at most 63
/// bytes, not a system schema.
///
/// # Errors
/// Why it cannot be used.
pub(crate) fn schema_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() || name.len() > PG_IDENTIFIER_MAX {
        Err("a schema name is 1 to 63 bytes")
    } else if !name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_') {
        Err("a schema name starts with a lowercase letter or an underscore")
    } else if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        Err("only lowercase ASCII letters, digits and underscores are allowed in a schema name")
    } else if name.starts_with("pg_") || name == "information_schema" {
        Err("pg_* and information_schema are PostgreSQL's own schemas")
    } else {
        Ok(())
    }
}

/// Checks a key: non-empty, at most [`MAX_KEY_BYTES`], no NUL.
///
/// # Errors
/// [`Error::InvalidKey`] saying why.
pub fn key(key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        Some("it is empty")
    } else if key.len() > MAX_KEY_BYTES {
        Some("it is longer than 1024 bytes")
    } else if key.contains('\0') {
        Some("it holds a NUL character, which PostgreSQL text cannot store")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidKey { key: key.chars().take(64).collect(), reason }),
        None => Ok(()),
    }
}

/// Checks serialised JSON: an object, within `max` bytes, and no `\u0000` escape
/// anywhere (PostgreSQL's jsonb rejects it). Serde never emits a raw NUL byte.
///
/// # Errors
/// [`Error::InvalidValue`] or [`Error::RecordTooLarge`].
pub fn value(table: &str, key: &str, json: &[u8], max: usize) -> Result<()> {
    if json.len() > max {
        return Err(Error::RecordTooLarge { table: table.into(), key: key.into(), size: json.len(), max });
    }
    if json.first() != Some(&b'{') {
        return Err(invalid(table, key, "a record must be a JSON object"));
    }
    if has_nul_escape(json) {
        return Err(invalid(table, key, "it holds \\u0000, which PostgreSQL's jsonb cannot store"));
    }
    Ok(())
}

fn invalid(table: &str, key: &str, reason: &str) -> Error {
    Error::InvalidValue { table: table.into(), key: key.into(), reason: reason.into() }
}

/// Whether serialised JSON holds the escape `\u0000` (not `\\u0000`, an escaped
/// backslash followed by text). One pass that only stops at backslashes.
fn has_nul_escape(json: &[u8]) -> bool {
    let mut i = 0;
    while let Some(found) = json.get(i..).and_then(|rest| memchr::memchr(b'\\', rest)) {
        let at = i + found;
        match json.get(at + 1) {
            Some(b'u') if json.get(at + 2..at + 6) == Some(b"0000") => return true,
            // Any escape is two characters at least: skip the escaped one.
            _ => i = at + 2,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_the_pattern_and_fit_postgres() {
        for ok in ["calls", "_x", "a1_b2", &"a".repeat(MAX_TABLE_NAME)] {
            assert!(table_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1a", "Calls", "a-b", "a b", "a;drop", "schema.table", "ä", &"a".repeat(MAX_TABLE_NAME + 1)] {
            assert!(table_name(bad).is_err(), "{bad}");
        }
        assert_eq!(TABLE_PREFIX.len() + MAX_TABLE_NAME + INDEX_SUFFIX.len(), 63);
    }

    #[test]
    fn keys_refuse_empty_long_and_nul() {
        assert!(key("call:1-a_b.c").is_ok());
        assert!(key("").is_err());
        assert!(key("a\0b").is_err());
        assert!(key(&"k".repeat(MAX_KEY_BYTES + 1)).is_err());
    }

    #[test]
    fn values_must_be_objects_without_nul_escapes() {
        assert!(value("t", "k", br#"{"a":"x"}"#, 100).is_ok());
        assert!(value("t", "k", br#"{"a":"\\u0000"}"#, 100).is_ok(), "an escaped backslash is text");
        assert!(value("t", "k", br#"{"a":"\u0000"}"#, 100).is_err());
        assert!(value("t", "k", br#"{"a":"\\\u0000"}"#, 100).is_err());
        assert!(value("t", "k", b"[1]", 100).is_err());
        assert!(value("t", "k", b"1", 100).is_err());
        assert!(matches!(value("t", "k", br#"{"a":1}"#, 3), Err(Error::RecordTooLarge { .. })));
    }
}
