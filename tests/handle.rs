//! Table handles: the same records, errors and flush behaviour as the string-named calls.

mod common;

use memdb::Error;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Call {
    status: String,
    turns: u32,
}

#[tokio::test]
async fn a_handle_reads_and_writes_the_same_records_as_the_named_calls() {
    let t = common::open(|_| {}).await;
    let calls = t.db.table("calls").await.expect("a handle creates the table");
    assert_eq!(calls.name(), "calls");
    assert_eq!(t.db.stats().tables, 1);
    calls.insert("c1", &Call { status: "ringing".into(), turns: 1 }).await.expect("insert");
    t.db.insert("calls", "c2", &json!({"status": "up", "turns": 2})).await.expect("named insert");
    assert_eq!(
        t.db.get("calls", "c1").await.expect("get").expect("written through the handle"),
        json!({"status": "ringing", "turns": 1})
    );
    let c2: Call = calls.get_as("c2").await.expect("get").expect("written by name");
    assert_eq!(c2, Call { status: "up".into(), turns: 2 });
    let patched = calls.patch("c1", &json!({"status": "up"})).await.expect("patch");
    assert_eq!(patched, json!({"status": "up", "turns": 1}));
    calls.delete("c2").await.expect("delete");
    assert!(t.db.get("calls", "c2").await.expect("get").is_none(), "deleted through the handle");
    // A query flushes the table first: it sees every acknowledged write.
    let rows = calls.query("data->>'status' = 'up'", 10).await.expect("query");
    assert_eq!(rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["c1"]);
    assert_eq!(common::pg_rows(&t.dsn, "calls").await.len(), 1, "flushed: c1 only, c2's delete reached PostgreSQL");
    // A clone is the same handle.
    assert!(calls.clone().get("c1").await.expect("get").is_some());
}

#[tokio::test]
async fn a_handle_refuses_what_the_named_calls_refuse() {
    let t = common::open(|_| {}).await;
    assert!(matches!(t.db.table("no spaces").await, Err(Error::InvalidTableName { .. })));
    t.db.create_table("calls", &json!({"turns": "integer"})).await.expect("create");
    let calls = t.db.table("calls").await.expect("handle");
    let wrong = calls.insert("c", &json!({"turns": "three"})).await;
    assert!(matches!(wrong, Err(Error::SchemaViolation { .. })), "the schema holds through a handle: {wrong:?}");
    assert!(matches!(calls.insert("", &json!({})).await, Err(Error::InvalidKey { .. })));
    assert!(calls.get("c").await.expect("get").is_none(), "nothing was written");
    t.db.close().await.expect("close");
    assert!(matches!(calls.get("c").await, Err(Error::Closed)), "a closed database closes its handles");
    assert!(matches!(calls.insert("c", &json!({"turns": 3})).await, Err(Error::Closed)));
}
