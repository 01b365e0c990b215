//! Records as the API hands them out: JSON text shared without copying.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::record::Record;

/// A record's JSON text. Cloning it is a reference-count increment: reads never copy
/// or parse the record. Parse it with [`Json::to_value`] or [`Json::deserialize`].
#[derive(Clone)]
pub struct Json(Record);

impl Json {
    /// Wraps a live record (one with a value; tombstones are never handed out).
    pub(crate) fn new(record: Record) -> Self {
        debug_assert!(!record.is_tombstone());
        Self(record)
    }

    /// A record that does not exist yet in memory: built from its key and JSON text.
    pub(crate) fn put(key: &str, json: &str) -> Self {
        Self(Record::put(key, json))
    }

    /// The JSON text (compact as written, or as PostgreSQL returned it).
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only live records are wrapped (see `Json::new`), so the fallback is unused.
        self.0.value().unwrap_or("{}")
    }

    /// Parses the record into a `serde_json::Value`.
    ///
    /// # Panics
    /// Never: memdb only stores valid JSON objects.
    #[must_use]
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.as_str()).unwrap_or_default()
    }

    /// Deserialises the record into `T`.
    ///
    /// # Errors
    /// The serde error when the record does not fit `T`.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.as_str())
    }

    /// [`Json::deserialize`] of the record `table/key`, its error as memdb's.
    pub(crate) fn deserialize_in<T: DeserializeOwned>(&self, table: &str, key: &str) -> crate::Result<T> {
        self.deserialize().map_err(|source| crate::Error::Deserialize {
            table: table.into(),
            key: key.into(),
            lsn: 0,
            source,
        })
    }
}

/// Serialises as the JSON object it holds (parsed once, so any serde format gets the
/// object's structure, not a string).
impl Serialize for Json {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Json {}

impl Hash for Json {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<serde_json::Value> for Json {
    fn eq(&self, other: &serde_json::Value) -> bool {
        self.to_value() == *other
    }
}

/// A row returned by a query: the key and the record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The record's key.
    pub key: String,
    /// The record.
    pub data: Json,
}

/// Applies an RFC 7396 JSON merge patch to `target`.
pub(crate) fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    if let serde_json::Value::Object(map) = target {
        for (name, value) in fields {
            if value.is_null() {
                map.remove(name);
            } else {
                merge_patch(map.entry(name.clone()).or_insert(serde_json::Value::Null), value);
            }
        }
    }
}

/// Serialises `value` as compact JSON straight into the record of `key`: one
/// allocation (the record's) and no copy of the value but the serialiser's own.
pub(crate) fn serialize<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Record, serde_json::Error> {
    Record::put_with(key, |buf| serde_json::to_writer(buf, value), serde::ser::Error::custom)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn records_and_rows_serialise_as_the_objects_they_hold() {
        let record = Json::put("call:1", r#"{"status":"up","turns":3,"tags":["a"]}"#);
        let expected = json!({"status": "up", "turns": 3, "tags": ["a"]});
        assert_eq!(serde_json::to_value(&record).expect("serialise"), expected, "an object, not a string");
        let row = Row { key: "call:1".into(), data: record };
        assert_eq!(serde_json::to_value(&row).expect("serialise"), json!({"key": "call:1", "data": expected}));
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
        let mut doc = json!({"a": [1]});
        merge_patch(&mut doc, &json!({"a": {"b": 1}, "n": null}));
        assert_eq!(doc, json!({"a": {"b": 1}}));
    }

    /// Serialises, in the middle of its own serialisation, another record.
    struct Nested;

    impl Serialize for Nested {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let inner = serialize("i", &json!({"inner": true})).map_err(serde::ser::Error::custom)?;
            serializer.serialize_str(inner.value().unwrap_or_default())
        }
    }

    fn json_of(value: &serde_json::Value) -> String {
        let record = serialize("k", value).expect("json");
        assert_eq!(record.key(), "k");
        record.value().expect("a value").to_owned()
    }

    #[test]
    fn serialize_gives_compact_json_and_survives_reentry_and_huge_records() {
        assert_eq!(json_of(&json!({"a": 1, "b": [true, null]})), r#"{"a":1,"b":[true,null]}"#);
        assert_eq!(json_of(&json!({"n": Nested})), r#"{"n":"{\"inner\":true}"}"#);
        let huge = "x".repeat(3 << 20);
        assert_eq!(json_of(&json!({ "h": huge })).len(), huge.len() + 8);
        assert_eq!(json_of(&json!({})), "{}", "the buffer is cleared between records");
    }
}
