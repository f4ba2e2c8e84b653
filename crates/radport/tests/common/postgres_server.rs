//! A PostgreSQL server of one test's own (initdb into a temporary directory, its own port), for
//! the tests that stop and restart the catalog's database under a running radport: the shared
//! test server (scripts/test.sh) must keep serving every other test.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The newest installed PostgreSQL's programs (Debian: /usr/lib/postgresql/N/bin).
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (apt-get install postgresql)")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().expect("an initdb under /usr/lib/postgresql")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A running PostgreSQL server; stopped (immediately) and removed on drop.
pub struct PostgresServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

impl PostgresServer {
    /// initdb (user `radport`, trust on loopback) and start.
    pub fn start() -> PostgresServer {
        let dir = tempfile::tempdir().unwrap();
        let server = PostgresServer {
            bin: postgres_bin(),
            port: super::free_port(),
            dir,
        };
        if is_root() {
            // PostgreSQL refuses to run as root: the cluster belongs to `postgres`.
            super::run_ok(Command::new("chown").arg("postgres").arg(server.dir.path()));
        }
        let data = server.data();
        server.pg(&format!(
            "{} -D {data} -U radport --auth=trust",
            server.bin.join("initdb").display()
        ));
        server.start_again();
        server
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs a shell command line as the cluster's owner.
    fn pg(&self, line: &str) {
        let mut command = if is_root() {
            let mut c = Command::new("su");
            c.args(["postgres", "-s", "/bin/sh", "-c", line]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", line]);
            c
        };
        super::run_ok(&mut command);
    }

    /// Starts the server (again) on the same port and data.
    pub fn start_again(&self) {
        let dir = self.dir.path().display().to_string();
        self.pg(&format!(
            "{} -D {} -l {dir}/server.log -w -o '-p {} -k {dir} -c listen_addresses=127.0.0.1 \
             -c fsync=off -c max_connections=200' start",
            self.bin.join("pg_ctl").display(),
            self.data(),
            self.port
        ));
    }

    /// Stops it the way a crash does (`-m immediate`: no checkpoint, connections cut).
    pub fn crash(&self) {
        self.pg(&format!(
            "{} -D {} -m immediate -w stop",
            self.bin.join("pg_ctl").display(),
            self.data()
        ));
    }

    /// The catalog URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://radport@127.0.0.1:{}/postgres", self.port)
    }

    /// Waits until it accepts connections.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not come back");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let data = self.data();
        let line = format!(
            "{} -D {data} -m immediate stop",
            self.bin.join("pg_ctl").display()
        );
        let _ = if is_root() {
            Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", &line])
                .output()
        } else {
            Command::new("sh").args(["-c", &line]).output()
        };
    }
}
