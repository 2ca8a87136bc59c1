//! The password file libpq reads (`PGPASSFILE`, else `~/.pgpass`), so a password need not appear in a
//! command line where `ps` shows it. Format and rules as in the PostgreSQL manual, "The Password File":
//! `hostname:port:database:username:password` per line, `*` matches anything, `\:` and `\\` escape, the
//! first matching line wins, and on Unix the file is ignored when group or others may read it.

use std::path::{Path, PathBuf};

/// What a password is looked up for.
#[derive(Debug, Clone, Copy)]
pub struct PgpassKey<'a> {
    pub host: &'a str,
    pub port: u16,
    pub dbname: &'a str,
    pub user: &'a str,
}

/// The file libpq would read: `PGPASSFILE` when set, else `$HOME/.pgpass`.
pub fn default_path(pgpassfile: Option<&str>, home: Option<&str>) -> Option<PathBuf> {
    match pgpassfile.filter(|p| !p.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None => home
            .filter(|h| !h.is_empty())
            .map(|h| Path::new(h).join(".pgpass")),
    }
}

/// Why a password file was not used (worth a warning, never an error: libpq only warns too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgpassSkipped {
    Missing,
    /// Group or others may read it; libpq ignores such a file and so do we.
    TooOpen {
        mode: u32,
    },
    Unreadable(String),
}

/// The password for `key` from the file at `path`, or why the file could not be used.
pub fn lookup_file(path: &Path, key: PgpassKey<'_>) -> Result<Option<String>, PgpassSkipped> {
    let metadata = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(PgpassSkipped::Missing),
        Err(e) => return Err(PgpassSkipped::Unreadable(e.to_string())),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if metadata.is_file() && mode & 0o077 != 0 {
            return Err(PgpassSkipped::TooOpen { mode });
        }
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| PgpassSkipped::Unreadable(e.to_string()))?;
    Ok(lookup(&text, key))
}

/// The password of the first line of `text` that matches `key`.
pub fn lookup(text: &str, key: PgpassKey<'_>) -> Option<String> {
    let port = key.port.to_string();
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(split_fields)
        .find(|fields| {
            matches(&fields[0], key.host, is_local_host(key.host))
                && matches(&fields[1], &port, false)
                && matches(&fields[2], key.dbname, false)
                && matches(&fields[3], key.user, false)
        })
        .map(|fields| fields[4].clone())
}

/// libpq matches `localhost` for connections over a Unix socket; a host given as a path is one.
fn is_local_host(host: &str) -> bool {
    host.starts_with('/')
}

fn matches(field: &str, value: &str, local_socket: bool) -> bool {
    field == "*" || field == value || (local_socket && field == "localhost")
}

/// Five fields split on unescaped `:`; `\x` stands for `x`. Lines with fewer fields are ignored (as libpq
/// does); the password field keeps any further colons.
fn split_fields(line: &str) -> Option<[String; 5]> {
    let line = line.trim_end_matches('\r');
    let mut fields: Vec<String> = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut()?.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            _ => fields.last_mut()?.push(c),
        }
    }
    <[String; 5]>::try_from(fields).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(host: &'a str, port: u16, dbname: &'a str, user: &'a str) -> PgpassKey<'a> {
        PgpassKey {
            host,
            port,
            dbname,
            user,
        }
    }

    #[test]
    fn first_matching_line_wins_with_wildcards_and_escapes() {
        let file = "# comment\n\
                    db.example.com:5432:app:migrator:first\n\
                    db.example.com:*:*:migrator:second\n\
                    *:*:*:*:fallback\n\
                    my\\:host:6432:app:a\\\\b:pa\\:ss:word\n";
        assert_eq!(
            lookup(file, key("db.example.com", 5432, "app", "migrator")).as_deref(),
            Some("first")
        );
        assert_eq!(
            lookup(file, key("db.example.com", 6432, "other", "migrator")).as_deref(),
            Some("second")
        );
        assert_eq!(
            lookup(file, key("elsewhere", 1, "x", "y")).as_deref(),
            Some("fallback")
        );
        let escaped = "my\\:host:6432:app:a\\\\b:pa\\:ss:word\n";
        assert_eq!(
            lookup(escaped, key("my:host", 6432, "app", "a\\b")).as_deref(),
            Some("pa:ss:word")
        );
        assert_eq!(lookup("short:line\n", key("short", 1, "a", "b")), None);
        assert_eq!(
            lookup(
                "localhost:5432:*:u:sock\n",
                key("/run/postgresql", 5432, "d", "u")
            )
            .as_deref(),
            Some("sock")
        );
    }

    #[test]
    fn path_prefers_pgpassfile() {
        assert_eq!(
            default_path(Some("/x/pass"), Some("/home/u")),
            Some(PathBuf::from("/x/pass"))
        );
        assert_eq!(
            default_path(None, Some("/home/u")),
            Some(PathBuf::from("/home/u/.pgpass"))
        );
        assert_eq!(default_path(Some(""), None), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_can_read_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pgpass-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pgpass");
        std::fs::write(&path, "*:*:*:*:secret\n").unwrap();
        let k = key("h", 5432, "d", "u");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            lookup_file(&path, k),
            Err(PgpassSkipped::TooOpen { mode: 0o644 })
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(lookup_file(&path, k), Ok(Some("secret".to_string())));
        assert_eq!(
            lookup_file(&dir.join("absent"), k),
            Err(PgpassSkipped::Missing)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
