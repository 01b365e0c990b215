//! Typed tables: every field type of the schema hints round-trips through memory and
//! through PostgreSQL, and the hints still hold for typed writes.

mod common;

use std::collections::BTreeMap;

use memdb::Error;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// One field of each schema type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Every {
    name: String,
    ratio: f64,
    count: i64,
    on: bool,
    at: String,
    tags: BTreeMap<String, u32>,
    list: Vec<String>,
}

fn every(i: i64) -> Every {
    Every {
        name: format!("call {i} \"quoted\" ünïcode"),
        ratio: 0.25 + i as f64,
        count: -i * 1_000_000_007,
        on: i % 2 == 0,
        at: format!("2026-12-03T17:{:02}:00Z", i % 60),
        tags: BTreeMap::from([("a".to_owned(), 1), (format!("k{i}"), 7)]),
        list: vec!["x".into(), String::new(), format!("{i}")],
    }
}

#[tokio::test]
async fn every_schema_field_type_round_trips_through_memory_and_postgres() {
    let t = common::open(|c| c.idle_ttl = std::time::Duration::from_millis(100)).await;
    let schema = json!({"name": "string", "ratio": "number", "count": "integer", "on": "boolean",
                        "at": "timestamp", "tags": "object", "list": "array"});
    t.db.create_table("every", &schema).await.expect("create with every type");
    let typed = t.db.typed::<Every>("every").await.expect("typed handle");
    for i in 0..5 {
        typed.insert(&format!("k{i}"), &every(i)).await.expect("typed insert");
    }
    for i in 0..5 {
        assert_eq!(typed.get(&format!("k{i}")).await.expect("get"), Some(every(i)), "from memory");
    }
    // Through PostgreSQL: flushed, evicted, read back on a miss, and queried.
    t.db.flush(None).await.expect("flush");
    common::eventually("every record is evicted", || {
        let _ = t.db.evict_idle();
        t.db.stats().cached_records == 0
    })
    .await;
    let misses = t.db.stats().cache_misses;
    for i in 0..5 {
        assert_eq!(typed.get(&format!("k{i}")).await.expect("get"), Some(every(i)), "from PostgreSQL");
    }
    assert_eq!(t.db.stats().cache_misses, misses + 5, "each read went to PostgreSQL");
    let rows = typed.query("(data->>'on')::boolean", 10).await.expect("query");
    assert_eq!(rows, vec![("k0".to_owned(), every(0)), ("k2".to_owned(), every(2)), ("k4".to_owned(), every(4))]);
}

#[tokio::test]
async fn typed_writes_obey_the_hints_and_a_misfit_reads_as_an_error() {
    #[derive(Debug, Serialize, Deserialize)]
    struct Loose {
        count: String,
    }
    let t = common::open(|_| {}).await;
    t.db.create_table("hinted", &json!({"count": "integer"})).await.expect("create");
    let loose = t.db.typed::<Loose>("hinted").await.expect("typed handle");
    let refused = loose.insert("k", &Loose { count: "three".into() }).await;
    assert!(matches!(refused, Err(Error::SchemaViolation { .. })), "{refused:?}");
    t.db.insert("hinted", "k", &json!({"count": 3})).await.expect("untyped insert");
    let misfit = loose.get("k").await;
    assert!(matches!(misfit, Err(Error::Deserialize { ref key, .. }) if key == "k"), "{misfit:?}");
    assert_eq!(loose.untyped().get("k").await.expect("get").expect("there"), json!({"count": 3}));
}
