//! `--source`/`--target` to a connected client, as docs/cli.md says: URL from the flag or PGSOURCE/PGTARGET,
//! password from the URL, else PGPASSWORD, else the password file (libpq's order), `sslrootcert` from the
//! URL. Nothing here ever prints the password: errors come from core, which redacts them.

use dms_core::errors::StepError;
use dms_core::pg::pgpass::{self, PgpassKey, PgpassSkipped};
use dms_core::pg::{classify_pg_error, PgConnectOptions, SslMode};
use tokio_postgres::Client;

use crate::output::Progress;

/// The process environment, read once in `main`.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub pgpassword: Option<String>,
    pub pgpassfile: Option<String>,
    pub home: Option<String>,
}

impl Environment {
    pub fn from_process() -> Self {
        let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        Environment {
            pgpassword: var("PGPASSWORD"),
            pgpassfile: var("PGPASSFILE"),
            home: var("HOME"),
        }
    }
}

/// `--source` and `--target`, as every command that reads both databases takes them.
#[derive(clap::Args, Debug)]
pub struct BothDatabases {
    /// Source (Aurora) URL; default $PGSOURCE. TLS defaults to sslmode=require.
    #[arg(long, env = "PGSOURCE", hide_env_values = true, value_name = "URL")]
    pub source: Option<String>,
    /// Target (PlanetScale) URL; default $PGTARGET. TLS defaults to sslmode=verify-full.
    #[arg(long, env = "PGTARGET", hide_env_values = true, value_name = "URL")]
    pub target: Option<String>,
}

impl BothDatabases {
    /// Both sides' connection options, passwords resolved.
    pub fn options(
        &self,
        env: &Environment,
    ) -> Result<(PgConnectOptions, PgConnectOptions), StepError> {
        Ok((
            options(Side::Source, self.source.as_deref(), env)?,
            options(Side::Target, self.target.as_deref(), env)?,
        ))
    }

    /// One connection to each side, opened at the same time.
    pub async fn connect(
        &self,
        env: &Environment,
        progress: &Progress,
    ) -> Result<Connected, StepError> {
        let (source, target) = self.options(env)?;
        progress.say(&format!(
            "connecting to {} and {}",
            source.describe(),
            target.describe()
        ));
        let (source_client, target_client) = tokio::try_join!(source.connect(), target.connect())?;
        Ok(Connected {
            source,
            target,
            source_client,
            target_client,
        })
    }
}

/// Both sides connected, with the options that did it (for messages, and for pg_dump's environment).
pub struct Connected {
    pub source: PgConnectOptions,
    pub target: PgConnectOptions,
    pub source_client: Client,
    pub target_client: Client,
}

/// `--schemas` names none of which may be missing on the source: a typo would otherwise select nothing,
/// check nothing and exit 0. Refused (exit 2) naming the missing schemas. Names are exact (mixed case as
/// is), as every command takes them.
pub async fn refuse_unknown_schemas(source: &Client, schemas: &[String]) -> Result<(), StepError> {
    if schemas.is_empty() {
        return Ok(());
    }
    const SQL: &str = "SELECT s FROM unnest($1::text[]) AS s \
                       WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = s) \
                       ORDER BY 1";
    let missing: Vec<String> = source
        .query(SQL, &[&schemas])
        .await
        .map_err(|e| classify_pg_error("source schemas", &e))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(StepError::payload(format!(
        "--schemas names {} the source does not have: {}; names are exact, mixed case as is (e.g. Sales)",
        if missing.len() == 1 { "a schema" } else { "schemas" },
        missing
            .iter()
            .map(|m| dms_core::rules::sql_ident::quote_if_needed(m))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Which database a URL is for: it decides the flag and variable named in messages and the TLS default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl Side {
    fn flag(self) -> &'static str {
        match self {
            Side::Source => "--source",
            Side::Target => "--target",
        }
    }

    fn variable(self) -> &'static str {
        match self {
            Side::Source => "PGSOURCE",
            Side::Target => "PGTARGET",
        }
    }

    /// The target (PlanetScale) has a publicly trusted certificate: verify it. Aurora's is signed by the
    /// RDS CA, which no public root store holds: `require` encrypts by default, and
    /// `?sslmode=verify-full&sslrootcert=global-bundle.pem` verifies it.
    fn default_ssl(self) -> SslMode {
        match self {
            Side::Source => SslMode::Require,
            Side::Target => SslMode::VerifyFull,
        }
    }
}

/// Connection options for one side, with the password resolved. `url` is the flag's value or the
/// variable's (clap fills it from PGSOURCE/PGTARGET).
pub fn options(
    side: Side,
    url: Option<&str>,
    env: &Environment,
) -> Result<PgConnectOptions, StepError> {
    let url = url.filter(|u| !u.trim().is_empty()).ok_or_else(|| {
        StepError::payload(format!(
            "no {} database: give {} URL or set {}",
            match side {
                Side::Source => "source",
                Side::Target => "target",
            },
            side.flag(),
            side.variable()
        ))
    })?;
    let options = PgConnectOptions::from_url(url, side.default_ssl())
        .map_err(|e| StepError::new(e.name, format!("{}: {}", side.flag(), e.message)))?;
    if options.has_password() {
        return Ok(options);
    }
    if let Some(password) = &env.pgpassword {
        return Ok(options.with_password(Some(password.clone())));
    }
    let Some(path) = pgpass::default_path(env.pgpassfile.as_deref(), env.home.as_deref()) else {
        return Ok(options);
    };
    let key = PgpassKey {
        host: &options.host,
        port: options.port,
        dbname: &options.dbname,
        user: &options.user,
    };
    match pgpass::lookup_file(&path, key) {
        Ok(password) => Ok(options.with_password(password)),
        Err(PgpassSkipped::Missing) => Ok(options),
        Err(PgpassSkipped::TooOpen { mode }) => {
            // libpq ignores such a file with a warning; so do we.
            eprintln!(
                "dms-migrate: warning: password file {} has permissions {mode:o}; it is ignored (chmod 0600 it)",
                path.display()
            );
            Ok(options)
        }
        Err(PgpassSkipped::Unreadable(why)) => {
            eprintln!(
                "dms-migrate: warning: password file {} cannot be read ({why})",
                path.display()
            );
            Ok(options)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_url_names_flag_and_variable() {
        let err = options(Side::Target, None, &Environment::default()).unwrap_err();
        assert!(
            err.message.contains("--target URL or set PGTARGET"),
            "{}",
            err.message
        );
    }

    #[test]
    fn password_order_is_url_then_pgpassword_then_file() {
        let dir = std::env::temp_dir().join(format!("dms-migrate-conn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pgpass");
        std::fs::write(&file, "db:5432:app:mig:from-file\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let mut env = Environment {
            pgpassword: Some("from-env".into()),
            pgpassfile: Some(file.display().to_string()),
            home: None,
        };
        let debug = |o: PgConnectOptions| format!("{o:?}");
        // The password never shows in Debug; has_password tells which source was used.
        let o = options(Side::Source, Some("postgres://mig:in-url@db/app"), &env).unwrap();
        assert!(o.has_password() && !debug(o).contains("in-url"));
        env.pgpassword = None;
        let o = options(Side::Source, Some("postgres://mig@db/app"), &env).unwrap();
        assert!(o.has_password());
        let o = options(Side::Source, Some("postgres://other@db/app"), &env).unwrap();
        assert!(!o.has_password());
        assert_eq!(
            options(Side::Target, Some("postgres://mig@db/app"), &env)
                .unwrap()
                .ssl_mode,
            SslMode::VerifyFull
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
