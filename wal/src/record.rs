//! What a WAL record says: the operation, its table and key, the value bytes.
//!
//! The body of a frame is [`Entry`] encoded with rkyv; the LSN lives in the frame header.
//! The crate treats `value` as opaque bytes (the engine stores JSON text there).

use rkyv::rancor;
use rkyv::with::InlineAsBox;

/// A log sequence number: the position of a record in the log, strictly increasing by one.
pub type Lsn = u64;

/// What a record does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    /// Set `key` in `table` to `value`.
    Put = 1,
    /// Remove `key` from `table`; `value` is empty.
    Delete = 2,
    /// Create `table`; `value` holds its schema; `key` is empty.
    CreateTable = 3,
}

impl Op {
    /// The operation with this code, if it is one.
    #[must_use]
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Put),
            2 => Some(Self::Delete),
            3 => Some(Self::CreateTable),
            _ => None,
        }
    }
}

/// A record to append: borrowed, so appending copies nothing but the encoded bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// What the record does.
    pub op: Op,
    /// The logical table.
    pub table: &'a str,
    /// The key within the table.
    pub key: &'a str,
    /// The value bytes (JSON text for the engine); empty for deletes.
    pub value: &'a [u8],
}

/// A record read back from the log, borrowing the bytes it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The record's LSN.
    pub lsn: Lsn,
    /// The record itself.
    pub entry: Entry<'a>,
}

/// A record read back from the log, owning its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The record's LSN.
    pub lsn: Lsn,
    /// What the record does.
    pub op: Op,
    /// The logical table.
    pub table: String,
    /// The key within the table.
    pub key: String,
    /// The value bytes.
    pub value: Vec<u8>,
}

impl Record {
    /// The record as an [`Entry`] to append elsewhere.
    #[must_use]
    pub fn entry(&self) -> Entry<'_> {
        Entry { op: self.op, table: &self.table, key: &self.key, value: &self.value }
    }
}

impl From<RecordRef<'_>> for Record {
    fn from(r: RecordRef<'_>) -> Self {
        Self {
            lsn: r.lsn,
            op: r.entry.op,
            table: r.entry.table.to_owned(),
            key: r.entry.key.to_owned(),
            value: r.entry.value.to_vec(),
        }
    }
}

/// The rkyv schema of a frame body (record-schema version [`crate::format::RECORD_VERSION`]).
#[derive(rkyv::Archive, rkyv::Serialize)]
struct Body<'a> {
    op: u8,
    #[rkyv(with = InlineAsBox)]
    table: &'a str,
    #[rkyv(with = InlineAsBox)]
    key: &'a str,
    #[rkyv(with = InlineAsBox)]
    value: &'a [u8],
}

/// Appends the encoded body of `entry` to `out`.
pub(crate) fn encode_body(entry: &Entry<'_>, out: Vec<u8>) -> Vec<u8> {
    let body = Body { op: entry.op as u8, table: entry.table, key: entry.key, value: entry.value };
    match rkyv::api::high::to_bytes_in::<_, rancor::Panic>(&body, out) {
        Ok(bytes) => bytes,
    }
}

/// Decodes a body whose checksum has been verified; validation (bytecheck) still runs,
/// so a body that is not a well-formed [`Entry`] is `None`, never undefined behaviour.
pub(crate) fn decode_body(bytes: &[u8]) -> Option<Entry<'_>> {
    let body = rkyv::access::<ArchivedBody<'_>, rancor::Failure>(bytes).ok()?;
    Some(Entry { op: Op::from_code(body.op)?, table: body.table.get(), key: body.key.get(), value: body.value.get() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trips() {
        let entry = Entry { op: Op::Put, table: "calls", key: "c:1", value: br#"{"a":1}"# };
        let bytes = encode_body(&entry, Vec::new());
        assert_eq!(decode_body(&bytes), Some(entry));
    }

    #[test]
    fn unknown_op_is_rejected() {
        let entry = Entry { op: Op::Delete, table: "t", key: "k", value: b"" };
        let mut bytes = encode_body(&entry, Vec::new());
        let pos = bytes.iter().position(|&b| b == Op::Delete as u8).expect("op byte");
        bytes[pos] = 99;
        assert_eq!(decode_body(&bytes), None);
    }
}
