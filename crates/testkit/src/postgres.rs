//! A fresh PostgreSQL database per test, on the server that `RADPORT_TEST_POSTGRES_URL` names
//! (`scripts/test.sh` starts a throw-away one and sets it).
//!
//! A test that needs PostgreSQL and finds no server fails, saying how to get one: a test that
//! cannot run is never counted as passed.

/// The variable naming the test server's admin URL.
pub const POSTGRES_URL_ENV: &str = "RADPORT_TEST_POSTGRES_URL";

/// The admin URL of the test server; panics (failing the test) when it is not set.
pub fn postgres_admin_url() -> String {
    match std::env::var(POSTGRES_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{POSTGRES_URL_ENV} is not set: this test needs a PostgreSQL server. Run \
             scripts/test.sh (it starts a throw-away one), or set {POSTGRES_URL_ENV} to an \
             admin URL such as postgres://user@127.0.0.1:5432/postgres"
        ),
    }
}

/// A database created for one test; [`TestDatabase::drop_database`] removes it.
pub struct TestDatabase {
    admin_url: String,
    /// Its name on the server.
    pub name: String,
    /// Its URL (the admin URL with the database name in place of the admin's).
    pub url: String,
}

impl TestDatabase {
    /// Creates a database named after `test` (plus process id and a clock reading, so that
    /// tests running at once never share one).
    pub async fn create(test: &str) -> TestDatabase {
        sqlx::any::install_default_drivers();
        let admin_url = postgres_admin_url();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos();
        let stem: String = test
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(32)
            .collect();
        let name = format!("radport_t_{stem}_{}_{nanos}", std::process::id());
        let pool = sqlx::AnyPool::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_ENV}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&pool)
            .await
            .expect("create database");
        pool.close().await;
        let url = with_database(&admin_url, &name);
        TestDatabase {
            admin_url,
            name,
            url,
        }
    }

    /// Drops the database (closing whatever is still connected to it).
    pub async fn drop_database(self) {
        let pool = sqlx::AnyPool::connect(&self.admin_url)
            .await
            .expect("connect admin url");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&pool)
        .await
        .expect("drop database");
        pool.close().await;
    }
}

/// `url` with its database (the path) replaced by `name`, its query kept.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[after_scheme..]
        .find('/')
        .map_or(base.len(), |i| after_scheme + i);
    format!("{}/{name}{query}", &base[..host_end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_name_replaces_the_path() {
        assert_eq!(
            super::with_database("postgres://u@h:5/postgres?sslmode=disable", "x"),
            "postgres://u@h:5/x?sslmode=disable"
        );
        assert_eq!(
            super::with_database("postgres://u@h", "x"),
            "postgres://u@h/x"
        );
    }
}
