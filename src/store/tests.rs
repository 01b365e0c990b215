//! The store against a real PostgreSQL: what the engine-level tests cannot reach.

use std::sync::Arc;
use std::time::Duration;

use super::{Store, StoreSettings};
use crate::config::Pooler;

fn settings(dsn: &str, max_connections: usize) -> StoreSettings {
    settings_with(dsn, max_connections, Pooler::None)
}

fn settings_with(dsn: &str, max_connections: usize, pooler: Pooler) -> StoreSettings {
    StoreSettings {
        dsn: dsn.to_owned(),
        password_file: None,
        instance: "memdb test".to_owned(),
        pooler,
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

/// ⚑ Every flush commits with `synchronous_commit` on, even when the server's default
/// is off and no startup option sets it (a pooler drops them): the statement sets it
/// for its own transaction, whether the batch holds puts, deletes or both. A statement
/// trigger records the setting in force as the flush's rows are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flush_commits_with_synchronous_commit_on() {
    use super::Write;
    let dsn = crate::postgres::test_dsn().await.expect("a PostgreSQL for tests");
    let admin = crate::connect_postgres(&dsn).await.expect("admin");
    admin
        .batch_execute(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = off', current_database()); END $$",
        )
        .await
        .expect("the server's default off for new sessions");
    let store = Store::new(&settings_with(&dsn, 2, Pooler::Transaction)).expect("store");
    store.ensure_catalogue().await.expect("catalogue");
    store.create_table("sync_commit", &serde_json::json!({})).await.expect("create");
    admin
        .batch_execute(
            "CREATE TABLE sync_commit_seen (setting TEXT NOT NULL);
             CREATE FUNCTION record_sync_commit() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN INSERT INTO sync_commit_seen VALUES (current_setting('synchronous_commit')); RETURN NULL; END $$;
             CREATE TRIGGER seen AFTER INSERT OR UPDATE OR DELETE ON memdb_sync_commit
                 FOR EACH STATEMENT EXECUTE FUNCTION record_sync_commit();",
        )
        .await
        .expect("the trigger");
    let put = |key, lsn| Write { key, json: Some("{}"), lsn };
    let delete = |key, lsn| Write { key, json: None, lsn };
    store.write_batch("sync_commit", &[put("a", 1), put("b", 2)]).await.expect("puts");
    store.write_batch("sync_commit", &[delete("a", 3)]).await.expect("a delete alone");
    store.write_batch("sync_commit", &[put("c", 4), delete("b", 5)]).await.expect("both");
    let seen: Vec<String> = admin
        .query("SELECT setting FROM sync_commit_seen", &[])
        .await
        .expect("seen")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(seen.len() >= 3, "a statement trigger fired for each batch: {seen:?}");
    assert!(seen.iter().all(|s| s == "on"), "synchronous_commit in force as each flush wrote: {seen:?}");
    let plain = crate::connect_postgres(&dsn).await.expect("a new session");
    let default: String = plain.query_one("SHOW synchronous_commit", &[]).await.expect("show").get(0);
    assert_eq!(default, "off", "the test holds only if the server's default is off");
}
