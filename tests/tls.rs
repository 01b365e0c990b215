//! PostgreSQL as managed services run it: TLS only, a SCRAM password. The engine
//! connects with each `sslmode`; each way the connection can be misconfigured fails with
//! the typed error naming the setting; the password shows up in no output.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use memdb::postgres::{ClientTls, PrivateCluster};
use memdb::{Config, Error, MemDb, Misconfiguration, StoreError};
use serde_json::json;

/// One TLS cluster for the file (its watchdog removes it when the process ends).
async fn cluster() -> &'static PrivateCluster {
    static CLUSTER: OnceLock<PrivateCluster> = OnceLock::new();
    if let Some(cluster) = CLUSTER.get() {
        return cluster;
    }
    let started = tokio::task::spawn_blocking(PrivateCluster::start_tls).await.expect("task").expect("TLS cluster");
    CLUSTER.get_or_init(|| started)
}

fn tls(cluster: &PrivateCluster) -> &ClientTls {
    cluster.client_tls().expect("a TLS cluster")
}

/// A DSN for the cluster's `postgres` database with `extra` settings.
fn dsn(cluster: &PrivateCluster, host: &str, extra: &str) -> String {
    format!("host={host} hostaddr=127.0.0.1 port={} user=postgres dbname=postgres {extra}", cluster.port())
}

fn config(dsn: String) -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dsn, dir.path().join("wal"));
    config.flush_interval = Duration::from_secs(3600);
    config.pg_timeout = Duration::from_secs(10);
    (config, dir)
}

/// Writes, flushes and reads back through PostgreSQL; returns whether the engine's own
/// sessions use TLS.
async fn round_trip(config: Config, table: &str) -> Result<bool, Error> {
    let admin_dsn = dsn(cluster().await, "localhost", &verify_full(tls(cluster().await)));
    let db = MemDb::open(config).await?;
    db.insert(table, "k1", &json!({"n": 1})).await?;
    db.flush(Some(table)).await?;
    let read = db.get_uncached(table, "k1").await?;
    assert_eq!(read.expect("the flushed row").to_value()["n"], 1);
    assert_eq!(db.query(table, "data->>'n' = '1'", 10).await?.len(), 1);
    let admin = memdb::connect_postgres(&admin_dsn).await.expect("admin over TLS");
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.application_name LIKE 'memdb %'",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    let (encrypted, all): (i64, i64) = (row.get(0), row.get(1));
    db.close().await?;
    Ok(all > 0 && encrypted == all)
}

fn verify_full(tls: &ClientTls) -> String {
    format!("password={} sslmode=verify-full sslrootcert={}", tls.password, tls.ca_file.display())
}

fn misconfiguration(result: Result<bool, Error>) -> Misconfiguration {
    match result {
        Err(Error::Postgres(StoreError::Misconfigured { problem, .. })) => problem,
        other => panic!("expected a misconfiguration, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_connects_with_verify_full_require_and_verify_ca() {
    let cluster = cluster().await;
    let tls = tls(cluster);
    let (c, _dir) = config(dsn(cluster, "localhost", &verify_full(tls)));
    assert!(round_trip(c, "tls_full").await.expect("verify-full"), "every engine session is encrypted");
    let (c, _dir) = config(dsn(cluster, "localhost", &format!("password={} sslmode=require", tls.password)));
    assert!(round_trip(c, "tls_require").await.expect("require"), "require encrypts without a CA");
    // verify-ca checks the chain only: a host name the certificate does not list passes.
    let ca_only = format!("password={} sslmode=verify-ca sslrootcert={}", tls.password, tls.ca_file.display());
    let (c, _dir) = config(dsn(cluster, "db.elsewhere.example", &ca_only));
    assert!(round_trip(c, "tls_ca").await.expect("verify-ca"));
    // The URL form carries the same settings.
    let url = format!(
        "postgresql://postgres:{}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        tls.password,
        cluster.port(),
        tls.ca_file.display()
    );
    let (c, _dir) = config(url);
    assert!(round_trip(c, "tls_url").await.expect("URL DSN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_misconfigured_connection_names_its_setting() {
    let cluster = cluster().await;
    let tls = tls(cluster);
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong_ca = dir.path().join("other-ca.pem");
    std::fs::write(&wrong_ca, memdb::postgres::unrelated_ca_pem().expect("CA")).expect("write");
    let password = format!("password={}", tls.password);
    let cases = [
        (
            "a CA that did not sign the server's certificate",
            dsn(cluster, "localhost", &format!("{password} sslmode=verify-full sslrootcert={}", wrong_ca.display())),
            Misconfiguration::CertificateUntrusted,
            "sslrootcert",
        ),
        (
            "a host name the certificate does not list",
            dsn(cluster, "db.elsewhere.example", &verify_full(tls)),
            Misconfiguration::HostnameMismatch,
            "verify-ca",
        ),
        (
            "no TLS against a TLS-only server",
            dsn(cluster, "localhost", &format!("{password} sslmode=disable")),
            Misconfiguration::TlsRequired,
            "sslmode",
        ),
        (
            "a wrong password",
            dsn(
                cluster,
                "localhost",
                &format!("password=wrong-password sslmode=verify-full sslrootcert={}", tls.ca_file.display()),
            ),
            Misconfiguration::AuthenticationFailed,
            "PG_PASSWORD_FILE",
        ),
    ];
    for (i, (case, dsn, expected, setting)) in cases.into_iter().enumerate() {
        let (c, _dir) = config(dsn);
        let result = round_trip(c, &format!("tls_bad_{i}")).await;
        let message = result.as_ref().err().map(ToString::to_string).unwrap_or_default();
        assert_eq!(misconfiguration(result), expected, "{case}");
        assert!(message.contains(setting), "{case}: the error names {setting}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_file_is_read_and_the_password_shows_nowhere() {
    let cluster = cluster().await;
    let tls = tls(cluster);
    let logs = capture_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("pg-password");
    std::fs::write(&secret, format!("{}\n", tls.password)).expect("write");
    let no_password = dsn(cluster, "localhost", &format!("sslmode=verify-full sslrootcert={}", tls.ca_file.display()));
    let (mut c, _wal) = config(no_password.clone());
    c.pg_password_file = Some(secret.clone());
    assert!(round_trip(c, "tls_secret_file").await.expect("the password from PG_PASSWORD_FILE"));

    // Every output of a failing and of a working engine, with the password in the DSN.
    let mut seen = Vec::new();
    let (c, _wal) = config(dsn(cluster, "localhost", &verify_full(tls)));
    seen.push(format!("{c:?}"));
    let db = MemDb::open(c).await.expect("open");
    db.insert("tls_quiet", "k", &json!({})).await.expect("insert");
    db.flush(None).await.expect("flush");
    seen.push(format!("{db:?} {:?}", db.stats()));
    db.close().await.expect("close");
    let wrong = format!("password=not-the-password-123 sslmode=verify-full sslrootcert={}", tls.ca_file.display());
    let (c, _wal) = config(dsn(cluster, "localhost", &wrong));
    seen.push(format!("{c:?}"));
    // A new WAL directory must reach PostgreSQL once at open: it fails there, typed.
    let err = MemDb::open(c).await.expect_err("a wrong password");
    assert!(matches!(err, Error::Postgres(StoreError::Misconfigured { .. })), "{err:?}");
    seen.push(format!("{err} {err:?}"));
    let Err(err) =
        memdb::connect_postgres(&no_password.replace("sslmode", "password=not-the-password-123 sslmode")).await
    else {
        panic!("a wrong password connects")
    };
    seen.push(format!("{err} {err:?}"));
    seen.push(logs.lock().expect("logs").clone());
    for text in &seen {
        for password in [tls.password.as_str(), "not-the-password-123"] {
            assert!(!text.contains(password), "a password shows in: {text}");
        }
    }
    assert!(seen.iter().any(|t| t.contains("password=***")), "Debug shows that a password is set: {seen:?}");
}

/// Everything the engine logs from here on, at every level.
fn capture_logs() -> Arc<Mutex<String>> {
    static LOGS: OnceLock<Arc<Mutex<String>>> = OnceLock::new();
    Arc::clone(LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&logs);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        logs
    }))
}

struct LogWriter(Arc<Mutex<String>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").push_str(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
