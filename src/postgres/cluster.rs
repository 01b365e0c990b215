//! A private, throwaway PostgreSQL cluster for tests, examples and the demo: `initdb` and
//! `pg_ctl` into a temp dir, a free TCP port on 127.0.0.1 plus a unix socket in the temp
//! dir, stopped and removed on drop (the process-wide shared instance: at process exit).
//!
//! PostgreSQL refuses to run as root, so when the process is root every server command
//! runs as the unprivileged user `nobody` (its uid/gid set on the spawned process; std also
//! drops root's supplementary groups), with the temp dir chowned to it.
//!
//! Clean-up happens three ways, from most to least orderly: `Drop` (also on a panicking
//! test, which unwinds); an `atexit` handler for the shared instance (the test harness
//! leaves through `std::process::exit`, which runs it); and a watchdog, a tiny `sh` that
//! waits for EOF on a pipe only this process holds, then stops the server and removes the
//! temp dir. The watchdog covers SIGKILL, Ctrl-C and `panic = "abort"`, where no Rust code
//! runs.
//!
//! This file is the cluster handle — its lifecycle, clean-up, DSNs and the shared
//! instance; `process` runs the server's commands, `error` says what went wrong.

use std::env::VarError;
use std::io;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio_postgres::NoTls;

use super::error::{ClusterError, io_err};
use super::process::{SUPERUSER, Server};
use super::tls::{self, ClientTls};

/// Bound on each PostgreSQL call of the harness: a silently dropped connection would
/// otherwise hang tokio-postgres forever.
const PG_TIMEOUT: Duration = Duration::from_secs(30);

/// How long each step of [`PrivateCluster::start`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartupTimings {
    /// Creating the cluster with `initdb`.
    pub initdb: Duration,
    /// `pg_ctl start -w`, until the server accepts connections (all attempts).
    pub start: Duration,
}

/// A private PostgreSQL server in a temp dir, listening on 127.0.0.1 and on a unix socket
/// in that dir, with trust authentication for user `postgres`. Dropping it stops the
/// server (`pg_ctl stop -m immediate`) and removes the temp dir.
///
/// ```no_run
/// # async fn example() -> Result<(), memdb::postgres::ClusterError> {
/// use memdb::postgres::PrivateCluster;
///
/// let cluster = PrivateCluster::start()?;
/// let dsn = cluster.create_database("orders").await?;
/// let (client, connection) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls).await
///     .expect("connect");
/// tokio::spawn(connection);
/// client.batch_execute("CREATE TABLE t (key TEXT PRIMARY KEY)").await.expect("create");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PrivateCluster {
    port: u16,
    server: Server,
    timings: StartupTimings,
    /// The superuser's password: TCP connections need it (other local users must not
    /// get a superuser session through the port).
    password: tls::Secret,
    /// How clients reach a TLS cluster ([`PrivateCluster::start_tls`]).
    tls: Option<ClientTls>,
    /// What must be undone; `None` once stopped.
    live: Mutex<Option<Live>>,
}

/// The resources of a cluster that is (or may be) running.
#[derive(Debug)]
struct Live {
    base: TempDir,
    watchdog: Option<Child>,
    /// Whether `pg_ctl start` was ever run, so a stop is needed.
    server_may_run: bool,
}

static SHARED: OnceLock<Result<PrivateCluster, Arc<ClusterError>>> = OnceLock::new();

impl PrivateCluster {
    /// Creates and starts a new private cluster. Blocks for about a second (mostly
    /// `initdb`); from async code call it through `tokio::task::spawn_blocking`.
    ///
    /// # Errors
    ///
    /// [`ClusterError::BinariesNotFound`] without a PostgreSQL server installation;
    /// [`ClusterError::NoServerUser`] or [`ClusterError::TempDirUnreachable`] when running
    /// as root and the server cannot run as `nobody`; [`ClusterError::InitdbFailed`] or
    /// [`ClusterError::StartFailed`] (with the end of the output or log) when PostgreSQL
    /// fails; [`ClusterError::Io`] when the temp dir or a process cannot be created.
    pub fn start() -> Result<Self, ClusterError> {
        Self::start_with(false, None)
    }

    /// As [`PrivateCluster::start`], but as a managed PostgreSQL is run: `ssl = on` with
    /// a certificate from a throwaway CA (for `localhost` and 127.0.0.1), and TCP
    /// connections taken only over TLS with the superuser's SCRAM password
    /// ([`PrivateCluster::client_tls`]). [`PrivateCluster::dsn`] and the DSNs of
    /// [`PrivateCluster::create_database`] connect with `sslmode=verify-full`.
    ///
    /// # Errors
    ///
    /// As [`PrivateCluster::start`]; [`ClusterError::Tls`] if the certificates cannot
    /// be made.
    pub fn start_tls() -> Result<Self, ClusterError> {
        Self::start_with(false, Some(tls::HBA_TLS_ONLY))
    }

    /// As [`PrivateCluster::start_tls`], but plain TCP connections (with the password)
    /// are taken too: for benchmarks that compare TLS with plain TCP on one server.
    ///
    /// # Errors
    ///
    /// As [`PrivateCluster::start_tls`].
    pub fn start_tls_or_plain() -> Result<Self, ClusterError> {
        Self::start_with(false, Some(tls::HBA_PASSWORD))
    }

    /// As [`PrivateCluster::start`], but crash-safe as PostgreSQL ships (`fsync`,
    /// `synchronous_commit` and `full_page_writes` on, default `shared_buffers`): for
    /// benchmarks that compare against a committed write, which the fast test settings
    /// would make meaningless.
    ///
    /// # Errors
    ///
    /// As [`PrivateCluster::start`].
    pub fn start_durable() -> Result<Self, ClusterError> {
        Self::start_with(true, None)
    }

    /// `tls_hba`: the `pg_hba.conf` of a TLS cluster; `None` for a plain one (TCP with
    /// the password, the socket — which only this user reaches — trusted).
    fn start_with(durable: bool, tls_hba: Option<&str>) -> Result<Self, ClusterError> {
        let base = tempfile::Builder::new()
            .prefix("memdb-pg-")
            .tempdir()
            .map_err(io_err("create a temp dir for the private PostgreSQL"))?;
        let mut server = Server::prepare(base.path())?;
        server.durable = durable;
        server.tls = tls_hba.is_some();
        let mut cluster = Self {
            port: 0,
            server,
            timings: StartupTimings { initdb: Duration::ZERO, start: Duration::ZERO },
            password: tls::new_password(),
            tls: None,
            live: Mutex::new(Some(Live { base, watchdog: None, server_may_run: false })),
        };
        // From here on, an early return drops `cluster`, which undoes whatever was done.
        let watchdog = cluster.server.spawn_watchdog()?;
        cluster.with_live(|live| live.watchdog = Some(watchdog));

        let started = Instant::now();
        cluster.initdb_with_password()?;
        match tls_hba {
            Some(hba) => cluster.tls = Some(cluster.install_tls(hba)?),
            None => {
                cluster.server.write_owned(&cluster.server.data_dir().join("pg_hba.conf"), tls::HBA_PASSWORD, 0o600)?
            }
        }
        cluster.timings.initdb = started.elapsed();

        let started = Instant::now();
        cluster.with_live(|live| live.server_may_run = true);
        cluster.port = cluster.server.start_on_free_port()?;
        cluster.timings.start = started.elapsed();

        tracing::info!(
            port = cluster.port,
            data_dir = %cluster.server.data_dir().display(),
            initdb_ms = cluster.timings.initdb.as_millis(),
            start_ms = cluster.timings.start.as_millis(),
            "private PostgreSQL started"
        );
        Ok(cluster)
    }

    /// The process-wide shared cluster, started on first use and stopped at process exit
    /// (an `atexit` handler; the test harness exits through `std::process::exit`, which
    /// runs it). Blocks while the first caller starts it; from async code call it through
    /// `tokio::task::spawn_blocking`, or use [`test_dsn`].
    ///
    /// # Errors
    ///
    /// [`ClusterError::Shared`] holding the error of the one start attempt, which every
    /// later call returns too.
    pub fn shared() -> Result<&'static Self, ClusterError> {
        let slot = SHARED.get_or_init(|| {
            // MEMDB_TEST_TLS=1 runs every test over TLS with a password (CI does once).
            let tls = std::env::var_os("MEMDB_TEST_TLS").is_some_and(|v| v == "1");
            let cluster = if tls { Self::start_tls() } else { Self::start() }.map_err(Arc::new)?;
            // SAFETY: `stop_shared_at_exit` is a plain `extern "C" fn()` that neither
            // unwinds nor relies on thread-locals; atexit has no other precondition.
            if unsafe { libc::atexit(stop_shared_at_exit) } != 0 {
                tracing::warn!("atexit registration failed; the watchdog will stop the shared PostgreSQL");
            }
            Ok(cluster)
        });
        slot.as_ref().map_err(|error| ClusterError::Shared(Arc::clone(error)))
    }

    /// A tokio-postgres key=value DSN for database `postgres` over TCP.
    #[must_use]
    pub fn dsn(&self) -> String {
        self.dsn_for(SUPERUSER)
    }

    /// The TCP port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the unix socket (use it as `host=` in a DSN, with the port).
    #[must_use]
    pub fn socket_dir(&self) -> &Path {
        self.server.socket_dir()
    }

    /// The data directory (removed when the cluster stops).
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        self.server.data_dir()
    }

    /// The server log (removed when the cluster stops).
    #[must_use]
    pub fn log_file(&self) -> &Path {
        self.server.log_file()
    }

    /// How long `initdb` and `pg_ctl start` took.
    #[must_use]
    pub fn startup_timings(&self) -> StartupTimings {
        self.timings
    }

    /// Creates database `name` and returns a DSN for it. Tests create one database each,
    /// so they can run in parallel. Needs a Tokio runtime with IO and time enabled.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidDatabaseName`] unless `name` is 1 to 63 characters of
    /// `[a-z0-9_]` starting with a letter or underscore; [`ClusterError::Postgres`] if the
    /// connection fails or the database exists; [`ClusterError::Timeout`] after 30 s.
    ///
    /// # Cancel safety
    /// Dropped before it returns, the database may or may not exist; calling again with
    /// the same name then fails with [`ClusterError::Postgres`]: pick another name.
    pub async fn create_database(&self, name: &str) -> Result<String, ClusterError> {
        if !is_plain_identifier(name) {
            return Err(ClusterError::InvalidDatabaseName { name: name.to_owned() });
        }
        let (client, connection) =
            with_timeout("connecting to the private PostgreSQL", tokio_postgres::connect(&self.admin_dsn(), NoTls))
                .await?;
        let connection = tokio::spawn(connection);
        // `name` is a checked plain identifier, safe to splice unquoted.
        let created =
            with_timeout("creating a database", client.batch_execute(&format!("CREATE DATABASE {name}"))).await;
        drop(client);
        // The connection ends once the client is gone; its own error adds nothing to
        // `created`'s.
        let _ = connection.await;
        created?;
        Ok(self.dsn_for(name))
    }

    /// Stops the server and removes the temp dir, like dropping it but reporting errors.
    /// Returns how long `pg_ctl stop` took.
    ///
    /// # Errors
    ///
    /// [`ClusterError::StopFailed`] if `pg_ctl stop` fails, [`ClusterError::Io`] if the
    /// temp dir cannot be removed. The temp dir is removed either way, and a server whose
    /// data dir is gone shuts itself down within a minute.
    pub fn stop(self) -> Result<Duration, ClusterError> {
        self.shutdown().map(Option::unwrap_or_default)
    }
    /// Stops the server the way a crash would (`pg_ctl stop -m immediate`: every server
    /// process exits at once, clients lose their connections), keeping its data dir and
    /// port so [`PrivateCluster::start_server`] can bring it back. For fault drills; use a
    /// dedicated cluster ([`PrivateCluster::start`]): stopping the shared one breaks
    /// every test using it. Blocks until the server is gone; from async code call it
    /// through `tokio::task::spawn_blocking`.
    ///
    /// The server runs with `synchronous_commit=off`, so transactions committed within
    /// the last few hundred milliseconds are lost by this stop, as they would be by a
    /// crash. A drill that relies on commits surviving sets `synchronous_commit = on`
    /// for its sessions (e.g. `ALTER DATABASE … SET synchronous_commit = on`).
    ///
    /// # Errors
    ///
    /// [`ClusterError::StopFailed`] if `pg_ctl stop` fails (e.g. the server is not
    /// running); [`ClusterError::Io`] if the cluster was already shut down and removed.
    pub fn stop_server(&self) -> Result<(), ClusterError> {
        self.while_live("stop the private PostgreSQL", || self.server.stop())
    }

    /// Starts the server again after [`PrivateCluster::stop_server`], on the same data
    /// dir and port (as the same user), and returns once it accepts connections (after
    /// its crash recovery). Blocks; from async code call it through
    /// `tokio::task::spawn_blocking`.
    ///
    /// # Errors
    ///
    /// [`ClusterError::StartFailed`] with the end of the server log (e.g. the server is
    /// already running, or another process took the port meanwhile);
    /// [`ClusterError::Io`] if the cluster was already shut down and removed.
    pub fn start_server(&self) -> Result<(), ClusterError> {
        self.while_live("start the private PostgreSQL", || self.server.start(self.port))
    }

    /// [`PrivateCluster::stop_server`] then [`PrivateCluster::start_server`]: a server
    /// crash and restart, on the same data dir and port.
    ///
    /// # Errors
    ///
    /// As [`PrivateCluster::stop_server`] and [`PrivateCluster::start_server`].
    pub fn restart(&self) -> Result<(), ClusterError> {
        self.stop_server()?;
        self.start_server()
    }

    /// How clients reach this cluster over TLS, if it was started with
    /// [`PrivateCluster::start_tls`].
    #[must_use]
    pub fn client_tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    /// The superuser's password (the DSNs the cluster hands out carry it).
    #[must_use]
    pub fn password(&self) -> &str {
        &self.password.0
    }

    /// Runs `initdb`, giving the superuser the cluster's password.
    fn initdb_with_password(&self) -> Result<(), ClusterError> {
        let password_file = self.server.base_dir().join("superuser-password");
        self.server.write_owned(&password_file, self.password(), 0o600)?;
        let created = self.server.initdb(Some(&password_file));
        std::fs::remove_file(&password_file).map_err(io_err("remove the superuser's password file"))?;
        created
    }

    /// Puts the server's certificate, its key and `hba` in the data dir, and the CA
    /// beside it.
    fn install_tls(&self, hba: &str) -> Result<ClientTls, ClusterError> {
        let base = self.server.base_dir();
        let files = tls::server_files()?;
        let data = self.server.data_dir();
        self.server.write_owned(&data.join("server.crt"), &files.cert_pem, 0o644)?;
        self.server.write_owned(&data.join("server.key"), &files.key_pem, 0o600)?;
        self.server.write_owned(&data.join("pg_hba.conf"), hba, 0o600)?;
        let ca_file = base.join("ca.crt");
        std::fs::write(&ca_file, &files.ca_pem).map_err(io_err("write the private PostgreSQL's CA"))?;
        Ok(ClientTls { ca_file, password: self.password().to_owned() })
    }

    fn dsn_for(&self, dbname: &str) -> String {
        match &self.tls {
            Some(tls) => tls::dsn(self.port, SUPERUSER, dbname, tls),
            None => {
                format!(
                    "host=127.0.0.1 port={} user={SUPERUSER} dbname={dbname} password={}",
                    self.port,
                    self.password()
                )
            }
        }
    }

    /// The harness's own connections go through the unix socket (trust): its directory
    /// is reachable by this process's user (and the server's) only.
    fn admin_dsn(&self) -> String {
        format!("host='{}' port={} user={SUPERUSER} dbname=postgres", tls::quote(self.server.socket_dir()), self.port)
    }

    fn lock_live(&self) -> MutexGuard<'_, Option<Live>> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with_live(&self, f: impl FnOnce(&mut Live)) {
        if let Some(live) = self.lock_live().as_mut() {
            f(live);
        }
    }

    /// Runs `f` while holding the live resources, so a concurrent shutdown (drop, or the
    /// atexit handler) waits for it; an `Io` error saying `action` failed if the cluster
    /// is already shut down.
    fn while_live<T>(&self, action: &str, f: impl FnOnce() -> Result<T, ClusterError>) -> Result<T, ClusterError> {
        match self.lock_live().as_ref() {
            Some(_) => f(),
            None => Err(io_err(action)(io::Error::new(
                io::ErrorKind::NotFound,
                "the cluster was already shut down and its temp dir removed",
            ))),
        }
    }

    /// Stops the server and removes the temp dir, once; `None` if already done. Called
    /// from `Drop` and from the atexit handler, so it must not panic.
    fn shutdown(&self) -> Result<Option<Duration>, ClusterError> {
        let live = self.lock_live().take();
        let Some(mut live) = live else {
            return Ok(None);
        };
        // Disarm the watchdog first so it cannot race the orderly stop.
        if let Some(mut watchdog) = live.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let started = Instant::now();
        let stopped = if live.server_may_run { self.server.stop() } else { Ok(()) };
        let elapsed = started.elapsed();
        // Remove the dir even if the stop failed: should the server still run, it notices
        // its lock file is gone within a minute and shuts down.
        let removed = live
            .base
            .close()
            .map_err(io_err(format!("remove the private PostgreSQL's temp dir {}", self.server.base_dir().display())));
        stopped?;
        removed?;
        tracing::debug!(port = self.port, stop_ms = elapsed.as_millis(), "private PostgreSQL stopped");
        Ok(Some(elapsed))
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::warn!(%error, "stopping the private PostgreSQL failed");
        }
    }
}

/// Stops the shared cluster at process exit. Must not unwind (it is called from C).
extern "C" fn stop_shared_at_exit() {
    if let Some(Ok(cluster)) = SHARED.get() {
        let _ = cluster.shutdown();
    }
}

/// A DSN for tests: `PG_DSN` when set (and not empty), otherwise a fresh database on the
/// process-wide shared private cluster ([`PrivateCluster::shared`]), with a unique name
/// per call. With `PG_DSN`, every call returns the same database, so tests sharing it
/// must use distinct table names. Needs a Tokio runtime with IO and time enabled.
///
/// # Errors
///
/// [`ClusterError::PgDsnNotUnicode`] if `PG_DSN` is not UTF-8; otherwise as
/// [`test_dsn_from`].
///
/// # Cancel safety
/// As [`test_dsn_from`].
pub async fn test_dsn() -> Result<String, ClusterError> {
    let pg_dsn = match std::env::var("PG_DSN") {
        Ok(dsn) => Some(dsn),
        Err(VarError::NotPresent) => None,
        Err(VarError::NotUnicode(_)) => return Err(ClusterError::PgDsnNotUnicode),
    };
    test_dsn_from(pg_dsn).await
}

/// [`test_dsn`] with the value of `PG_DSN` passed in: `pg_dsn` itself when it is `Some`
/// and not blank, otherwise a fresh database on the shared private cluster.
///
/// # Errors
///
/// As [`PrivateCluster::shared`] and [`PrivateCluster::create_database`];
/// [`ClusterError::RuntimeShutDown`] if the runtime stops while the cluster starts.
///
/// # Cancel safety
/// Cancel-safe: dropped while the shared cluster starts, the start goes on in the
/// background and the next call finds it; a database it was creating may be left behind
/// (every call uses a new name).
pub async fn test_dsn_from(pg_dsn: Option<String>) -> Result<String, ClusterError> {
    static NEXT_DATABASE: AtomicU64 = AtomicU64::new(0);
    if let Some(dsn) = pg_dsn.filter(|dsn| !dsn.trim().is_empty()) {
        return Ok(dsn);
    }
    let cluster = match tokio::task::spawn_blocking(PrivateCluster::shared).await {
        Ok(cluster) => cluster?,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => return Err(ClusterError::RuntimeShutDown),
    };
    let name = format!("memdb_test_{}", NEXT_DATABASE.fetch_add(1, Ordering::Relaxed));
    cluster.create_database(&name).await
}

async fn with_timeout<T>(
    action: &'static str,
    future: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(PG_TIMEOUT, future).await {
        Ok(result) => result.map_err(|source| ClusterError::Postgres { action, source }),
        Err(_) => Err(ClusterError::Timeout { action, after: PG_TIMEOUT }),
    }
}

fn is_plain_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    let starts_well = bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    starts_well && name.len() <= 63 && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked_before_reaching_sql() {
        assert!(is_plain_identifier("memdb_test_0"));
        assert!(is_plain_identifier("_x"));
        assert!(is_plain_identifier(&"a".repeat(63)));
        assert!(!is_plain_identifier(&"a".repeat(64)));
        assert!(!is_plain_identifier(""));
        assert!(!is_plain_identifier("0abc"));
        assert!(!is_plain_identifier("Abc"));
        assert!(!is_plain_identifier("a; DROP DATABASE postgres"));
        assert!(!is_plain_identifier("a\"b"));
    }
}
