//! The original's behaviours, end to end on a real PostgreSQL: insert/get, upsert,
//! missing keys, cache counting, uncached reads, flush, eviction, queries, concurrency,
//! stats, several tables, large records and odd keys.

mod common;

use std::time::Duration;

use serde_json::json;

#[tokio::test]
async fn insert_then_get_returns_the_record() {
    let t = common::open(|_| {}).await;
    let record = json!({"caller": "+4930", "status": "ringing", "turns": [1, 2]});
    t.db.insert("calls", "call:1", &record).await.expect("insert");
    assert_eq!(t.db.get("calls", "call:1").await.expect("get").expect("present"), record);
    t.db.close().await.expect("close");
}

#[tokio::test]
async fn upsert_replaces_the_whole_record() {
    let t = common::open(|_| {}).await;
    t.db.insert("calls", "c", &json!({"a": 1, "b": 2})).await.expect("insert");
    t.db.upsert("calls", "c", &json!({"a": 3})).await.expect("upsert");
    assert_eq!(t.db.get("calls", "c").await.expect("get").expect("present"), json!({"a": 3}));
    t.db.flush(None).await.expect("flush");
    assert_eq!(common::pg_rows(&t.dsn, "calls").await[0].1, json!({"a": 3}));
}

#[tokio::test]
async fn a_missing_key_or_table_reads_as_none() {
    let t = common::open(|_| {}).await;
    t.db.insert("calls", "c", &json!({"a": 1})).await.expect("insert");
    assert!(t.db.get("calls", "nope").await.expect("get").is_none());
    assert!(t.db.get("no_such_table", "c").await.expect("get").is_none());
}

#[tokio::test]
async fn hits_and_misses_are_counted() {
    let t = common::open(|_| {}).await;
    t.db.insert("calls", "c", &json!({"a": 1})).await.expect("insert");
    t.db.get("calls", "c").await.expect("get");
    t.db.get("calls", "c").await.expect("get");
    t.db.get("calls", "absent").await.expect("get");
    let stats = t.db.stats();
    assert_eq!((stats.cache_hits, stats.cache_misses, stats.inserts), (2, 1, 1));
}

#[tokio::test]
async fn get_uncached_reads_without_caching() {
    let t = common::open(|c| c.idle_ttl = Duration::from_millis(100)).await;
    t.db.insert("calls", "c", &json!({"a": 1})).await.expect("insert");
    t.db.flush(None).await.expect("flush");
    common::eventually("the record is evicted", || t.db.evict_idle() > 0 || t.db.stats().cached_records == 0).await;
    assert_eq!(t.db.stats().cached_records, 0);
    assert_eq!(t.db.get_uncached("calls", "c").await.expect("get").expect("present"), json!({"a": 1}));
    assert_eq!(t.db.stats().cached_records, 0, "use_cache=false does not cache");
    assert_eq!(t.db.get("calls", "c").await.expect("get").expect("present"), json!({"a": 1}));
    assert_eq!(t.db.stats().cached_records, 1, "a normal read caches");
}

#[tokio::test]
async fn flush_writes_one_table_or_all() {
    let t = common::open(|_| {}).await;
    for i in 0..10 {
        t.db.insert("calls", &format!("c{i}"), &json!({"i": i})).await.expect("insert");
        t.db.insert("chats", &format!("m{i}"), &json!({"i": i})).await.expect("insert");
    }
    assert_eq!(t.db.stats().dirty_records, 20);
    assert_eq!(t.db.flush(Some("calls")).await.expect("flush"), 10);
    assert_eq!(common::pg_rows(&t.dsn, "calls").await.len(), 10);
    assert_eq!(t.db.stats().dirty_records, 10);
    assert_eq!(t.db.flush(None).await.expect("flush"), 10);
    assert_eq!(common::pg_rows(&t.dsn, "chats").await.len(), 10);
    assert_eq!(t.db.stats().dirty_records, 0);
    assert_eq!(t.db.flush(None).await.expect("flush"), 0, "nothing left to flush");
}

#[tokio::test]
async fn idle_clean_records_are_evicted_and_read_back() {
    let t = common::open(|c| c.idle_ttl = Duration::from_millis(200)).await;
    t.db.insert("calls", "c", &json!({"a": 1})).await.expect("insert");
    t.db.flush(None).await.expect("flush");
    let mut evicted = 0;
    common::eventually("the idle record is evicted", || {
        evicted += t.db.evict_idle();
        t.db.stats().cached_records == 0
    })
    .await;
    assert!(t.db.stats().evictions >= 1);
    let misses = t.db.stats().cache_misses;
    assert_eq!(t.db.get("calls", "c").await.expect("get").expect("from PostgreSQL"), json!({"a": 1}));
    assert_eq!(t.db.stats().cache_misses, misses + 1);
    assert_eq!(t.db.stats().cached_records, 1);
}

#[tokio::test]
async fn dirty_records_are_never_evicted() {
    let t = common::open(|c| c.idle_ttl = Duration::from_millis(100)).await;
    // 400 records, flushed (clean), then half of them overwritten (dirty): with 128
    // shards, nearly every shard holds both kinds, so the sweep runs over dirty slots.
    for i in 0..400 {
        t.db.insert("calls", &format!("c{i}"), &json!({"v": 1})).await.expect("insert");
    }
    t.db.flush(None).await.expect("flush");
    for i in 0..200 {
        t.db.upsert("calls", &format!("c{i}"), &json!({"v": 2})).await.expect("upsert");
    }
    // The clean half going proves the engine's clock passed the TTL of every record.
    let mut evicted = 0;
    common::eventually("the idle clean records are evicted", || {
        evicted += t.db.evict_idle();
        t.db.stats().cached_records <= 200
    })
    .await;
    assert_eq!(evicted, 200, "exactly the clean records were evicted");
    let stats = t.db.stats();
    assert_eq!((stats.cached_records, stats.dirty_records), (200, 200));
    let misses = stats.cache_misses;
    for i in 0..200 {
        let got = t.db.get("calls", &format!("c{i}")).await.expect("get");
        assert_eq!(got.expect("dirty record").to_value(), json!({"v": 2}));
    }
    assert_eq!(t.db.stats().cache_misses, misses, "every dirty record was still in memory");
}

#[tokio::test]
async fn over_capacity_the_least_recently_used_clean_records_go() {
    let t = common::open(|c| c.max_cached_records = Some(100)).await;
    for i in 0..300 {
        t.db.insert("calls", &format!("c{i}"), &json!({"v": 1})).await.expect("insert");
    }
    t.db.flush(None).await.expect("flush");
    for i in 0..20 {
        t.db.upsert("calls", &format!("d{i}"), &json!({"dirty": true})).await.expect("upsert");
    }
    // Let the engine's clock (100 ms ticks) move on, then touch the hot keys.
    let start = std::time::Instant::now();
    common::eventually("two ticks passed", || start.elapsed() > Duration::from_millis(350)).await;
    for i in 0..50 {
        t.db.get("calls", &format!("c{i}")).await.expect("get").expect("hot record");
    }
    common::eventually("the cache is back under its capacity", || t.db.stats().cached_records <= 100).await;
    let stats = t.db.stats();
    assert!(stats.evictions >= 200, "the cold records went: {stats:?}");
    assert_eq!(stats.dirty_records, 20, "dirty records are never evicted");
    for i in 0..50 {
        t.db.get("calls", &format!("c{i}")).await.expect("get").expect("hot record");
    }
    for i in 0..20 {
        t.db.get("calls", &format!("d{i}")).await.expect("get").expect("dirty record");
    }
    assert_eq!(t.db.stats().cache_misses, stats.cache_misses, "the hot and the dirty records stayed in memory");
}

#[tokio::test]
async fn query_filters_limits_and_can_be_empty() {
    let t = common::open(|_| {}).await;
    for i in 0..20 {
        let status = if i % 2 == 0 { "active" } else { "ended" };
        t.db.insert("calls", &format!("c{i:02}"), &json!({"status": status, "n": i})).await.expect("insert");
    }
    let active = t.db.query("calls", "data->>'status' = 'active'", 100).await.expect("query");
    assert_eq!(active.len(), 10);
    assert!(active.iter().all(|r| r.data.to_value()["status"] == "active"));
    assert_eq!(active[0].key, "c00", "ordered by key");
    assert_eq!(t.db.query("calls", "", 5).await.expect("query").len(), 5);
    assert!(t.db.query("calls", "data->>'status' = 'none'", 10).await.expect("query").is_empty());
    let params = t.db.query_params("calls", "(data->>'n')::int >= $1", &[&15i32], 100).await.expect("query");
    assert_eq!(params.len(), 5);
    assert!(t.db.query("calls", "this is not sql", 1).await.is_err(), "bad SQL is an error");
}

#[tokio::test]
async fn query_sees_unflushed_writes() {
    let t = common::open(|_| {}).await;
    t.db.insert("calls", "c1", &json!({"status": "up"})).await.expect("insert");
    assert_eq!(t.db.stats().dirty_records, 1, "not flushed yet");
    let rows = t.db.query("calls", "data->>'status' = 'up'", 10).await.expect("query");
    assert_eq!(rows.len(), 1, "read-your-writes: the original could not see this");
    t.db.delete("calls", "c1").await.expect("delete");
    assert!(t.db.query("calls", "", 10).await.expect("query").is_empty(), "nor a delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_all_land() {
    let t = common::open(|_| {}).await;
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let db = t.db.clone();
            tokio::spawn(async move {
                for i in 0..250 {
                    db.insert("calls", &format!("w{w}-{i}"), &json!({"w": w, "i": i})).await.expect("insert");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(t.db.stats().inserts, 2000);
    assert_eq!(t.db.flush(None).await.expect("flush"), 2000);
    assert_eq!(common::pg_rows(&t.dsn, "calls").await.len(), 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_and_writes_see_whole_records() {
    let t = common::open(|c| c.flush_interval = Duration::from_millis(50)).await;
    for i in 0..50 {
        t.db.insert("calls", &format!("c{i}"), &json!({"v": 0, "check": 0})).await.expect("insert");
    }
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let db = t.db.clone();
            tokio::spawn(async move {
                for n in 1..=200 {
                    let key = format!("c{}", (n * 7 + w) % 50);
                    db.upsert("calls", &key, &json!({"v": n, "check": n * 3})).await.expect("upsert");
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let db = t.db.clone();
            tokio::spawn(async move {
                for n in 0..1000 {
                    let value =
                        db.get("calls", &format!("c{}", (n + r) % 50)).await.expect("get").expect("present").to_value();
                    assert_eq!(value["check"], json!(value["v"].as_i64().expect("v") * 3), "a torn record: {value}");
                }
            })
        })
        .collect();
    for task in writers.into_iter().chain(readers) {
        task.await.expect("task");
    }
    t.db.flush(None).await.expect("flush");
    for (key, data, _) in common::pg_rows(&t.dsn, "calls").await {
        assert_eq!(t.db.get("calls", &key).await.expect("get").expect("present"), data, "memory and PostgreSQL agree");
    }
}

#[tokio::test]
async fn stats_carry_the_originals_keys_and_more() {
    let t = common::open(|_| {}).await;
    t.db.insert("calls", "c", &json!({"a": 1})).await.expect("insert");
    let stats = serde_json::to_value(t.db.stats()).expect("stats serialise");
    for key in [
        "cache_hits",
        "cache_misses",
        "inserts",
        "flushes",
        "evictions",
        "cached_records",
        "dirty_records",
        "tables",
        "wal_bytes",
        "wal_segments",
        "oldest_unflushed",
        "flush_failures",
        "parked_records",
        "postgres_up",
    ] {
        assert!(stats.get(key).is_some(), "stats lack {key}: {stats}");
    }
    assert_eq!(stats["tables"], 1);
    assert_eq!(stats["postgres_up"], true);
}

#[tokio::test]
async fn tables_are_independent() {
    let t = common::open(|_| {}).await;
    t.db.insert("calls", "k", &json!({"t": "calls"})).await.expect("insert");
    t.db.insert("sessions", "k", &json!({"t": "sessions"})).await.expect("insert");
    assert_eq!(t.db.get("calls", "k").await.expect("get").expect("present"), json!({"t": "calls"}));
    assert_eq!(t.db.get("sessions", "k").await.expect("get").expect("present"), json!({"t": "sessions"}));
    assert_eq!(t.db.stats().tables, 2);
}

#[tokio::test]
async fn a_10kb_nested_record_round_trips() {
    let t = common::open(|_| {}).await;
    let turns: Vec<_> = (0..100)
        .map(|i| json!({"turn": i, "speaker": "caller", "text": "x".repeat(60), "meta": {"ms": i * 10}}))
        .collect();
    let record = json!({"call": {"id": "c1", "turns": turns}});
    assert!(serde_json::to_string(&record).expect("json").len() > 10_000);
    t.db.insert("calls", "big", &record).await.expect("insert");
    t.db.flush(None).await.expect("flush");
    assert_eq!(common::pg_rows(&t.dsn, "calls").await[0].1, record);
    assert_eq!(t.db.get("calls", "big").await.expect("get").expect("present"), record);
}

#[tokio::test]
async fn keys_with_punctuation_work() {
    let t = common::open(|_| {}).await;
    for key in ["call:123", "call-123", "call_123", "call.123", "a:b-c_d.e", "ünïcode 🙂"] {
        t.db.insert("calls", key, &json!({"k": key})).await.expect("insert");
        assert_eq!(t.db.get("calls", key).await.expect("get").expect("present"), json!({"k": key}));
    }
    t.db.flush(None).await.expect("flush");
    assert_eq!(common::pg_rows(&t.dsn, "calls").await.len(), 6);
}
