//! Records as the API hands them out: JSON text shared without copying.

use crate::text::Text;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A record's JSON text. Cloning it is a reference-count increment: reads never copy
/// or parse the record. Parse it with [`Json::to_value`] or [`Json::deserialize`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Json(pub(crate) Text);

impl Json {
    /// The JSON text (compact as written, or as PostgreSQL returned it).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the record into a `serde_json::Value`.
    ///
    /// # Panics
    /// Never: memdb only stores valid JSON objects.
    #[must_use]
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or_default()
    }

    /// Deserialises the record into `T`.
    ///
    /// # Errors
    /// The serde error when the record does not fit `T`.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<serde_json::Value> for Json {
    fn eq(&self, other: &serde_json::Value) -> bool {
        self.to_value() == *other
    }
}

/// A row returned by a query: the key and the record.
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// Serialises `value` as compact JSON straight into its shared form: through a buffer
/// kept per thread, so a write makes one allocation (the record's) and one copy.
pub(crate) fn serialize<T: Serialize + ?Sized>(value: &T) -> Result<Text, serde_json::Error> {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|buf| {
        // A value whose `Serialize` writes another record re-enters: give it a fresh buffer.
        let mut fresh = Vec::new();
        let mut borrowed = buf.try_borrow_mut();
        let buf = borrowed.as_deref_mut().unwrap_or(&mut fresh);
        buf.clear();
        serde_json::to_writer(&mut *buf, value)?;
        let text = std::str::from_utf8(buf).map_err(serde::ser::Error::custom)?;
        let shared = Text::from(text);
        if buf.capacity() > 1 << 20 {
            *buf = Vec::new(); // do not pin one huge record's buffer for the thread's life
        }
        Ok(shared)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
            let inner = serialize(&json!({"inner": true})).map_err(serde::ser::Error::custom)?;
            serializer.serialize_str(&inner)
        }
    }

    #[test]
    fn serialize_gives_compact_json_and_survives_reentry_and_huge_records() {
        assert_eq!(&*serialize(&json!({"a": 1, "b": [true, null]})).expect("json"), r#"{"a":1,"b":[true,null]}"#);
        let nested = serialize(&json!({"n": Nested})).expect("json");
        assert_eq!(&*nested, r#"{"n":"{\"inner\":true}"}"#);
        let huge = "x".repeat(3 << 20);
        assert_eq!(serialize(&json!({ "h": huge })).expect("json").len(), huge.len() + 8);
        assert_eq!(&*serialize(&json!({})).expect("json"), "{}", "the buffer is cleared between records");
    }
}
