//! PgBouncer in front of a private cluster, for tests of memdb through a connection
//! pooler: started (as the server user when root) on a free port with any pool mode,
//! under a watchdog that stops it on drop or when this process dies.

use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::PrivateCluster;
use super::error::{ClusterError, io_err};
use super::process::{SERVER_USER, SUPERUSER, free_port, server_user};

/// How long PgBouncer may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Run by `/bin/sh`: `$1` pgbouncer, `$2` its config, `$3` its temp dir. Starts
/// PgBouncer, waits for EOF on stdin — a pipe only this process holds, closed when the
/// `PgBouncer` is dropped or the process dies, however it dies — then stops it and
/// removes the temp dir (the private cluster's watchdog pattern).
const WATCHDOG_SCRIPT: &str = r#"trap '' HUP INT QUIT TERM PIPE
"$1" "$2" </dev/null >/dev/null 2>&1 &
pid=$!
read -r _ || :
kill "$pid" 2>/dev/null
wait "$pid"
rm -rf -- "$3""#;

/// A running PgBouncer.
#[derive(Debug)]
pub struct PgBouncer {
    port: u16,
    password: super::tls::Secret,
    /// The watchdog shell; its stdin is the pipe whose closing stops PgBouncer.
    watchdog: Child,
}

impl PgBouncer {
    /// The `pgbouncer` binary, if installed (`PATH`, then `/usr/sbin`).
    #[must_use]
    pub fn find() -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join("pgbouncer"))
            .find(|binary| binary.is_file())
    }

    /// Starts PgBouncer in `pool_mode` (`session`, `transaction`, `statement`) in front
    /// of `cluster` (without TLS), with `pool_size` server connections per database and
    /// user, kept open and used in turn (`server_round_robin`): a client's consecutive
    /// transactions land on different server connections, so anything that relies on
    /// session state shows. Every database name reaches the cluster's database of that
    /// name as its superuser. With `ignore_options`, PgBouncer drops the `options`
    /// startup parameter instead of refusing the connection (a common workaround).
    /// Blocks until it listens.
    ///
    /// # Errors
    /// [`ClusterError::BinariesNotFound`] without `pgbouncer`; [`ClusterError::Io`] if
    /// it cannot be started; [`ClusterError::StartFailed`] if it exits or does not
    /// listen within 10 s (with its log).
    pub fn start(
        cluster: &PrivateCluster,
        pool_mode: &str,
        pool_size: u32,
        ignore_options: bool,
    ) -> Result<Self, ClusterError> {
        let binary = Self::find().ok_or_else(|| ClusterError::BinariesNotFound {
            searched: "PATH and /usr/sbin for pgbouncer (Debian: apt-get install pgbouncer)".into(),
        })?;
        let dir = tempfile::Builder::new().prefix("memdb-pgbouncer-").tempdir().map_err(io_err("create a temp dir"))?;
        let port = free_port()?;
        let log = dir.path().join("pgbouncer.log");
        let ini = dir.path().join("pgbouncer.ini");
        // Clients authenticate with the cluster's password too: no other local user may
        // reach the cluster through PgBouncer's port.
        let users = dir.path().join("users.txt");
        std::fs::write(&users, format!("\"{SUPERUSER}\" \"{}\"\n", cluster.password()))
            .map_err(io_err("write pgbouncer's users.txt"))?;
        let config = format!(
            "[databases]\n* = host=127.0.0.1 port={} user={SUPERUSER} password={}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
             listen_port = {port}\nunix_socket_dir =\nauth_type = scram-sha-256\nauth_file = {}\n\
             pool_mode = {pool_mode}\n\
             default_pool_size = {pool_size}\nmin_pool_size = {pool_size}\nserver_round_robin = 1\n\
             max_client_conn = 500\nlogfile = {}\nignore_startup_parameters = {}\n",
            cluster.port(),
            cluster.password(),
            users.display(),
            log.display(),
            if ignore_options { "options" } else { "" }
        );
        std::fs::write(&ini, config).map_err(io_err("write pgbouncer.ini"))?;
        let dir = dir.keep();
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("memdb-pgbouncer-watchdog")
            .arg(binary)
            .arg(&ini)
            .arg(&dir)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        // PgBouncer refuses to run as root.
        if let Some(user) = server_user()? {
            for path in [&dir, &ini, &users] {
                chown(path, Some(user.uid), Some(user.gid))
                    .map_err(io_err(format!("chown {} to {SERVER_USER}", path.display())))?;
            }
            command.uid(user.uid).gid(user.gid);
        }
        let watchdog = command.spawn().map_err(io_err("spawn pgbouncer under its watchdog (/bin/sh)"))?;
        // From here on, an early return drops `bouncer`, which stops PgBouncer.
        let bouncer = Self { port, password: super::tls::Secret(cluster.password().to_owned()), watchdog };
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            if Instant::now() > deadline {
                return Err(ClusterError::StartFailed {
                    port,
                    status: ExitStatus::default(),
                    pg_ctl_output: format!("pgbouncer did not listen within {START_TIMEOUT:?}"),
                    log_tail: std::fs::read_to_string(&log).unwrap_or_default(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::info!(port, pool_mode, pool_size, dir = %dir.display(), "pgbouncer started");
        Ok(bouncer)
    }

    /// A DSN for database `dbname` through PgBouncer.
    #[must_use]
    pub fn dsn(&self, dbname: &str) -> String {
        format!("host=127.0.0.1 port={} user={SUPERUSER} dbname={dbname} password={}", self.port, self.password.0)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // EOF on the watchdog's stdin: it stops PgBouncer and removes the temp dir.
        drop(self.watchdog.stdin.take());
        let _ = self.watchdog.wait();
    }
}
