//! The store against a real PostgreSQL: what the engine-level tests cannot reach.

use std::sync::Arc;
use std::time::Duration;

use super::{Store, StoreSettings};
use crate::config::Pooler;

fn settings(dsn: &str, max_connections: usize) -> StoreSettings {
    StoreSettings {
        dsn: dsn.to_owned(),
        password_file: None,
        instance: "memdb test".to_owned(),
        pooler: Pooler::None,
        schema: "public".to_owned(),
        max_connections,
        timeout: Duration::from_secs(10),
    }
}

/// Found by the crash drill: a flush and a first write (or two processes) creating the
/// same table at once made PostgreSQL fail one `CREATE TABLE IF NOT EXISTS` with a
/// unique violation on `pg_type`, and the flush with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_table_all_succeed() {
    let dsn = crate::postgres::test_dsn().await.expect("a PostgreSQL for tests");
    let store = Arc::new(Store::new(&settings(&dsn, 8)).expect("store"));
    store.ensure_catalogue().await.expect("catalogue");
    for round in 0..20 {
        let name = format!("ddl_race_{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(6));
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let (store, name, barrier) = (Arc::clone(&store), name.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.create_table(&name, &serde_json::json!({})).await
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task").expect("every concurrent create succeeds");
        }
    }
}

/// ⚑ The LSN guard: an older record never replaces or deletes a newer row, one at the
/// same LSN changes nothing, and the skipped puts are reported as superseded unless the
/// row is the same record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_record_never_overwrites_or_deletes_a_newer_row() {
    use super::Write;
    let dsn = crate::postgres::test_dsn().await.expect("a PostgreSQL for tests");
    let store = Store::new(&settings(&dsn, 2)).expect("store");
    store.ensure_catalogue().await.expect("catalogue");
    store.create_table("lsn_guard", &serde_json::json!({})).await.expect("create");
    let put = |key, json, lsn| Write { key, json: Some(json), lsn };
    let newer = [put("a", r#"{"v":2}"#, 10), put("b", r#"{"v":2}"#, 10)];
    assert!(store.write_batch("lsn_guard", &newer).await.expect("write").is_empty());
    let older = [put("a", r#"{"v":1}"#, 5), Write { key: "b", json: None, lsn: 5 }];
    let superseded = store.write_batch("lsn_guard", &older).await.expect("write");
    assert_eq!(superseded, vec!["a".to_owned()], "the skipped put is reported");
    let same = [put("a", r#"{"v": 2}"#, 10)];
    assert!(store.write_batch("lsn_guard", &same).await.expect("write").is_empty(), "a replay is not superseded");
    let other = [put("a", r#"{"v":1}"#, 10)];
    let superseded = store.write_batch("lsn_guard", &other).await.expect("write");
    assert_eq!(superseded, vec!["a".to_owned()], "another record at the same LSN is superseded");
    for key in ["a", "b"] {
        let (json, lsn) = store.get("lsn_guard", key).await.expect("get").expect("the newer row is there");
        assert_eq!((json.as_str(), lsn), (r#"{"v": 2}"#, 10), "{key}");
    }
}
