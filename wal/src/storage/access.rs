//! Who may read the WAL: it holds every record a daemon writes. The directory is created
//! `0700` and its files `0600` — or `0750`/`0640` with [`Access::Group`] — whatever the
//! umask. ⚑ An existing directory or file of the log that another user owns, or that
//! others may write, is refused: they could plant records that are replayed into
//! PostgreSQL (CRC-32 detects accidents, not forgery). One that others may read is
//! warned about: refusing it would break every log created before this check (with the
//! usual umask, `0755`/`0644`), and nothing can be planted through a read.

use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Who besides its owner may read the log (like PostgreSQL's `data_directory_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// The owner only: directory `0700`, files `0600`.
    #[default]
    Private,
    /// The owner, and the group reading: directory `0750`, files `0640` (for a group of
    /// operators running `memdb wal inspect`).
    Group,
}

impl Access {
    /// The directory's mode.
    #[must_use]
    pub fn dir_mode(self) -> u32 {
        match self {
            Self::Private => 0o700,
            Self::Group => 0o750,
        }
    }

    /// A file's mode.
    #[must_use]
    pub fn file_mode(self) -> u32 {
        match self {
            Self::Private => 0o600,
            Self::Group => 0o640,
        }
    }

    /// Options to create a file of the log with its mode (then [`Access::fix_mode`]).
    pub(crate) fn create_options(self) -> OpenOptions {
        let mut options = OpenOptions::new();
        options.mode(self.file_mode());
        options
    }

    /// Sets a newly created file's mode exactly: the umask may have taken bits (the
    /// group's, or even the owner's write).
    pub(crate) fn fix_mode(self, file: &File) -> io::Result<()> {
        file.set_permissions(fs::Permissions::from_mode(self.file_mode()))
    }

    /// Creates `path` with the directory mode, exactly; missing parents get the usual
    /// modes (they hold no records, and the group may need to pass through them).
    pub(crate) fn create_dir(self, path: &Path) -> io::Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        match DirBuilder::new().mode(self.dir_mode()).create(path) {
            // Another process made it first: it is checked like any existing one.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            result => result?,
        }
        fs::set_permissions(path, fs::Permissions::from_mode(self.dir_mode()))
    }

    /// Checks an existing directory or file of the log: `Err` when it must be refused,
    /// `Ok(Some(_))` with a warning when others may read it.
    pub(crate) fn check(self, path: &Path, meta: &Metadata) -> Result<Option<String>, UnsafePermissions> {
        let is_dir = meta.is_dir();
        let wanted = if is_dir { self.dir_mode() } else { self.file_mode() };
        let mode = meta.mode() & 0o7777;
        let refuse = |found: String, fix: String| UnsafePermissions { path: path.to_path_buf(), found, fix };
        let recursive = if is_dir { "-R " } else { "" };
        if meta.file_type().is_symlink() {
            return Err(refuse(
                "a symbolic link".into(),
                format!("replace it with the file itself: {}", path.display()),
            ));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(refuse(
                format!("owned by uid {}, not by this process's user (uid {me})", meta.uid()),
                format!(
                    "run as the user that owns the log (uid {}); only if uid {me} is to own it from now on: \
                     chown {recursive}{me} {}",
                    meta.uid(),
                    path.display()
                ),
            ));
        }
        // Others (and, unless for the group, the group) may not write.
        let writable = mode & 0o022;
        if writable != 0 {
            let by = if writable & 0o002 != 0 { "every user" } else { "its group" };
            return Err(refuse(
                format!("mode {mode:04o}: {by} may write it"),
                format!("chmod {recursive}{} {}", self.fix(wanted, is_dir), path.display()),
            ));
        }
        let readable = mode & !wanted & 0o077;
        Ok((readable != 0).then(|| {
            format!(
                "{} has mode {mode:04o}: other users may read the records it holds; `chmod {recursive}{} {}` \
                 (or set the WAL's group access if operators need it)",
                path.display(),
                self.fix(wanted, is_dir),
                path.display()
            )
        }))
    }

    /// What `chmod` sets: the mode for directories, and with `-R` a symbolic mode that
    /// suits the directory and its files alike.
    fn fix(self, wanted: u32, is_dir: bool) -> String {
        match (is_dir, self) {
            (false, _) => format!("{wanted:o}"),
            (true, Self::Private) => "u=rwX,go=".into(),
            (true, Self::Group) => "u=rwX,g=rX,o=".into(),
        }
    }
}

/// A file or directory of the log that others could write (or that another user owns):
/// refused, with the command that fixes it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path} is {found}: refusing to use it (another user could read or plant WAL records); fix: {fix}")]
pub struct UnsafePermissions {
    /// The file or directory.
    pub path: PathBuf,
    /// What is wrong: its mode or its owner.
    pub found: String,
    /// The command that fixes it.
    pub fix: String,
}

impl From<UnsafePermissions> for io::Error {
    fn from(e: UnsafePermissions) -> Self {
        io::Error::new(io::ErrorKind::PermissionDenied, e)
    }
}

/// The [`UnsafePermissions`] inside an I/O error from [`crate::DirStorage::open`].
#[must_use]
pub fn unsafe_permissions(e: &io::Error) -> Option<&UnsafePermissions> {
    e.get_ref().and_then(|inner| inner.downcast_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(access: Access, mode: u32, dir: bool) -> Result<Option<String>, UnsafePermissions> {
        let base = tempfile::tempdir().expect("tempdir");
        let path = base.path().join("x");
        if dir {
            fs::create_dir(&path).expect("dir");
        } else {
            fs::write(&path, b"").expect("file");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        access.check(&path, &fs::symlink_metadata(&path).expect("meta"))
    }

    #[test]
    fn writable_by_others_is_refused_readable_is_warned_about() {
        assert_eq!(check(Access::Private, 0o700, true), Ok(None));
        assert_eq!(check(Access::Private, 0o600, false), Ok(None));
        assert_eq!(check(Access::Group, 0o750, true), Ok(None));
        assert_eq!(check(Access::Group, 0o640, false), Ok(None));
        let world = check(Access::Private, 0o777, true).expect_err("world-writable");
        assert!(world.found.contains("0777") && world.fix.starts_with("chmod -R u=rwX,go= "), "{world}");
        let group = check(Access::Group, 0o660, false).expect_err("group-writable");
        assert!(group.fix.starts_with("chmod 640 "), "{group}");
        assert!(check(Access::Private, 0o644, false).expect("readable").is_some_and(|w| w.contains("0644")));
        assert!(check(Access::Private, 0o750, true).expect("group-readable").is_some());
        assert!(check(Access::Group, 0o755, true).expect("world-readable").is_some());
    }

    #[test]
    fn a_symbolic_link_is_refused() {
        let base = tempfile::tempdir().expect("tempdir");
        let link = base.path().join("link");
        std::os::unix::fs::symlink("/etc/passwd", &link).expect("symlink");
        let err = Access::Private.check(&link, &fs::symlink_metadata(&link).expect("meta")).expect_err("symlink");
        assert!(err.found.contains("symbolic link"), "{err}");
    }
}
