//! The server's processes: finding PostgreSQL's binaries, the user the server runs as
//! when this process is root, and running `initdb`, `pg_ctl start`/`stop` and the
//! clean-up watchdog as that user. Knows commands, files and ports; knows nothing of
//! connections or databases (that is `cluster`).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, chown};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::error::{ClusterError, io_err};

/// The unprivileged user the server runs as when this process is root.
pub(super) const SERVER_USER: &str = "nobody";

/// The superuser `initdb` creates; every connection uses it (trust authentication).
pub(super) const SUPERUSER: &str = "postgres";

/// Start attempts: another process may take the port between probing it and binding it.
const START_ATTEMPTS: u32 = 3;

/// How much of a log or of command output an error quotes.
const TAIL_BYTES: usize = 4096;

/// Server settings. `fsync`, `synchronous_commit` and `full_page_writes` are off because
/// the cluster is thrown away after the tests: crash safety of the server buys nothing
/// here and costs time (memdb's own WAL durability is tested separately). A small
/// `shared_buffers` keeps startup and memory low; `max_connections` leaves room for many
/// tests running in parallel. With `synchronous_commit` off, a server stopped the way a
/// crash would stop it (`PrivateCluster::stop_server`) loses its last commits: a drill
/// that needs them to survive turns it on for its sessions.
const SERVER_SETTINGS: &str = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off \
     -c max_connections=200 -c shared_buffers=16MB -c huge_pages=off";

/// Server settings of a durable cluster ([`super::PrivateCluster::start_durable`]): crash
/// safety as PostgreSQL ships it (`fsync`, `synchronous_commit`, `full_page_writes` on) and
/// its default `shared_buffers`, so a benchmark compares against a real committed write.
const DURABLE_SERVER_SETTINGS: &str = "-c max_connections=200 -c shared_buffers=128MB -c huge_pages=off";

/// Run by `/bin/sh` as the watchdog: `$1` pg_ctl, `$2` data dir, `$3` temp dir. Ignores
/// terminal signals (it also runs in its own process group) so that Ctrl-C reaches only
/// the test process, whose death closes the pipe and wakes `read`.
const WATCHDOG_SCRIPT: &str = r#"trap '' HUP INT QUIT TERM PIPE
read -r _ || :
"$1" stop -D "$2" -m immediate -w >/dev/null 2>&1
rm -rf -- "$3""#;

/// The uid and gid the server runs as when this process is root.
#[derive(Debug, Clone, Copy)]
pub(super) struct ServerUser {
    pub(super) uid: u32,
    pub(super) gid: u32,
}

/// The binaries the harness runs.
#[derive(Debug)]
struct Binaries {
    initdb: PathBuf,
    pg_ctl: PathBuf,
}

/// One server's files and how to run its commands: the binaries, the user, and the data
/// dir, socket dir and log inside the cluster's temp dir.
#[derive(Debug)]
pub(super) struct Server {
    initdb: PathBuf,
    pg_ctl: PathBuf,
    run_as: Option<ServerUser>,
    base_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    /// Runs with [`DURABLE_SERVER_SETTINGS`] instead of [`SERVER_SETTINGS`].
    pub(super) durable: bool,
    /// Runs with `ssl = on` (its certificate and key in the data dir).
    pub(super) tls: bool,
}

impl Server {
    /// Finds the binaries and the user to run as, and prepares `base_dir` (an empty temp
    /// dir) for a cluster: the socket dir inside it, both owned by the server user.
    pub(super) fn prepare(base_dir: &Path) -> Result<Self, ClusterError> {
        let bins = find_binaries()?;
        let run_as = server_user()?;
        let socket_dir = base_dir.join("sock");
        // ⚑ The socket is trusted (no password): only this user and the server's may
        // reach it.
        std::fs::DirBuilder::new().mode(0o700).create(&socket_dir).map_err(io_err("create the socket dir"))?;
        if let Some(user) = run_as {
            check_traversable(base_dir, user)?;
            for dir in [base_dir, &socket_dir] {
                chown(dir, Some(user.uid), Some(user.gid))
                    .map_err(io_err(format!("chown {} to {SERVER_USER}", dir.display())))?;
            }
        }
        Ok(Self {
            initdb: bins.initdb,
            pg_ctl: bins.pg_ctl,
            run_as,
            base_dir: base_dir.to_path_buf(),
            data_dir: base_dir.join("data"),
            socket_dir,
            log_file: base_dir.join("postgres.log"),
            durable: false,
            tls: false,
        })
    }

    pub(super) fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    pub(super) fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub(super) fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub(super) fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// A command for a PostgreSQL binary, run as the server user when we are root.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        // The server user may not be able to enter our working directory, and initdb
        // needs to resolve it.
        cmd.current_dir(&self.base_dir).stdin(Stdio::null());
        if let Some(user) = self.run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }

    /// Starts the watchdog: it stops the server and removes the temp dir once this
    /// process dies, however it dies.
    pub(super) fn spawn_watchdog(&self) -> Result<Child, ClusterError> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("memdb-pg-watchdog")
            .arg(&self.pg_ctl)
            .arg(&self.data_dir)
            .arg(&self.base_dir)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if let Some(user) = self.run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        // Our end of the stdin pipe is close-on-exec, so no other child inherits it: it
        // closes exactly when this process dies.
        cmd.spawn().map_err(io_err("spawn the private PostgreSQL's watchdog (/bin/sh)"))
    }

    /// Writes `contents` to `path` with `mode`, owned by the server user.
    pub(super) fn write_owned(&self, path: &Path, contents: &str, mode: u32) -> Result<(), ClusterError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let action = || format!("write {}", path.display());
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
            .map_err(io_err(action()))?;
        file.write_all(contents.as_bytes()).map_err(io_err(action()))?;
        if let Some(user) = self.run_as {
            chown(path, Some(user.uid), Some(user.gid)).map_err(io_err(format!("chown {}", path.display())))?;
        }
        Ok(())
    }

    /// Creates the cluster in the data dir; with `password_file`, the superuser gets the
    /// password it holds.
    pub(super) fn initdb(&self, password_file: Option<&Path>) -> Result<(), ClusterError> {
        let mut command = self.command(&self.initdb);
        command
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-A", "trust", "-U", SUPERUSER, "--no-sync", "-E", "UTF8"])
            .arg("--locale=C");
        if let Some(file) = password_file {
            command.arg(format!("--pwfile={}", file.display()));
        }
        let output = command.output().map_err(io_err(format!("run {}", self.initdb.display())))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(ClusterError::InitdbFailed { status: output.status, output_tail: output_tail(&output) })
        }
    }

    /// Runs `pg_ctl start -w` on a free port, retrying with another port if someone else
    /// took the probed one first. Returns the port.
    pub(super) fn start_on_free_port(&self) -> Result<u16, ClusterError> {
        let mut attempt = 1;
        loop {
            let port = free_port()?;
            match self.start(port) {
                Ok(()) => return Ok(port),
                Err(ClusterError::StartFailed { log_tail, .. })
                    if attempt < START_ATTEMPTS && log_tail.contains("could not bind") =>
                {
                    tracing::debug!(port, attempt, "port taken before the server bound it; retrying");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Runs `pg_ctl start -w` on `port`: returns once the server accepts connections
    /// (after crash recovery, if it was stopped with `-m immediate`).
    pub(super) fn start(&self, port: u16) -> Result<(), ClusterError> {
        let settings = if self.durable { DURABLE_SERVER_SETTINGS } else { SERVER_SETTINGS };
        let tls = if self.tls { " -c ssl=on" } else { "" };
        let options =
            format!("-k {} -h 127.0.0.1 -p {port} {settings}{tls}", shell_quote(&self.socket_dir.to_string_lossy()));
        let output = self
            .command(&self.pg_ctl)
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file)
            .arg("-o")
            .arg(options)
            .output()
            .map_err(io_err(format!("run {}", self.pg_ctl.display())))?;
        if output.status.success() {
            return Ok(());
        }
        Err(ClusterError::StartFailed {
            port,
            status: output.status,
            pg_ctl_output: output_tail(&output),
            log_tail: file_tail(&self.log_file),
        })
    }

    /// Runs `pg_ctl stop -m immediate -w`: every server process exits at once, without a
    /// checkpoint, as in a crash; the next start runs crash recovery.
    pub(super) fn stop(&self) -> Result<(), ClusterError> {
        let output = self
            .command(&self.pg_ctl)
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(&self.data_dir)
            .output()
            .map_err(io_err(format!("run {}", self.pg_ctl.display())))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(ClusterError::StopFailed {
                data_dir: self.data_dir.clone(),
                status: output.status,
                pg_ctl_output: output_tail(&output),
            })
        }
    }
}

/// Finds `initdb`, `pg_ctl` and `postgres`: `pg_config --bindir` first (it may belong to
/// a client-only install), then the newest `/usr/lib/postgresql/<version>/bin`.
fn find_binaries() -> Result<Binaries, ClusterError> {
    let mut searched = Vec::new();
    match Command::new("pg_config").arg("--bindir").stdin(Stdio::null()).stderr(Stdio::null()).output() {
        Ok(output) if output.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
            if let Some(bins) = binaries_in(&dir) {
                return Ok(bins);
            }
            searched.push(format!("{} (from pg_config --bindir)", dir.display()));
        }
        _ => searched.push("pg_config --bindir (not runnable)".to_owned()),
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let version: Option<Vec<u32>> = name.to_str()?.split('.').map(|part| part.parse().ok()).collect();
            Some((version?, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    if let Some(bins) = versions.iter().rev().find_map(|(_, dir)| binaries_in(dir)) {
        return Ok(bins);
    }
    searched.push("/usr/lib/postgresql/*/bin".to_owned());
    Err(ClusterError::BinariesNotFound { searched: searched.join(", ") })
}

fn binaries_in(dir: &Path) -> Option<Binaries> {
    // pg_ctl runs the `postgres` next to it.
    let complete = ["initdb", "pg_ctl", "postgres"].iter().all(|name| dir.join(name).is_file());
    complete.then(|| Binaries { initdb: dir.join("initdb"), pg_ctl: dir.join("pg_ctl") })
}

/// `Some(nobody)` when this process is root (PostgreSQL refuses to run as root), else
/// `None`: run as ourselves.
pub(super) fn server_user() -> Result<Option<ServerUser>, ClusterError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let not_found = || ClusterError::NoServerUser { user: SERVER_USER.to_owned() };
    let name = CString::new(SERVER_USER).map_err(|_| not_found())?;
    // SAFETY: `passwd` is plain data (integers and pointers); all zeroes is a valid value.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: every pointer is valid for the duration of the call and `buf.len()` is
        // the buffer's real length; getpwnam_r (unlike getpwnam) is thread-safe.
        let rc = unsafe { libc::getpwnam_r(name.as_ptr(), &mut entry, buf.as_mut_ptr(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(ClusterError::Io {
                action: format!("look up user {SERVER_USER}"),
                source: io::Error::from_raw_os_error(rc),
            });
        }
        if result.is_null() {
            return Err(not_found());
        }
        return Ok(Some(ServerUser { uid: entry.pw_uid, gid: entry.pw_gid }));
    }
}

/// Checks that `user` can reach `dir` (mode bits only, not ACLs): every ancestor must
/// be searchable by it. `dir` itself is chowned to the user afterwards.
fn check_traversable(dir: &Path, user: ServerUser) -> Result<(), ClusterError> {
    for ancestor in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(ancestor).map_err(io_err(format!("inspect {}", ancestor.display())))?;
        let mode = meta.mode();
        let searchable = if meta.uid() == user.uid {
            mode & 0o100 != 0
        } else if meta.gid() == user.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !searchable {
            return Err(ClusterError::TempDirUnreachable { dir: ancestor.to_path_buf(), user: SERVER_USER.to_owned() });
        }
    }
    Ok(())
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it, close).
pub(super) fn free_port() -> Result<u16, ClusterError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_err("bind 127.0.0.1:0 to find a free port"))?;
    let port = listener.local_addr().map_err(io_err("read the probed port"))?.port();
    Ok(port)
}

/// Quotes `s` for `sh`, which `pg_ctl` passes its `-o` options through.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn output_tail(output: &Output) -> String {
    let mut all = output.stdout.clone();
    all.extend_from_slice(&output.stderr);
    tail(&all)
}

fn file_tail(path: &Path) -> String {
    let read = || -> io::Result<Vec<u8>> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let keep = u64::try_from(TAIL_BYTES).unwrap_or(u64::MAX);
        file.seek(SeekFrom::Start(len.saturating_sub(keep)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    match read() {
        Ok(bytes) => tail(&bytes),
        Err(error) => format!("(could not read {}: {error})", path.display()),
    }
}

/// The last `TAIL_BYTES` of `bytes` as text, starting at a line boundary when cut.
fn tail(bytes: &[u8]) -> String {
    let cut = bytes.len().saturating_sub(TAIL_BYTES);
    let mut text = &bytes[cut..];
    if cut > 0
        && let Some(newline) = text.iter().position(|&b| b == b'\n')
    {
        text = &text[newline + 1..];
    }
    let text = String::from_utf8_lossy(text);
    let text = text.trim_end();
    if text.is_empty() { "(nothing)".to_owned() } else { text.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("/tmp/it's"), r"'/tmp/it'\''s'");
    }

    #[test]
    fn tail_keeps_whole_lines_from_the_end() {
        let long = format!("{}\nlast line\n", "x".repeat(TAIL_BYTES));
        assert_eq!(tail(long.as_bytes()), "last line");
        assert_eq!(tail(b"short\n"), "short");
        assert_eq!(tail(b""), "(nothing)");
    }
}
