//! The connection string: libpq's settings that tokio-postgres does not know
//! (`sslmode=verify-ca|verify-full`, `sslrootcert`) are taken out before it parses the
//! rest, and a DSN is shown only with its password masked.
//!
//! ⚑ No error or output of this module quotes a value from the DSN: the value may be a
//! password.

use super::StoreError;

/// A DSN split in two: the part tokio-postgres parses, and memdb's own settings.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SplitDsn {
    /// The DSN without [`OWN_KEYS`], in its original form.
    pub rest: String,
    /// `sslmode`, if given.
    pub sslmode: Option<String>,
    /// `sslrootcert`, if given.
    pub sslrootcert: Option<String>,
}

/// One `key=value` of a DSN: where it is in the text, and its decoded parts.
struct Pair {
    span: std::ops::Range<usize>,
    key: String,
    value: String,
}

/// Splits `dsn` (key=value or `postgres://` URL form) into tokio-postgres's part and
/// memdb's own settings.
pub(crate) fn split(dsn: &str) -> Result<SplitDsn, StoreError> {
    let (pairs, url_query) = pairs(dsn)?;
    let mut split = SplitDsn::default();
    let mut rest = String::with_capacity(dsn.len());
    let mut copied = 0;
    for pair in pairs {
        let slot = match pair.key.as_str() {
            "sslmode" => &mut split.sslmode,
            "sslrootcert" => &mut split.sslrootcert,
            _ => continue,
        };
        *slot = Some(pair.value);
        rest.push_str(&dsn[copied..pair.span.start]);
        copied = pair.span.end;
    }
    rest.push_str(&dsn[copied..]);
    if url_query {
        // Removing parameters may leave `?&a=b`, `&&` or a trailing `&` / `?`.
        rest = tidy_url_query(&rest);
    }
    split.rest = rest;
    Ok(split)
}

/// `dsn` with its password replaced by `***`, for logs and `Debug`.
#[must_use]
pub(crate) fn redact(dsn: &str) -> String {
    let Ok((pairs, _)) = pairs(dsn) else {
        // Unparsable: show nothing of it rather than risk a password.
        return "<unparsable DSN>".to_owned();
    };
    let mut out = String::with_capacity(dsn.len());
    let mut copied = 0;
    for pair in pairs.iter().filter(|p| p.key == "password") {
        let Some(eq) = dsn[pair.span.clone()].find('=') else { continue };
        out.push_str(&dsn[copied..=pair.span.start + eq]);
        out.push_str("***");
        copied = pair.span.end;
    }
    out.push_str(&dsn[copied..]);
    if let Some(masked) = redact_url_userinfo(&out) {
        return masked;
    }
    out
}

/// The pairs of `dsn`, and whether they come from a URL's query string.
fn pairs(dsn: &str) -> Result<(Vec<Pair>, bool), StoreError> {
    match url_rest(dsn) {
        Some(_) => Ok((url_pairs(dsn), true)),
        None => Ok((key_value_pairs(dsn)?, false)),
    }
}

/// Where a URL DSN's text after the scheme starts (tokio-postgres's test: the exact
/// prefix, no leading space).
fn url_rest(dsn: &str) -> Option<usize> {
    ["postgresql://", "postgres://"].iter().find(|p| dsn.starts_with(**p)).map(|p| p.len())
}

/// ⚑ Where a URL's parts are, found as tokio-postgres finds them: the credentials end
/// at the first `@` anywhere (a password may hold `/` or `?`), and the query string
/// starts at the first `?` after them. Returns (the credentials' range, the query's
/// start).
fn url_layout(dsn: &str) -> Option<(Option<std::ops::Range<usize>>, Option<usize>)> {
    let start = url_rest(dsn)?;
    let credentials = dsn[start..].find('@').map(|at| start..start + at);
    let after = credentials.as_ref().map_or(start, |c| c.end + 1);
    Some((credentials, dsn[after..].find('?').map(|q| after + q)))
}

/// The query parameters of a URL DSN, percent-decoded.
fn url_pairs(dsn: &str) -> Vec<Pair> {
    let Some((_, Some(query_start))) = url_layout(dsn) else { return Vec::new() };
    let mut pairs = Vec::new();
    let mut start = query_start + 1;
    for part in dsn[query_start + 1..].split('&') {
        let span = start..start + part.len();
        start = span.end + 1;
        if part.is_empty() {
            continue;
        }
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        pairs.push(Pair { span, key: percent_decode(key), value: percent_decode(value) });
    }
    pairs
}

/// Percent-decoding as tokio-postgres does it: a `%` not followed by two hex digits
/// stays as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) if bytes[i] == b'%' => {
                out.push(byte);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn tidy_url_query(url: &str) -> String {
    let Some((_, Some(query_start))) = url_layout(url) else { return url.to_owned() };
    let (base, query) = (&url[..query_start], &url[query_start + 1..]);
    let kept: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) }
}

/// A URL's `user:password@` with the password masked, if it has one.
fn redact_url_userinfo(dsn: &str) -> Option<String> {
    let (Some(credentials), _) = url_layout(dsn)? else { return None };
    let colon = dsn[credentials.clone()].find(':')? + credentials.start;
    Some(format!("{}***{}", &dsn[..=colon], &dsn[credentials.end..]))
}

/// The `key = value` pairs of a libpq key=value DSN: values may be single-quoted, and
/// a backslash escapes the next character (as libpq parses them).
fn key_value_pairs(dsn: &str) -> Result<Vec<Pair>, StoreError> {
    let bytes = dsn.as_bytes();
    let mut pairs = Vec::new();
    let mut i = 0;
    let skip_space = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        i = skip_space(i);
        if i == bytes.len() {
            return Ok(pairs);
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = dsn[start..i].to_owned();
        i = skip_space(i);
        if bytes.get(i) != Some(&b'=') {
            // The word is not quoted: it may be a password typed without its key.
            return Err(StoreError::BadDsn(format!("expected `key=value` at byte {start}")));
        }
        i = skip_space(i + 1);
        let mut value = Vec::new();
        if bytes.get(i) == Some(&b'\'') {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err(StoreError::BadDsn(format!("the value of `{key}` has no closing quote"))),
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < bytes.len() => {
                        value.push(bytes[i + 1]);
                        i += 2;
                    }
                    Some(&b) => {
                        value.push(b);
                        i += 1;
                    }
                }
            }
        } else {
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                if bytes[i] == b'\\' && i + 1 < bytes.len() {
                    i += 1;
                }
                value.push(bytes[i]);
                i += 1;
            }
        }
        let value = String::from_utf8(value)
            .map_err(|_| StoreError::BadDsn(format!("the value of `{key}` is not UTF-8 once unescaped")))?;
        pairs.push(Pair { span: start..i, key, value });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_settings_are_taken_out_of_key_value_dsns() {
        let s = split("host=db sslmode=verify-full user=me sslrootcert='/etc/ca dir/ca.pem' dbname=x").expect("split");
        assert_eq!(s.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(s.sslrootcert.as_deref(), Some("/etc/ca dir/ca.pem"));
        assert_eq!(s.rest, "host=db  user=me  dbname=x");
        assert_eq!(split("host = db").expect("spaces").rest, "host = db");
        assert_eq!(split("").expect("empty"), SplitDsn::default());
    }

    #[test]
    fn own_settings_are_taken_out_of_urls() {
        let s = split("postgresql://me@db:5432/x?sslmode=verify-ca&connect_timeout=3&sslrootcert=%2Fca.pem")
            .expect("split");
        assert_eq!(s.sslmode.as_deref(), Some("verify-ca"));
        assert_eq!(s.sslrootcert.as_deref(), Some("/ca.pem"));
        assert_eq!(s.rest, "postgresql://me@db:5432/x?connect_timeout=3");
        assert_eq!(split("postgres://db/x?sslmode=require").expect("only").rest, "postgres://db/x");
        assert_eq!(split("postgres://db/x?sslmode=%zz").expect("lenient").sslmode.as_deref(), Some("%zz"));
        // A `?` or `/` in the password is not the query string (tokio-postgres ends the
        // credentials at the first `@`).
        let s = split("postgres://u:p?w/d@db/x?sslmode=verify-full").expect("split");
        assert_eq!((s.sslmode.as_deref(), s.rest.as_str()), (Some("verify-full"), "postgres://u:p?w/d@db/x"));
    }

    #[test]
    fn malformed_key_value_dsns_are_refused_without_quoting_values() {
        let err = split("host=db password='s3cret").expect_err("unterminated");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(split("host db").is_err());
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(redact("host=db password=s3cret user=me"), "host=db password=*** user=me");
        assert_eq!(redact("host=db password = 'a b\\' c' user=me"), "host=db password =*** user=me");
        assert_eq!(redact("postgresql://me:s3cret@db/x?password=two"), "postgresql://me:***@db/x?password=***");
        assert_eq!(redact("postgres://me@db/x"), "postgres://me@db/x");
        assert_eq!(redact("postgres://me:ab/cd?e@db/x"), "postgres://me:***@db/x");
        assert_eq!(redact("password='open"), "<unparsable DSN>");
    }
}
