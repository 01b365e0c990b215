//! The store against a real PostgreSQL: what the engine-level tests cannot reach.

use std::sync::Arc;
use std::time::Duration;

use super::Store;

/// Found by the crash drill: a flush and a first write (or two processes) creating the
/// same table at once made PostgreSQL fail one `CREATE TABLE IF NOT EXISTS` with a
/// unique violation on `pg_type`, and the flush with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_table_all_succeed() {
    let dsn = crate::postgres::test_dsn().await.expect("a PostgreSQL for tests");
    let store = Arc::new(Store::new(&dsn, "memdb test", 8, Duration::from_secs(10)).expect("store"));
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
