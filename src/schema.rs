//! Schema hints: declared field types, enforced on every write; undeclared fields pass.
//!
//! A schema is a JSON object of field name to type name, e.g.
//! `{"status": "string", "start_time": "timestamp", "turns": "integer"}`. A declared
//! field may be absent or `null`; when present it must have the declared type.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::error::{Error, Result};

/// The type of a declared field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// A JSON string.
    String,
    /// Any JSON number.
    Number,
    /// A JSON number without fraction or exponent.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A string holding an ISO 8601 / RFC 3339 date or date-time.
    Timestamp,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
}

impl FieldType {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "string" => Self::String,
            "number" => Self::Number,
            "integer" => Self::Integer,
            "boolean" => Self::Boolean,
            "timestamp" => Self::Timestamp,
            "object" => Self::Object,
            "array" => Self::Array,
            _ => return None,
        })
    }

    const fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Timestamp => "timestamp",
            Self::Object => "object",
            Self::Array => "array",
        }
    }

    /// Whether the raw JSON text of a value has this type (`null` always passes).
    fn admits(self, raw: &str) -> bool {
        let Some(first) = raw.bytes().next() else { return false };
        if raw == "null" {
            return true;
        }
        match self {
            Self::String => first == b'"',
            Self::Number => first == b'-' || first.is_ascii_digit(),
            Self::Integer => (first == b'-' || first.is_ascii_digit()) && !raw.contains(['.', 'e', 'E']),
            Self::Boolean => raw == "true" || raw == "false",
            Self::Object => first == b'{',
            Self::Array => first == b'[',
            Self::Timestamp => serde_json::from_str::<Cow<'_, str>>(raw).is_ok_and(|s| is_timestamp(&s)),
        }
    }
}

/// A table's declared fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    fields: BTreeMap<String, FieldType>,
}

impl Schema {
    /// Parses a schema from its JSON form.
    ///
    /// # Errors
    /// [`Error::InvalidSchema`] unless it is an object of field name to a known type.
    pub fn from_json(table: &str, json: &serde_json::Value) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidSchema { table: table.into(), reason };
        let serde_json::Value::Object(map) = json else {
            return Err(invalid("a schema is a JSON object of field name to type".into()));
        };
        let mut fields = BTreeMap::new();
        for (field, ty) in map {
            let ty = ty.as_str().and_then(FieldType::parse).ok_or_else(|| {
                invalid(format!(
                    "field {field:?} has type {ty}; known types: string, number, integer, boolean, timestamp, object, array"
                ))
            })?;
            fields.insert(field.clone(), ty);
        }
        Ok(Self { fields })
    }

    /// The schema's JSON form, as stored in PostgreSQL.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        self.fields.iter().map(|(f, t)| (f.clone(), serde_json::Value::from(t.name()))).collect()
    }

    /// Whether no field is declared (then nothing is checked).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Checks a serialised JSON object against the declared fields.
    ///
    /// # Errors
    /// [`Error::SchemaViolation`] naming the first field of the wrong type.
    pub fn check(&self, table: &str, key: &str, json: &[u8]) -> Result<()> {
        if self.fields.is_empty() {
            return Ok(());
        }
        let object: BTreeMap<Cow<'_, str>, &RawValue> = serde_json::from_slice(json)
            .map_err(|e| Error::InvalidValue { table: table.into(), key: key.into(), reason: e.to_string() })?;
        for (field, ty) in &self.fields {
            if let Some(raw) = object.get(field.as_str())
                && !ty.admits(raw.get())
            {
                return Err(Error::SchemaViolation {
                    table: table.into(),
                    key: key.into(),
                    field: field.clone(),
                    expected: ty.name(),
                    found: raw.get().chars().take(40).collect(),
                });
            }
        }
        Ok(())
    }
}

/// `YYYY-MM-DD`, optionally followed by `T` or a space, `HH:MM[:SS[.fraction]]` and an
/// optional `Z` or `±HH[:MM]` offset: what PostgreSQL's `timestamptz` input accepts in ISO form.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let date = digits(0..4) && b.get(4) == Some(&b'-') && digits(5..7) && b.get(7) == Some(&b'-') && digits(8..10);
    if !date || !in_range(b.get(5..7), 1, 12) || !in_range(b.get(8..10), 1, 31) {
        return false;
    }
    if b.len() == 10 {
        return true;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || !digits(11..13) || b.get(13) != Some(&b':') || !digits(14..16)
    {
        return false;
    }
    let mut i = 16;
    if b.get(i) == Some(&b':') {
        if !digits(i + 1..i + 3) {
            return false;
        }
        i += 3;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return false;
            }
        }
    }
    match b.get(i) {
        None => true,
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            let rest = b.len() - i - 1;
            digits(i + 1..i + 3) && (rest == 2 || (rest == 5 && b.get(i + 3) == Some(&b':') && digits(i + 4..i + 6)))
        }
        Some(_) => false,
    }
}

fn in_range(two_digits: Option<&[u8]>, lo: u8, hi: u8) -> bool {
    let n = two_digits.map(|d| d.iter().fold(0u8, |n, c| n.wrapping_mul(10).wrapping_add(c.wrapping_sub(b'0'))));
    n.is_some_and(|n| (lo..=hi).contains(&n))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn declared_fields_are_enforced_and_others_pass() {
        let schema = Schema::from_json(
            "calls",
            &json!({"status": "string", "start": "timestamp", "turns": "integer", "ok": "boolean", "score": "number", "tags": "array", "meta": "object"}),
        )
        .expect("schema");
        let ok = json!({"status": "up", "start": "2026-11-26T03:17:00Z", "turns": 3, "ok": true, "score": 1.5,
                        "tags": [], "meta": {}, "undeclared": [1, 2]});
        assert!(schema.check("calls", "k", &serde_json::to_vec(&ok).expect("json")).is_ok());
        assert!(schema.check("calls", "k", br#"{"status": null}"#).is_ok(), "null passes");
        assert!(schema.check("calls", "k", b"{}").is_ok(), "absent passes");
        for bad in [
            json!({"status": 1}),
            json!({"turns": 1.5}),
            json!({"start": "yesterday"}),
            json!({"ok": "yes"}),
            json!({"score": "1"}),
            json!({"tags": {}}),
            json!({"meta": []}),
        ] {
            let err = schema.check("calls", "k", &serde_json::to_vec(&bad).expect("json")).expect_err("violation");
            assert!(matches!(err, Error::SchemaViolation { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_types_and_non_objects_are_refused() {
        assert!(Schema::from_json("t", &json!({"a": "str"})).is_err());
        assert!(Schema::from_json("t", &json!(["a"])).is_err());
        let schema = Schema::from_json("t", &json!({"a": "integer"})).expect("schema");
        assert_eq!(Schema::from_json("t", &schema.to_json()).expect("round trip"), schema);
    }

    #[test]
    fn timestamps_in_iso_form() {
        for ok in [
            "2026-11-26",
            "2026-11-26T03:17",
            "2026-11-26 03:17:00",
            "2026-11-26T03:17:00.123456Z",
            "2026-11-26T03:17:00+01:00",
            "2026-11-26T03:17:00-05",
        ] {
            assert!(is_timestamp(ok), "{ok}");
        }
        for bad in
            ["", "2026-13-01", "2026-11-26T", "26-11-2026", "2026-11-26T03:17:00.Z", "2026-11-26T03:17:00+1", "now"]
        {
            assert!(!is_timestamp(bad), "{bad}");
        }
    }
}
