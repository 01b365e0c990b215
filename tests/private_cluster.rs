//! The private PostgreSQL harness against real PostgreSQL binaries: the shared cluster and
//! per-test databases (JSONB + GIN), a second cluster's own port and its clean-up, `PG_DSN`
//! resolution, and that neither a panicking test nor a SIGKILLed process leaves a server
//! behind. The last three re-run this binary as a child (`harness = false`: `main`
//! runs the tests in turn, or the child role the marker variable names).

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use memdb::postgres::{PrivateCluster, test_dsn, test_dsn_from};
use tokio_postgres::{Client, NoTls};

/// Set in child processes to the role they play (see `main`).
const CHILD_MARKER: &str = "MEMDB_PRIVATE_CLUSTER_CHILD";

/// Prefix of the lines a child prints for its parent.
const REPORT: &str = "MEMDB_CHILD ";

const PG_TIMEOUT: Duration = Duration::from_secs(30);

async fn shared_cluster() -> &'static PrivateCluster {
    tokio::task::spawn_blocking(PrivateCluster::shared)
        .await
        .expect("starting the shared cluster panicked")
        .expect("shared cluster")
}

async fn connect(dsn: &str) -> Client {
    let (client, connection) = tokio::time::timeout(PG_TIMEOUT, tokio_postgres::connect(dsn, NoTls))
        .await
        .expect("connect timed out")
        .unwrap_or_else(|error| panic!("connect to {dsn}: {error}"));
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("connection error: {error}");
        }
    });
    client
}

async fn current_database(client: &Client) -> String {
    client.query_one("SELECT current_database()", &[]).await.expect("current_database()").get(0)
}

fn accepts_connections(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// Polls `done` every 20 ms until it holds, failing the test after `limit`.
fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_gone(port: u16, data_dir: &Path) {
    wait_until(&format!("port {port} refuses connections"), Duration::from_secs(30), || !accepts_connections(port));
    wait_until(&format!("{} is removed", data_dir.display()), Duration::from_secs(30), || !data_dir.exists());
}

/// This test binary, run as the child playing `role`.
fn child_command(role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.env(CHILD_MARKER, role).stdin(Stdio::null());
    cmd
}

/// The `key=value` a child reported, from its stdout.
fn reported(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .filter_map(|line| Some(line.split_once(REPORT)?.1))
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("the child did not report {key}; its stdout:\n{stdout}"))
        .to_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Starts a cluster of its own and reports its port and data dir.
fn start_and_report() -> PrivateCluster {
    let cluster = PrivateCluster::start().expect("start a private cluster");
    println!("{REPORT}port={}", cluster.port());
    println!("{REPORT}data_dir={}", cluster.data_dir().display());
    cluster
}

async fn shared_cluster_serves_separate_databases_with_jsonb_and_gin() {
    let cluster = shared_cluster().await;
    let timings = cluster.startup_timings();
    println!("shared cluster on port {}: initdb {:?}, start {:?}", cluster.port(), timings.initdb, timings.start);
    for (name, n) in [("jsonb_gin_a", 1_i32), ("jsonb_gin_b", 2)] {
        let started = Instant::now();
        let dsn = cluster.create_database(name).await.expect("create database");
        println!("CREATE DATABASE {name}: {:?}", started.elapsed());
        assert!(dsn.contains(&format!("dbname={name}")), "{dsn}");

        let client = connect(&dsn).await;
        assert_eq!(current_database(&client).await, name);
        client
            .batch_execute(
                "CREATE TABLE records (key TEXT PRIMARY KEY, data JSONB NOT NULL);
                 CREATE INDEX records_data ON records USING GIN (data);",
            )
            .await
            .expect("create table and GIN index");
        let json = format!(r#"{{"db": "{name}", "n": {n}}}"#);
        client
            .execute("INSERT INTO records (key, data) VALUES ($1, $2::text::jsonb)", &[&"k1", &json])
            .await
            .expect("insert");
        let rows = client
            .query(
                "SELECT key, data->>'db', (data->>'n')::int FROM records WHERE data @> $1::text::jsonb",
                &[&format!(r#"{{"db": "{name}"}}"#)],
            )
            .await
            .expect("select");
        // One row each: the databases are separate.
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.get::<_, String>(0), "k1");
        assert_eq!(row.get::<_, String>(1), name);
        assert_eq!(row.get::<_, i32>(2), n);
    }
    let duplicate = cluster.create_database("jsonb_gin_a").await;
    assert!(duplicate.is_err(), "creating a database twice must fail");
    let invalid = cluster.create_database("x; DROP DATABASE postgres").await;
    assert!(invalid.is_err(), "an unchecked name must be refused");
}

async fn a_second_cluster_has_its_own_port_and_is_gone_after_drop() {
    let shared = shared_cluster().await;
    let second = tokio::task::spawn_blocking(PrivateCluster::start)
        .await
        .expect("start panicked")
        .expect("start a second cluster");
    let timings = second.startup_timings();
    println!("second cluster on port {}: initdb {:?}, start {:?}", second.port(), timings.initdb, timings.start);
    assert_ne!(second.port(), shared.port());
    assert!(accepts_connections(second.port()));

    // The unix socket in the temp dir serves too.
    let socket_dsn =
        format!("host={} port={} user=postgres dbname=postgres", second.socket_dir().display(), second.port());
    let client = connect(&socket_dsn).await;
    let port: String = client.query_one("SHOW port", &[]).await.expect("SHOW port").get(0);
    assert_eq!(port, second.port().to_string());
    drop(client);

    let port = second.port();
    let data_dir = second.data_dir().to_path_buf();
    let started = Instant::now();
    drop(second);
    println!("drop (pg_ctl stop + remove): {:?}", started.elapsed());
    assert_gone(port, &data_dir);
    assert!(accepts_connections(shared.port()), "the shared cluster must live on");
}

async fn a_set_pg_dsn_is_used_as_is_and_an_unset_one_gives_fresh_databases() {
    let given = "host=db.example port=5433 user=app dbname=app".to_owned();
    assert_eq!(test_dsn_from(Some(given.clone())).await.expect("resolve"), given);

    let first = test_dsn_from(None).await.expect("fresh database");
    let blank = test_dsn_from(Some("  ".to_owned())).await.expect("fresh database");
    assert_ne!(first, blank);
    let (a, b) = (connect(&first).await, connect(&blank).await);
    assert_ne!(current_database(&a).await, current_database(&b).await);
}

async fn test_dsn_honours_pg_dsn_in_a_child_process() {
    let cluster = shared_cluster().await;
    let dsn = cluster.create_database("pg_dsn_target").await.expect("create database");
    let output = child_command("reports_test_dsn").env("PG_DSN", &dsn).output().expect("run the child");
    assert!(output.status.success(), "child failed: {}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(reported(&stdout, "dsn"), dsn);
    assert_eq!(reported(&stdout, "current_database"), "pg_dsn_target");
}

fn a_panicking_test_leaves_no_server_behind() {
    let output = child_command("panics_holding_a_cluster").output().expect("run the child");
    assert!(!output.status.success(), "the child must panic: {}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let port = reported(&stdout, "port").parse().expect("port");
    assert_gone(port, Path::new(&reported(&stdout, "data_dir")));
}

fn a_sigkilled_process_leaves_no_server_behind() {
    let mut child: Child = child_command("waits_to_be_killed").stdout(Stdio::piped()).spawn().expect("spawn the child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut report = String::new();
    // Reads until the child reported its data dir (its last line) or closed stdout.
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the child's stdout");
        report.push_str(&line);
        report.push('\n');
        if line.contains(&format!("{REPORT}data_dir=")) {
            break;
        }
    }
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    let port = reported(&report, "port").parse().expect("port");
    // Only the watchdog can clean up after SIGKILL.
    assert_gone(port, Path::new(&reported(&report, "data_dir")));
}

async fn child_reports_test_dsn() {
    let dsn = test_dsn().await.expect("test_dsn");
    let client = connect(&dsn).await;
    println!("{REPORT}dsn={dsn}");
    println!("{REPORT}current_database={}", current_database(&client).await);
}

fn child_panics_holding_a_cluster() {
    let _cluster = start_and_report();
    panic!("deliberate panic while holding a private cluster");
}

fn child_waits_to_be_killed() {
    let _cluster = start_and_report();
    // The parent SIGKILLs this process; the bound only keeps an orphan from living on.
    std::thread::sleep(Duration::from_secs(120));
}

fn block_on(test: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime").block_on(test);
}

fn main() -> std::process::ExitCode {
    if let Ok(role) = std::env::var(CHILD_MARKER) {
        match role.as_str() {
            "reports_test_dsn" => block_on(child_reports_test_dsn()),
            "panics_holding_a_cluster" => child_panics_holding_a_cluster(),
            "waits_to_be_killed" => child_waits_to_be_killed(),
            _ => panic!("unknown child role {role:?}"),
        }
        return std::process::ExitCode::SUCCESS;
    }
    let tests: [(&str, fn()); 6] = [
        ("shared_cluster_serves_separate_databases_with_jsonb_and_gin", || {
            block_on(shared_cluster_serves_separate_databases_with_jsonb_and_gin());
        }),
        ("a_second_cluster_has_its_own_port_and_is_gone_after_drop", || {
            block_on(a_second_cluster_has_its_own_port_and_is_gone_after_drop());
        }),
        ("a_set_pg_dsn_is_used_as_is_and_an_unset_one_gives_fresh_databases", || {
            block_on(a_set_pg_dsn_is_used_as_is_and_an_unset_one_gives_fresh_databases());
        }),
        ("test_dsn_honours_pg_dsn_in_a_child_process", || block_on(test_dsn_honours_pg_dsn_in_a_child_process())),
        ("a_panicking_test_leaves_no_server_behind", a_panicking_test_leaves_no_server_behind),
        ("a_sigkilled_process_leaves_no_server_behind", a_sigkilled_process_leaves_no_server_behind),
    ];
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut failed = 0;
    for (name, test) in tests.into_iter().filter(|(name, _)| filter.as_deref().is_none_or(|f| name.contains(f))) {
        let ok = std::panic::catch_unwind(test).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        failed += usize::from(!ok);
    }
    println!("private_cluster: {}", if failed == 0 { "all passed".to_owned() } else { format!("{failed} FAILED") });
    if failed == 0 { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
}
