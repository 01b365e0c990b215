//! The drill's protocol (one line per event, child to parent) and the parent's model of
//! acknowledged operations, against which every recovered state is checked.
//!
//! ⚑ Operations are sequential in the child: at most one is in flight (reported, not yet
//! acknowledged) when it dies, so a key's acceptable states after a kill are its last
//! acknowledged state and, if the in-flight operation was on that key, its result.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The drill's tables.
pub(crate) const TABLES: [&str; 2] = ["drill_a", "drill_b"];
/// Keys per table: few, so that keys are overwritten, patched and deleted often.
pub(crate) const KEYS: u64 = 24;

/// A key of the drill: (table, key).
pub(crate) type Key = (String, String);

/// Every key of the drill.
pub(crate) fn key_space() -> impl Iterator<Item = Key> {
    TABLES.iter().flat_map(|t| (0..KEYS).map(move |k| ((*t).to_owned(), key_name(k))))
}

pub(crate) fn key_name(k: u64) -> String {
    format!("k{k:02}")
}

/// An operation of the drill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Put,
    Patch,
    Delete,
}

impl Op {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::Patch => "patch",
            Self::Delete => "del",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Put, Self::Patch, Self::Delete].into_iter().find(|op| op.as_str() == s)
    }
}

/// One line from the child.
#[derive(Debug)]
pub(crate) enum Event {
    /// `O`: opened (recovery done).
    Opened,
    /// `R table key json|-`: the engine reads this key so.
    Read(Key, Option<Value>),
    /// `R table key ?`: the engine cannot read this key (it is not in memory and
    /// PostgreSQL is down).
    Unknown(Key),
    /// `E`: every key read; waiting for the parent's `go`.
    ReadsDone,
    /// `W n table key op json|-`: operation `n` starts.
    Intent {
        n: u64,
        key: Key,
        op: Op,
        arg: Option<Value>,
    },
    /// `A n json|-`: operation `n` is acknowledged, leaving the record so.
    Ack {
        n: u64,
        result: Option<Value>,
    },
    /// `F`, `f`: a flush to PostgreSQL starts, ends.
    FlushStart,
    FlushEnd,
    /// `P name`: a kill point was passed (`MEMDB_KILL_TRACE`).
    Point(String),
    /// `X message`: the child failed.
    Failed(String),
}

/// JSON or `-` for none, as one token (compact JSON of the drill's values has no spaces).
pub(crate) fn token(value: Option<&Value>) -> String {
    value.map_or_else(|| "-".to_owned(), Value::to_string)
}

fn json(token: &str) -> Result<Option<Value>, String> {
    if token == "-" { Ok(None) } else { serde_json::from_str(token).map(Some).map_err(|e| format!("{token}: {e}")) }
}

/// Parses one line of the protocol.
pub(crate) fn parse(line: &str) -> Result<Event, String> {
    let mut words = line.splitn(6, ' ');
    let mut word = || words.next().ok_or_else(|| format!("short line {line:?}"));
    let number = |w: &str| w.parse::<u64>().map_err(|e| format!("{line:?}: {e}"));
    Ok(match word()? {
        "O" => Event::Opened,
        "E" => Event::ReadsDone,
        "F" => Event::FlushStart,
        "f" => Event::FlushEnd,
        "R" => {
            let key = (word()?.to_owned(), word()?.to_owned());
            match word()? {
                "?" => Event::Unknown(key),
                value => Event::Read(key, json(value)?),
            }
        }
        "W" => {
            let n = number(word()?)?;
            let key = (word()?.to_owned(), word()?.to_owned());
            let op = Op::parse(word()?).ok_or_else(|| format!("unknown operation in {line:?}"))?;
            Event::Intent { n, key, op, arg: json(word()?)? }
        }
        "A" => Event::Ack { n: number(word()?)?, result: json(word()?)? },
        "P" => Event::Point(word()?.to_owned()),
        "X" => Event::Failed(line.get(2..).unwrap_or_default().to_owned()),
        other => return Err(format!("unknown line kind {other:?} in {line:?}")),
    })
}

/// RFC 7396 merge patch, as the engine applies it.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(doc) = target {
        for (name, value) in fields {
            if value.is_null() {
                doc.remove(name);
            } else {
                merge_patch(doc.entry(name.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// The operation in flight.
struct Pending {
    n: u64,
    key: Key,
    /// The record as the operation leaves it.
    result: Option<Value>,
}

/// What the parent knows: the state every acknowledged operation left.
#[derive(Default)]
pub(crate) struct Model {
    /// Per key, its record; `None` before the first check (then anything is adopted).
    known: Option<BTreeMap<Key, Value>>,
    pending: Option<Pending>,
    /// Acknowledged since the last check.
    unchecked: u64,
}

/// The outcome of one check.
pub(crate) struct Checked {
    /// Acknowledged operations the check covered.
    pub acknowledged: u64,
    /// Keys in a state no acknowledged history explains: lost writes.
    pub lost: Vec<String>,
    /// Other disagreements (PostgreSQL against the engine).
    pub problems: Vec<String>,
}

impl Model {
    /// Operation `n` starts.
    pub(crate) fn intent(&mut self, n: u64, key: Key, op: Op, arg: Option<Value>) -> Result<(), String> {
        if let Some(p) = &self.pending {
            return Err(format!("operation {n} started before operation {} was acknowledged", p.n));
        }
        let Some(known) = &self.known else { return Err(format!("operation {n} before the first check")) };
        let result = match op {
            Op::Put => arg,
            Op::Delete => None,
            Op::Patch => {
                let mut doc = known.get(&key).cloned().unwrap_or_else(|| Value::Object(serde_json::Map::new()));
                merge_patch(&mut doc, &arg.unwrap_or(Value::Null));
                Some(doc)
            }
        };
        self.pending = Some(Pending { n, key, result });
        Ok(())
    }

    /// Operation `n` is acknowledged; `result` is the record as the child saw it after.
    pub(crate) fn ack(&mut self, n: u64, result: Option<Value>) -> Result<(), String> {
        let Some(p) = self.pending.take() else { return Err(format!("acknowledgement of {n}, never started")) };
        if p.n != n {
            return Err(format!("acknowledgement of {n} while {} was in flight", p.n));
        }
        let known = self.known.get_or_insert_default();
        match &p.result {
            Some(v) => known.insert(p.key.clone(), v.clone()),
            None => known.remove(&p.key),
        };
        self.unchecked += 1;
        if result != p.result {
            return Err(format!(
                "operation {n} on {}/{} returned {} where the model expects {}",
                p.key.0,
                p.key.1,
                token(result.as_ref()),
                token(p.result.as_ref())
            ));
        }
        Ok(())
    }

    /// Compares a recovered state — the engine's reads and PostgreSQL's rows — with the
    /// model, then adopts it (collapsing the in-flight operation either way).
    pub(crate) fn check(&mut self, engine: &BTreeMap<Key, Value>, pg: &BTreeMap<Key, Value>) -> Checked {
        let mut out = self.check_in_memory(engine, &BTreeSet::new());
        for key in key_space() {
            let got = engine.get(&key);
            if pg.get(&key) != got {
                out.problems.push(format!(
                    "{}/{}: PostgreSQL holds {} but the engine reads {}",
                    key.0,
                    key.1,
                    token(pg.get(&key)),
                    token(got)
                ));
            }
        }
        out
    }

    /// Checks what the engine reads against the model, but for the `unknown` keys: with
    /// PostgreSQL down, those it cannot read because they are not in memory. A key not in
    /// memory has no write in the WAL, so the operation in flight, if it was to such a
    /// key, did not happen; it keeps its acknowledged state.
    pub(crate) fn check_in_memory(&mut self, engine: &BTreeMap<Key, Value>, unknown: &BTreeSet<Key>) -> Checked {
        let pending = self.pending.take();
        let mut out =
            Checked { acknowledged: std::mem::take(&mut self.unchecked), lost: Vec::new(), problems: Vec::new() };
        let known = self.known.get_or_insert_with(|| engine.clone());
        for key in key_space().filter(|k| !unknown.contains(k)) {
            let got = engine.get(&key);
            let acked = known.get(&key);
            let in_flight = pending.as_ref().filter(|p| p.key == key).map(|p| p.result.as_ref());
            if got != acked && in_flight.is_none_or(|r| r != got) {
                out.lost.push(format!(
                    "{}/{}: reads {} but the last acknowledged state is {}{}",
                    key.0,
                    key.1,
                    token(got),
                    token(acked),
                    in_flight.map(|r| format!(" (in flight: {})", token(r))).unwrap_or_default()
                ));
            }
            match got {
                Some(value) => known.insert(key, value.clone()),
                None => known.remove(&key),
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key(k: &str) -> Key {
        ("drill_a".into(), k.into())
    }

    #[test]
    fn lines_parse() {
        assert!(matches!(parse("W 7 drill_a k01 patch {\"p\":1}"), Ok(Event::Intent { n: 7, op: Op::Patch, .. })));
        assert!(matches!(parse("A 7 -"), Ok(Event::Ack { n: 7, result: None })));
        assert!(matches!(parse("P wal.rotate"), Ok(Event::Point(p)) if p == "wal.rotate"));
        assert!(matches!(parse("R drill_a k01 ?"), Ok(Event::Unknown(k)) if k == key("k01")));
        assert!(parse("Q").is_err());
        assert!(parse("W x").is_err());
    }

    #[test]
    fn with_postgres_down_unknown_keys_keep_their_state_and_the_rest_is_checked() {
        let mut m = Model::default();
        let empty = BTreeMap::new();
        assert!(m.check(&empty, &empty).lost.is_empty());
        m.intent(1, key("k00"), Op::Put, Some(json!({"a": 1}))).expect("intent");
        m.ack(1, Some(json!({"a": 1}))).expect("ack");
        m.intent(2, key("k01"), Op::Put, Some(json!({"b": 1}))).expect("intent");
        // k01's write, in flight, did not reach the WAL: k01 is not in memory, unknown.
        let unknown: BTreeSet<Key> = [key("k01")].into();
        let read: BTreeMap<_, _> = [(key("k00"), json!({"a": 1}))].into();
        let c = m.check_in_memory(&read, &unknown);
        assert!(c.lost.is_empty() && c.acknowledged == 1, "{:?}", c.lost);
        assert_eq!(m.known.as_ref().and_then(|k| k.get(&key("k01"))), None, "k01 keeps its state: absent");
        let c = m.check_in_memory(&empty, &unknown);
        assert_eq!(c.lost.len(), 1, "k00 read as absent is a lost write: {:?}", c.lost);
    }

    #[test]
    fn the_model_accepts_the_acknowledged_or_the_in_flight_state_only() {
        let mut m = Model::default();
        let empty = BTreeMap::new();
        assert!(m.check(&empty, &empty).problems.is_empty());
        m.intent(1, key("k00"), Op::Put, Some(json!({"a": 1}))).expect("intent");
        m.ack(1, Some(json!({"a": 1}))).expect("ack");
        m.intent(2, key("k00"), Op::Patch, Some(json!({"b": 2, "a": null}))).expect("intent");
        let acked: BTreeMap<_, _> = [(key("k00"), json!({"a": 1}))].into();
        let in_flight: BTreeMap<_, _> = [(key("k00"), json!({"b": 2}))].into();
        let mut m2 = Model { known: m.known.clone(), ..Model::default() };
        m2.intent(2, key("k00"), Op::Delete, None).expect("intent");
        let c = m.check(&in_flight, &in_flight);
        assert!(c.lost.is_empty() && c.problems.is_empty() && c.acknowledged == 1);
        let c = m2.check(&empty, &acked);
        assert!(c.lost.is_empty(), "the in-flight delete may have happened");
        assert_eq!(c.problems.len(), 1, "PostgreSQL must agree with the engine");
        let mut m3 = Model { known: Some(acked.clone()), ..Model::default() };
        assert_eq!(m3.check(&empty, &empty).lost.len(), 1, "an acknowledged put that vanished is lost");
    }
}
