//! The harness's one error type: what failed while starting, using or stopping a private
//! PostgreSQL cluster, with the output or log that explains it.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

/// An error starting, using or stopping a private PostgreSQL cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// No directory holding `initdb`, `pg_ctl` and `postgres` was found.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; searched {searched}. \
         Install the postgresql-15 server package, or set PG_DSN to an existing server"
    )]
    BinariesNotFound {
        /// Where the search looked.
        searched: String,
    },
    /// Running as root, but the unprivileged user the server must run as does not exist.
    #[error(
        "running as root, and PostgreSQL refuses to run as root, but user {user:?} to run it \
         as does not exist: create it (e.g. `useradd --system {user}`), run as a normal user, \
         or set PG_DSN"
    )]
    NoServerUser {
        /// The user looked up.
        user: String,
    },
    /// Running as root, and the unprivileged server user cannot reach the temp dir.
    #[error(
        "{dir} is not traversable by user {user:?}, who runs the private PostgreSQL: point \
         TMPDIR at a directory every user can reach (e.g. /tmp), or set PG_DSN"
    )]
    TempDirUnreachable {
        /// The directory that is not traversable.
        dir: PathBuf,
        /// The server user.
        user: String,
    },
    /// A file-system or process operation failed.
    #[error("could not {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `initdb` exited unsuccessfully.
    #[error("initdb failed ({status}); its output ends with:\n{output_tail}")]
    InitdbFailed {
        /// The exit status of `initdb`.
        status: ExitStatus,
        /// The end of its stdout and stderr.
        output_tail: String,
    },
    /// `pg_ctl start` exited unsuccessfully.
    #[error(
        "the private PostgreSQL failed to start on 127.0.0.1:{port} ({status}); pg_ctl said: \
         {pg_ctl_output}\nthe server log ends with:\n{log_tail}"
    )]
    StartFailed {
        /// The TCP port it was asked to listen on.
        port: u16,
        /// The exit status of `pg_ctl start`.
        status: ExitStatus,
        /// What `pg_ctl` printed.
        pg_ctl_output: String,
        /// The end of the server log.
        log_tail: String,
    },
    /// `pg_ctl stop` exited unsuccessfully.
    #[error("could not stop the private PostgreSQL in {data_dir} ({status}): {pg_ctl_output}")]
    StopFailed {
        /// The cluster's data directory.
        data_dir: PathBuf,
        /// The exit status of `pg_ctl stop`.
        status: ExitStatus,
        /// What `pg_ctl` printed.
        pg_ctl_output: String,
    },
    /// A database name the harness refuses to splice into SQL.
    #[error(
        "invalid database name {name:?}: use 1 to 63 characters of [a-z0-9_], starting with a \
         letter or an underscore"
    )]
    InvalidDatabaseName {
        /// The rejected name.
        name: String,
    },
    /// PostgreSQL returned an error or the connection failed.
    #[error("PostgreSQL error while {action}: {source}")]
    Postgres {
        /// What was being done.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A PostgreSQL call took longer than the harness allows.
    #[error("timed out after {after:?} while {action}")]
    Timeout {
        /// What was being done.
        action: &'static str,
        /// The time allowed.
        after: Duration,
    },
    /// The certificates of a TLS cluster could not be made.
    #[error("could not make the private PostgreSQL's TLS certificates: {0}")]
    Tls(String),
    /// `PG_DSN` is set to something that is not UTF-8.
    #[error("PG_DSN is set but is not valid UTF-8: fix it or unset it to use a private cluster")]
    PgDsnNotUnicode,
    /// The Tokio runtime shut down while the shared cluster was being started.
    #[error("the Tokio runtime shut down while the shared private PostgreSQL was starting")]
    RuntimeShutDown,
    /// The process-wide shared cluster failed to start (the first attempt's error, kept).
    #[error("the shared private PostgreSQL could not be started: {0}")]
    Shared(#[source] Arc<ClusterError>),
}

/// Maps an I/O error to [`ClusterError::Io`] saying what was being done.
pub(super) fn io_err(action: impl Into<String>) -> impl FnOnce(io::Error) -> ClusterError {
    let action = action.into();
    move |source| ClusterError::Io { action, source }
}
