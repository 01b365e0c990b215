//! Bad input, generated: ≥ 200 table names, keys and values the engine must refuse with
//! a typed error before anything reaches the WAL or PostgreSQL; and a record PostgreSQL
//! itself rejects at flush time, parked so it blocks nothing else.

mod common;

use memdb::{Error, MAX_KEY_BYTES, MAX_TABLE_NAME};
use serde_json::{Value, json};

/// Fragments that make a table name invalid wherever they appear.
const BAD_FRAGMENTS: &[&str] =
    &["'", "\"", ";", "--", " ", "\t", "\n", ".", "é", "🙂", "A", "-", "/", "\\", "\0", "(", ")", "*", "$", "%"];

/// Invalid table names: each fragment at the start, middle and end, plus the classics.
fn bad_table_names() -> Vec<String> {
    let mut names: Vec<String> =
        BAD_FRAGMENTS.iter().flat_map(|f| [format!("{f}calls"), format!("ca{f}lls"), format!("calls{f}")]).collect();
    names.extend(
        ["", "1calls", "9", "calls; DROP TABLE memdb_tables", "calls --", "public.calls", "schema.table", "ünïcode"]
            .map(String::from),
    );
    names.extend((1..=20).map(|extra| "t".repeat(MAX_TABLE_NAME + extra)));
    names
}

/// Invalid keys.
fn bad_keys() -> Vec<String> {
    let mut keys = vec![String::new(), "\0".into(), "a\0b".into(), "k\0".into()];
    keys.extend((1..=10).map(|extra| "k".repeat(MAX_KEY_BYTES + extra)));
    keys
}

/// Values that are not storable: not an object, `\u0000` anywhere, too large.
fn bad_values(max: usize) -> Vec<(Value, &'static str)> {
    let mut values: Vec<(Value, &str)> =
        [json!(1), json!(1.5), json!("text"), json!([1, 2]), json!([]), json!(null), json!(true)]
            .into_iter()
            .map(|v| (v, "not an object"))
            .collect();
    for nul in ["\u{0}", "a\u{0}", "\u{0}b", "a\u{0}b"] {
        values.push((json!({ "a": nul }), "NUL in a value"));
        values.push((json!({ nul: 1 }), "NUL in a field name"));
        values.push((json!({"deep": {"deeper": [1, {"x": nul}]}}), "NUL nested"));
    }
    for extra in [1, 10, 1000] {
        values.push((json!({"big": "x".repeat(max + extra)}), "oversize"));
    }
    values
}

#[tokio::test]
async fn generated_bad_input_is_refused_with_a_typed_error_and_writes_nothing() {
    let max = 2000;
    let t = common::open(|c| c.max_record_bytes = max).await;
    t.db.insert("calls", "seed", &json!({"a": 1})).await.expect("insert");
    t.db.flush(None).await.expect("flush");
    let before = t.db.stats();
    let mut cases = 0;
    for name in bad_table_names() {
        for result in [
            t.db.insert(&name, "k", &json!({"a": 1})).await,
            t.db.delete(&name, "k").await,
            t.db.patch(&name, "k", &json!({"a": 1})).await.map(drop),
            t.db.get(&name, "k").await.map(drop),
            t.db.query(&name, "", 1).await.map(drop),
            t.db.create_table(&name, &json!({})).await,
        ] {
            assert!(matches!(result, Err(Error::InvalidTableName { .. })), "{name:?}: {result:?}");
            cases += 1;
        }
    }
    for key in bad_keys() {
        for result in [
            t.db.insert("calls", &key, &json!({"a": 1})).await,
            t.db.delete("calls", &key).await,
            t.db.patch("calls", &key, &json!({"a": 1})).await.map(drop),
        ] {
            assert!(matches!(result, Err(Error::InvalidKey { .. })), "{key:?}: {result:?}");
            cases += 1;
        }
    }
    for (value, why) in bad_values(max) {
        let result = t.db.insert("calls", "k", &value).await;
        assert!(matches!(result, Err(Error::InvalidValue { .. } | Error::RecordTooLarge { .. })), "{why}: {result:?}");
        cases += 1;
        if value.is_object() {
            let result = t.db.patch("calls", "seed", &value).await;
            assert!(
                matches!(result, Err(Error::InvalidValue { .. } | Error::RecordTooLarge { .. })),
                "{why}: {result:?}"
            );
            cases += 1;
        }
    }
    println!("{cases} bad inputs refused");
    assert!(cases >= 200, "{cases}");
    let after = t.db.stats();
    // Nothing written: not a WAL byte, not a record, not a table, not a flush.
    assert_eq!(after.wal_bytes, before.wal_bytes, "the WAL did not grow");
    assert_eq!(
        (after.inserts, after.deletes, after.tables, after.dirty_records, after.flushes),
        (before.inserts, before.deletes, before.tables, 0, before.flushes)
    );
    assert_eq!(t.db.get("calls", "seed").await.expect("get").map(|j| j.to_value()), Some(json!({"a": 1})));
    t.db.insert("calls", "k", &json!({"a": 2})).await.expect("valid writes go on");
    t.db.flush(None).await.expect("flush");
    let rows = common::pg_rows(&t.dsn, "calls").await;
    assert_eq!(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["k", "seed"]);
}

/// A record PostgreSQL rejects at flush time (here a CHECK constraint a DBA added) is
/// parked after its batch and then it alone were refused; every other record flushes.
#[tokio::test]
async fn a_record_postgres_rejects_is_parked_and_blocks_nothing() {
    let t = common::open(|_| {}).await;
    t.db.insert("parked", "ok0", &json!({"ok": true})).await.expect("insert");
    t.db.flush(None).await.expect("flush");
    common::pg(&t.dsn)
        .await
        .batch_execute("ALTER TABLE memdb_parked ADD CONSTRAINT no_bad CHECK (data->>'bad' IS NULL)")
        .await
        .expect("add a constraint");
    for i in 1..50 {
        t.db.insert("parked", &format!("ok{i}"), &json!({"ok": true})).await.expect("insert");
    }
    t.db.insert("parked", "bad", &json!({"bad": 1})).await.expect("memdb accepts it");
    t.db.flush(None).await.expect("the flush goes on past the rejected record");
    let stats = t.db.stats();
    assert_eq!(stats.parked_records, 1, "{stats:?}");
    assert_eq!(stats.dirty_records - stats.parked_records, 0, "everything else flushed: {stats:?}");
    assert_eq!(stats.oldest_unflushed, std::time::Duration::ZERO, "the flush lag is back to zero: {stats:?}");
    assert_eq!(common::pg_rows(&t.dsn, "parked").await.len(), 50);
    // Later flushes skip it instead of retrying it for ever.
    let failures = stats.flush_failures;
    t.db.insert("parked", "ok50", &json!({"ok": true})).await.expect("insert");
    assert_eq!(t.db.flush(None).await.expect("flush"), 1);
    assert_eq!(t.db.stats().flush_failures, failures);
    assert_eq!(t.db.get("parked", "bad").await.expect("get").map(|j| j.to_value()), Some(json!({"bad": 1})));
}
