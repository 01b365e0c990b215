//! Deletes, patches, schema enforcement and bad input, end to end: every refused write
//! gets a typed error and writes nothing — not to the WAL, not to memory, not to SQL.

mod common;

use memdb::Error;
use serde_json::json;

#[tokio::test]
async fn delete_leaves_a_tombstone_until_flushed_and_never_reads_back() {
    let t = common::open(|_| {}).await;
    t.db.insert("calls", "c", &json!({"a": 1})).await.expect("insert");
    t.db.flush(None).await.expect("flush");
    t.db.delete("calls", "c").await.expect("delete");
    assert!(t.db.get("calls", "c").await.expect("get").is_none(), "the tombstone hides the PostgreSQL row");
    assert!(t.db.get_uncached("calls", "c").await.expect("get").is_none());
    assert_eq!(common::pg_rows(&t.dsn, "calls").await.len(), 1, "not flushed yet");
    t.db.flush(None).await.expect("flush");
    assert!(common::pg_rows(&t.dsn, "calls").await.is_empty());
    assert!(t.db.get("calls", "c").await.expect("get").is_none());
    assert_eq!(t.db.stats().cached_records, 0, "a flushed tombstone is dropped");
    t.db.delete("calls", "never-existed").await.expect("deleting a missing key is fine");
}

#[tokio::test]
async fn patch_merges_into_the_current_record_loading_it_if_needed() {
    let t = common::open(|c| c.idle_ttl = std::time::Duration::from_millis(100)).await;
    t.db.insert("calls", "c", &json!({"status": "ringing", "codec": "opus", "turns": 1})).await.expect("insert");
    let merged = t.db.patch("calls", "c", &json!({"status": "up", "codec": null})).await.expect("patch");
    assert_eq!(merged, json!({"status": "up", "turns": 1}));
    t.db.flush(None).await.expect("flush");
    common::eventually("the record is evicted", || {
        let _ = t.db.evict_idle();
        t.db.stats().cached_records == 0
    })
    .await;
    let merged = t.db.patch("calls", "c", &json!({"turns": 2})).await.expect("patch after eviction");
    assert_eq!(merged, json!({"status": "up", "turns": 2}), "patched the PostgreSQL copy");
    let created = t.db.patch("calls", "new", &json!({"x": 1})).await.expect("patch a missing record");
    assert_eq!(created, json!({"x": 1}));
    t.db.flush(None).await.expect("flush");
    let rows = common::pg_rows(&t.dsn, "calls").await;
    assert_eq!(
        rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        vec![json!({"status": "up", "turns": 2}), json!({"x": 1})]
    );
}

#[tokio::test]
async fn the_schema_is_enforced_and_survives_a_restart() {
    let (config, _dir, _dsn) = common::config(|_| {}).await;
    let db = memdb::MemDb::open(config.clone()).await.expect("open");
    db.create_table("calls", &json!({"status": "string", "start_time": "timestamp", "turns": "integer"}))
        .await
        .expect("create");
    db.insert("calls", "ok", &json!({"status": "up", "start_time": "2026-11-26T03:17:00Z", "turns": 2, "extra": [1]}))
        .await
        .expect("a conforming record with an undeclared field");
    let err = db.insert("calls", "bad", &json!({"status": 7})).await.expect_err("wrong type");
    assert!(matches!(&err, Error::SchemaViolation { field, .. } if field == "status"), "{err}");
    let err = db.patch("calls", "ok", &json!({"turns": "two"})).await.expect_err("a patch must conform too");
    assert!(matches!(err, Error::SchemaViolation { .. }), "{err}");
    assert!(db.get("calls", "bad").await.expect("get").is_none(), "nothing written");
    db.close().await.expect("close");

    let db = memdb::MemDb::open(config).await.expect("reopen");
    let err = db.insert("calls", "bad", &json!({"start_time": "yesterday"})).await.expect_err("schema from PostgreSQL");
    assert!(matches!(err, Error::SchemaViolation { .. }), "{err}");
    db.close().await.expect("close");
}

#[tokio::test]
async fn bad_input_is_refused_with_a_typed_error_and_writes_nothing() {
    let t = common::open(|c| c.max_record_bytes = 1000).await;
    t.db.insert("calls", "seed", &json!({"a": 1})).await.expect("insert");
    let before = t.db.stats();
    let wal_before = t.db.stats().wal_bytes;
    let long_table = "t".repeat(memdb::MAX_TABLE_NAME + 1);
    for name in [
        "",
        "Calls",
        "1calls",
        "calls;drop table x",
        "calls--",
        "two words",
        "schema.table",
        "ünïcode",
        "a\"b",
        &long_table,
    ] {
        let err = t.db.insert(name, "k", &json!({"a": 1})).await.expect_err(name);
        assert!(matches!(err, Error::InvalidTableName { .. }), "{name}: {err}");
        assert!(matches!(t.db.get(name, "k").await, Err(Error::InvalidTableName { .. })), "{name}");
        assert!(matches!(t.db.query(name, "", 1).await, Err(Error::InvalidTableName { .. })), "{name}");
    }
    let long_key = "k".repeat(memdb::MAX_KEY_BYTES + 1);
    for key in ["", "a\0b", &long_key] {
        assert!(matches!(t.db.insert("calls", key, &json!({"a": 1})).await, Err(Error::InvalidKey { .. })), "{key:?}");
    }
    for value in [json!(1), json!("text"), json!([1, 2]), json!(null), json!({"a": "nul\u{0}here"})] {
        let err = t.db.insert("calls", "k", &value).await.expect_err("not storable");
        assert!(matches!(err, Error::InvalidValue { .. }), "{value}: {err}");
    }
    let err = t.db.insert("calls", "k", &json!({"big": "x".repeat(2000)})).await.expect_err("oversize");
    assert!(matches!(err, Error::RecordTooLarge { max: 1000, .. }), "{err}");
    let after = t.db.stats();
    assert_eq!(after.wal_bytes, wal_before, "the WAL did not grow");
    assert_eq!((after.inserts, after.tables, after.cached_records), (before.inserts, 1, 1));
    t.db.insert("calls", "k", &json!({"a": 2})).await.expect("valid writes go on");
    t.db.flush(None).await.expect("flush");
    assert_eq!(common::pg_rows(&t.dsn, "calls").await.len(), 2);
}
