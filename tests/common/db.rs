//! Per-test databases.

use std::path::PathBuf;

use sea_orm::{ConnectionTrait, Database};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// True when the PostgreSQL half should run. With `CI` set, a missing
    /// `TEST_DATABASE_URL` is a failure, never a silent skip.
    pub fn postgres_available() -> bool {
        match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => true,
            _ if std::env::var_os("CI").is_some() => panic!("CI is set but TEST_DATABASE_URL is not"),
            _ => {
                super::skip::skipped("PostgreSQL", "TEST_DATABASE_URL");
                false
            }
        }
    }
}

/// A database that belongs to one test.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    /// The SQLite file's directory, or the PostgreSQL database name.
    dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL")
}

/// `admin_url` with its database replaced by `name`.
fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = admin.split_once('?').map_or((admin, None), |(b, q)| (b, Some(q)));
    let slash = base
        .rfind('/')
        .filter(|i| *i > "postgres://".len())
        .unwrap_or(base.len());
    let mut url = format!("{}/{name}", &base[..slash]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

impl TestDb {
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let path: PathBuf = dir.path().join("sessions.db");
                let url = format!("sqlite://{}?mode=rwc", path.display());
                Self {
                    backend,
                    url,
                    dir: Some(dir),
                    pg_name: None,
                }
            }
            Backend::Postgres => {
                let name = unique("sstest");
                let admin = Database::connect(admin_url())
                    .await
                    .expect("TEST_DATABASE_URL answers");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create test database");
                let _ = admin.close().await;
                let url = with_database(&admin_url(), &name);
                Self {
                    backend,
                    url,
                    dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// A database someone else made (a private cluster's); not dropped by the test.
    pub fn on_url(url: &str) -> TestDb {
        TestDb {
            backend: Backend::Postgres,
            url: url.to_owned(),
            dir: None,
            pg_name: None,
        }
    }

    /// Another handle on the same database (a second replica); it does not drop it.
    pub fn same_as(other: &TestDb) -> TestDb {
        TestDb {
            backend: other.backend,
            url: other.url.clone(),
            dir: None,
            pg_name: None,
        }
    }

    /// Drops a PostgreSQL test database (SQLite files go with the temp dir).
    pub async fn drop_now(&mut self) {
        if let Some(name) = self.pg_name.take()
            && let Ok(admin) = Database::connect(admin_url()).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
            let _ = admin.close().await;
        }
        self.dir.take();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_name_is_swapped_in_the_url() {
        assert_eq!(
            super::with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            super::with_database("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
