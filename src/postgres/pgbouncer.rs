//! PgBouncer in front of a private cluster, for tests of memdb through a connection
//! pooler: started (as the server user when root) on a free port with any pool mode,
//! killed on drop.

use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::PrivateCluster;
use super::error::{ClusterError, io_err};
use super::process::{SERVER_USER, SUPERUSER, free_port, server_user};

/// How long PgBouncer may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running PgBouncer.
#[derive(Debug)]
pub struct PgBouncer {
    port: u16,
    child: Child,
    dir: TempDir,
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
    /// user: every database name reaches the cluster's database of that name as its
    /// superuser. Blocks until it listens.
    ///
    /// # Errors
    /// [`ClusterError::BinariesNotFound`] without `pgbouncer`; [`ClusterError::Io`] if
    /// it cannot be started; [`ClusterError::StartFailed`] if it exits or does not
    /// listen within 10 s (with its log).
    pub fn start(cluster: &PrivateCluster, pool_mode: &str, pool_size: u32) -> Result<Self, ClusterError> {
        let binary = Self::find().ok_or_else(|| ClusterError::BinariesNotFound {
            searched: "PATH and /usr/sbin for pgbouncer (Debian: apt-get install pgbouncer)".into(),
        })?;
        let dir = tempfile::Builder::new().prefix("memdb-pgbouncer-").tempdir().map_err(io_err("create a temp dir"))?;
        let port = free_port()?;
        let log = dir.path().join("pgbouncer.log");
        let ini = dir.path().join("pgbouncer.ini");
        let config = format!(
            "[databases]\n* = host=127.0.0.1 port={} user={SUPERUSER}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
             listen_port = {port}\nunix_socket_dir =\nauth_type = any\npool_mode = {pool_mode}\n\
             default_pool_size = {pool_size}\nmax_client_conn = 500\nlogfile = {}\n",
            cluster.port(),
            log.display()
        );
        std::fs::write(&ini, config).map_err(io_err("write pgbouncer.ini"))?;
        let mut command = Command::new(binary);
        command.arg(&ini).current_dir("/").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        // PgBouncer refuses to run as root.
        if let Some(user) = server_user()? {
            for path in [dir.path(), &ini] {
                chown(path, Some(user.uid), Some(user.gid))
                    .map_err(io_err(format!("chown {} to {SERVER_USER}", path.display())))?;
            }
            command.uid(user.uid).gid(user.gid);
        }
        let child = command.spawn().map_err(io_err("spawn pgbouncer"))?;
        let mut bouncer = Self { port, child, dir };
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            let exited = bouncer.child.try_wait().map_err(io_err("wait for pgbouncer"))?;
            if exited.is_some() || Instant::now() > deadline {
                let log_tail = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(ClusterError::StartFailed {
                    port,
                    status: exited.unwrap_or_default(),
                    pg_ctl_output: "pgbouncer did not listen".into(),
                    log_tail,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::info!(port, pool_mode, pool_size, dir = %bouncer.dir.path().display(), "pgbouncer started");
        Ok(bouncer)
    }

    /// A DSN for database `dbname` through PgBouncer.
    #[must_use]
    pub fn dsn(&self, dbname: &str) -> String {
        format!("host=127.0.0.1 port={} user={SUPERUSER} dbname={dbname}", self.port)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
