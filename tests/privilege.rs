//! Least privilege: memdb runs under a role that owns one schema (`MEMDB_SCHEMA`) and
//! nothing else — no superuser, no CREATE on `public` or on the database — and a role
//! that may not write there gets the typed error naming the grant.

mod common;

use memdb::{Error, MemDb, Misconfiguration, StoreError};
use serde_json::json;

/// A role owning only schema `schema` in the test database; returns its DSN (`dsn`, a
/// key=value DSN as the test kit makes, with the role's user and password).
async fn role_owning_schema(admin: &tokio_postgres::Client, dsn: &str, role: &str, schema: &str) -> String {
    let password = format!("{role}-password");
    // Roles are the cluster's: a server shared between runs (PG_DSN) may have it, with
    // objects and grants of an earlier run.
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE;
             DO $$ BEGIN
                 IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                     EXECUTE 'DROP OWNED BY {role} CASCADE';
                 END IF;
             END $$;
             DROP ROLE IF EXISTS {role}"
        ))
        .await
        .expect("remove an earlier run's role");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}' NOSUPERUSER NOCREATEDB NOCREATEROLE;
             CREATE SCHEMA {schema} AUTHORIZATION {role};
             REVOKE CREATE ON SCHEMA public FROM PUBLIC;
             REVOKE CREATE ON DATABASE {} FROM PUBLIC;",
            current_database(admin).await
        ))
        .await
        .expect("create the role and its schema");
    format!("{dsn} user={role} password={password}")
}

async fn current_database(admin: &tokio_postgres::Client) -> String {
    admin.query_one("SELECT current_database()", &[]).await.expect("database").get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_owning_only_its_schema_opens_writes_flushes_queries_and_recovers() {
    let (_, _, dsn) = common::config(|_| {}).await;
    let admin = common::pg(&dsn).await;
    let role_dsn = role_owning_schema(&admin, &dsn, "memdb_least", "daemon").await;
    let open = |dir: &std::path::Path| {
        let mut config = memdb::Config::new(role_dsn.clone(), dir.join("wal"));
        config.flush_interval = std::time::Duration::from_secs(3600);
        config.pg_schema = "daemon".into();
        MemDb::open(config)
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path()).await.expect("open as the least-privileged role");
    for i in 0..100 {
        db.insert("calls", &format!("c{i}"), &json!({"n": i})).await.expect("insert");
    }
    assert_eq!(db.flush(None).await.expect("flush"), 100);
    assert_eq!(db.query("calls", "(data->>'n')::int < 10", 100).await.expect("query").len(), 10);
    assert_eq!(db.get_uncached("calls", "c7").await.expect("get").expect("row").to_value()["n"], 7);
    // Unflushed writes, then a drop without close (as a crash leaves them): the next
    // open replays them into the role's schema.
    for i in 100..150 {
        db.upsert("calls", &format!("c{i}"), &json!({"n": i})).await.expect("upsert");
    }
    drop(db);
    let db = open(dir.path()).await.expect("reopen");
    common::until_drained(&db).await;
    db.close().await.expect("close");

    let count: i64 = admin.query_one("SELECT count(*) FROM daemon.memdb_calls", &[]).await.expect("count").get(0);
    assert_eq!(count, 150, "every write is in the role's schema");
    let in_public: Option<String> =
        admin.query_one("SELECT to_regclass('public.memdb_tables')::text", &[]).await.expect("public").get(0);
    assert_eq!(in_public, None, "nothing is created in public");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_the_role_may_not_write_or_create_is_a_typed_error() {
    let (_, _, dsn) = common::config(|_| {}).await;
    let admin = common::pg(&dsn).await;
    let role_dsn = role_owning_schema(&admin, &dsn, "memdb_reader", "reader_own").await;
    admin
        .batch_execute("CREATE SCHEMA IF NOT EXISTS not_theirs; GRANT USAGE ON SCHEMA not_theirs TO memdb_reader")
        .await
        .expect("a schema the role may only use");
    for (schema, expected) in
        [("not_theirs", Misconfiguration::NotWritable), ("no_such_schema", Misconfiguration::SchemaMissing)]
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = memdb::Config::new(role_dsn.clone(), dir.path().join("wal"));
        config.pg_schema = schema.into();
        let err = MemDb::open(config).await.expect_err(schema);
        let message = err.to_string();
        match err {
            Error::Postgres(StoreError::Misconfigured { problem, .. }) => assert_eq!(problem, expected, "{message}"),
            other => panic!("{schema}: expected {expected:?}, got {other:?}"),
        }
        assert!(message.contains("MEMDB_SCHEMA"), "the error names the setting: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_keeps_the_rows_dirty_until_it_is_restored() {
    let (_, _, dsn) = common::config(|_| {}).await;
    let admin = common::pg(&dsn).await;
    let role_dsn = role_owning_schema(&admin, &dsn, "memdb_revoked", "revoked").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = memdb::Config::new(role_dsn, dir.path().join("wal"));
    config.flush_interval = std::time::Duration::from_secs(3600);
    config.pg_schema = "revoked".into();
    let db = MemDb::open(config).await.expect("open");
    db.insert("calls", "k0", &json!({})).await.expect("insert");
    db.flush(None).await.expect("flush");
    admin.batch_execute("REVOKE INSERT ON revoked.memdb_calls FROM memdb_revoked").await.expect("revoke");
    for i in 1..=10 {
        db.insert("calls", &format!("k{i}"), &json!({})).await.expect("insert");
    }
    let err = db.flush(None).await.expect_err("no INSERT privilege");
    assert!(
        matches!(err, Error::Postgres(StoreError::Misconfigured { problem: Misconfiguration::NotWritable, .. })),
        "{err:?}"
    );
    assert_eq!(db.stats().dirty_records, 10, "a missing grant parks nothing: the rows wait, dirty");
    admin.batch_execute("GRANT INSERT ON revoked.memdb_calls TO memdb_revoked").await.expect("grant");
    assert_eq!(db.flush(None).await.expect("flush once granted"), 10);
    db.close().await.expect("close");
    let count: i64 = admin.query_one("SELECT count(*) FROM revoked.memdb_calls", &[]).await.expect("count").get(0);
    assert_eq!(count, 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_an_earlier_memdb_put_on_the_search_path_are_not_hidden_by_the_default_schema() {
    let (_, _, dsn) = common::config(|_| {}).await;
    let admin = common::pg(&dsn).await;
    // Before MEMDB_SCHEMA, a role with a schema of its name got memdb's tables there.
    let role_dsn = role_owning_schema(&admin, &dsn, "memdb_legacy", "memdb_legacy").await;
    let open = |schema: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = memdb::Config::new(role_dsn.clone(), dir.path().join("wal"));
        config.pg_schema = schema.into();
        async move { (MemDb::open(config).await, dir) }
    };
    let (db, _dir) = open("memdb_legacy").await;
    let db = db.expect("open in the role's schema");
    db.insert("calls", "k", &json!({})).await.expect("insert");
    db.close().await.expect("close");
    let (err, _dir) = open("public").await;
    let err = err.expect_err("the default schema would hide the tables");
    let message = err.to_string();
    assert!(
        matches!(err, Error::Postgres(StoreError::Misconfigured { problem: Misconfiguration::SchemaMoved, .. })),
        "{err:?}"
    );
    assert!(message.contains("MEMDB_SCHEMA=memdb_legacy"), "{message}");
}
