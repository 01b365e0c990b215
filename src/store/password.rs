//! Where the password comes from when the DSN has none: a secret file
//! (`PG_PASSWORD_FILE`, as containers mount them), `PGPASSWORD`, or libpq's password
//! file (`PGPASSFILE`, default `~/.pgpass`).
//!
//! ⚑ A password is never logged, quoted in an error or shown by `Debug`: errors here
//! name the file, never its contents.

use std::path::{Path, PathBuf};

use super::StoreError;
use super::problem::Misconfiguration;

/// The password for `config`'s host, port, database and user, if the DSN has none.
pub(crate) fn fill_in(config: &mut tokio_postgres::Config, password_file: Option<&Path>) -> Result<(), StoreError> {
    if config.get_password().is_some() {
        return Ok(());
    }
    if let Some(path) = password_file {
        config.password(read_secret_file(path)?);
        return Ok(());
    }
    if let Some(password) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
        config.password(password.as_encoded_bytes());
        return Ok(());
    }
    if let Some(path) = passfile_path()
        && let Ok(text) = std::fs::read_to_string(&path)
        && let Some(password) = passfile_lookup(&text, &Target::of(config))
    {
        config.password(password);
    }
    Ok(())
}

/// A secret file's contents, without the trailing newline editors and `echo` add.
fn read_secret_file(path: &Path) -> Result<String, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| StoreError::Misconfigured {
        what: "reading the password",
        problem: Misconfiguration::PasswordFile,
        detail: format!("{}: {e}", path.display()),
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

fn passfile_path() -> Option<PathBuf> {
    match std::env::var_os("PGPASSFILE") {
        Some(path) => Some(PathBuf::from(path)),
        None => std::env::var_os("HOME").map(|home| Path::new(&home).join(".pgpass")),
    }
}

/// What a password file line is matched against.
#[derive(Debug)]
struct Target {
    host: String,
    port: String,
    database: String,
    user: String,
}

impl Target {
    fn of(config: &tokio_postgres::Config) -> Self {
        use tokio_postgres::config::Host;
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            // libpq matches a socket connection as `localhost`.
            _ => "localhost".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
        let user = config.get_user().unwrap_or_default().to_owned();
        let database = config.get_dbname().map_or_else(|| user.clone(), str::to_owned);
        Self { host, port, database, user }
    }
}

/// The password of the first line of a libpq password file matching `target`:
/// `host:port:database:user:password`, `*` matching anything, `\` escaping `:` and `\`.
fn passfile_lookup(text: &str, target: &Target) -> Option<String> {
    text.lines().filter(|line| !line.trim_start().starts_with('#')).find_map(|line| {
        let fields = passfile_fields(line);
        let [host, port, database, user, password] = fields.as_slice() else { return None };
        let matches = |pattern: &String, value: &str| pattern == "*" || pattern == value;
        (matches(host, &target.host)
            && matches(port, &target.port)
            && matches(database, &target.database)
            && matches(user, &target.user))
        .then(|| password.clone())
    })
}

fn passfile_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut().into_iter().for_each(|f| f.extend(chars.next())),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().into_iter().for_each(|f| f.push(c)),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target { host: "db".into(), port: "5432".into(), database: "calls".into(), user: "memdb".into() }
    }

    #[test]
    fn the_first_matching_passfile_line_wins() {
        let text = "# comment\nother:5432:calls:memdb:no\n*:5432:calls:memdb:p\\:w\\\\d\ndb:*:*:*:later\n";
        assert_eq!(passfile_lookup(text, &target()).as_deref(), Some("p:w\\d"));
        assert_eq!(passfile_lookup("db:5433:*:*:x\n", &target()), None);
        assert_eq!(passfile_lookup("db:5432:*:*:has:colons\n", &target()).as_deref(), Some("has:colons"));
        assert_eq!(passfile_lookup("malformed line\n", &target()), None);
    }

    #[test]
    fn a_secret_file_loses_its_trailing_newline_and_its_errors_do_not_quote_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").expect("write");
        let mut config = tokio_postgres::Config::new();
        fill_in(&mut config, Some(&path)).expect("read");
        assert_eq!(config.get_password(), Some(&b"s3cret"[..]));
        let mut config: tokio_postgres::Config = "password=fromdsn".parse().expect("dsn");
        fill_in(&mut config, Some(&path)).expect("dsn wins");
        assert_eq!(config.get_password(), Some(&b"fromdsn"[..]));
        let err = fill_in(&mut tokio_postgres::Config::new(), Some(&dir.path().join("missing"))).expect_err("missing");
        assert!(err.to_string().contains("PG_PASSWORD_FILE"), "{err}");
    }
}
