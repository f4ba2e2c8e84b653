//! Garage, the replicated S3-compatible store of the distributed tests: three nodes on loopback
//! with replication factor 3, started by `scripts/garage.sh` (the script README's "Running
//! several nodes" uses), in a temporary directory, on ports of their own. What a bucket holds
//! is asked through the S3 API by `s3_oracle.py` (boto3), not through radport.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// True when the `garage` binary is there (`scripts/garage.sh install`).
pub fn garage_installed() -> bool {
    Command::new("bash")
        .arg("-c")
        .arg("command -v garage || test -x \"$HOME/.cargo/bin/garage\"")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when boto3 (the oracle's S3 client) imports.
pub fn boto3_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import boto3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A base port with the 30 ports above it free (each node n uses base + 10n .. + 3). Taken
/// below the kernel's ephemeral range (32768 and up here), where the `free_port()`s of servers
/// starting alongside cannot land, and never the same block twice in one test process.
fn free_base_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Start at a place of this process's own, so that two test runs at once rarely meet.
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 300) as u16 * 40,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..200 {
        let mut base = NEXT.fetch_add(40, Ordering::SeqCst);
        if base > 32_000 {
            NEXT.store(20_040, Ordering::SeqCst);
            base = 20_000;
        }
        let all_free =
            (0..30).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no block of 30 free ports");
}

/// A three-node Garage cluster, stopped on drop.
pub struct Garage {
    dir: tempfile::TempDir,
    base_port: u16,
    /// Access key id and secret of the key that may use every bucket the test creates.
    pub key_id: String,
    pub secret: String,
}

impl Garage {
    pub fn start() -> Garage {
        // A node that cannot bind its ports (taken meanwhile by another program) makes the
        // script exit with 3: then again, in a fresh directory on other ports.
        let (dir, base_port, out) = (0..3)
            .find_map(|attempt| {
                let dir = tempfile::tempdir().unwrap();
                let base_port = free_base_port();
                let mut start = Self::command(&["start", &dir.path().to_string_lossy()], base_port);
                let out = start.output().expect("bash scripts/garage.sh start");
                if out.status.code() == Some(3) && attempt < 2 {
                    let _ =
                        Self::command(&["stop", &dir.path().to_string_lossy()], base_port).output();
                    return None;
                }
                assert!(
                    out.status.success(),
                    "{start:?} failed: {}",
                    super::output_text(&out)
                );
                Some((dir, base_port, out))
            })
            .expect("garage started");
        let env = String::from_utf8_lossy(&out.stdout).to_string();
        let value = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} missing from scripts/garage.sh start:\n{env}"))
                .to_string()
        };
        Garage {
            key_id: value("AWS_ACCESS_KEY_ID"),
            secret: value("AWS_SECRET_ACCESS_KEY"),
            dir,
            base_port,
        }
    }

    fn command(args: &[&str], base_port: u16) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(root().join("scripts/garage.sh"))
            .args(args)
            .env("GARAGE_BASE_PORT", base_port.to_string());
        command
    }

    fn script(args: &[&str], base_port: u16) -> Output {
        super::run_ok(&mut Self::command(args, base_port))
    }

    fn dir(&self) -> String {
        self.dir.path().to_string_lossy().to_string()
    }

    /// The S3 endpoint of node `n`.
    pub fn endpoint_of(&self, n: u16) -> String {
        format!("http://127.0.0.1:{}", self.base_port + 10 * n)
    }

    /// The S3 endpoint radport is given (node 0; every node serves every bucket).
    pub fn endpoint(&self) -> String {
        self.endpoint_of(0)
    }

    /// The region Garage signs for.
    pub fn region(&self) -> &'static str {
        "garage"
    }

    /// `--archive-url` for `bucket` under `prefix` (empty: the bucket's root), credentials in
    /// the URL.
    pub fn archive_url(&self, bucket: &str, prefix: &str) -> String {
        let path = if prefix.is_empty() {
            bucket.to_string()
        } else {
            format!("{bucket}/{prefix}")
        };
        format!(
            "s3://{path}?endpoint={}&region={}&allow_http=true&access_key_id={}&secret_access_key={}",
            self.endpoint(),
            self.region(),
            self.key_id,
            self.secret
        )
    }

    /// The `AWS_*` environment of a client of this cluster (through node `n`).
    pub fn env_of(&self, n: u16) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint_of(n)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", self.region().into()),
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
        ]
    }

    /// The `garage` CLI against node 0.
    fn garage(&self, args: &[&str]) -> Output {
        let config = self.dir.path().join("node0.toml");
        super::run_ok(
            Command::new("bash")
                .arg("-c")
                .arg("g=$(command -v garage || echo \"$HOME/.cargo/bin/garage\"); exec \"$g\" \"$@\"")
                .arg("garage")
                .arg("-c")
                .arg(&config)
                .args(args),
        )
    }

    /// A new bucket that the cluster's key may read and write.
    pub fn create_bucket(&self, bucket: &str) {
        self.garage(&["bucket", "create", bucket]);
        self.garage(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            bucket,
            "--key",
            &self.key_id,
        ]);
    }

    /// Stops node `n` (0, 1 or 2), as a machine failing would.
    pub fn stop_node(&self, n: u16) {
        Self::script(&["stop-node", &self.dir(), &n.to_string()], self.base_port);
    }

    /// Starts node `n` again.
    pub fn start_node(&self, n: u16) {
        Self::script(&["start-node", &self.dir(), &n.to_string()], self.base_port);
    }

    /// The data blocks node `n` holds on its disk: the hashes named by the files under its
    /// data directory (`xx/yy/<hash>`, `.zst` when compressed).
    pub fn block_hashes(&self, n: u16) -> std::collections::BTreeSet<String> {
        fn walk(dir: &Path, out: &mut std::collections::BTreeSet<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                    let hash = name.split('.').next().unwrap_or_default();
                    if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                        out.insert(hash.to_string());
                    }
                }
            }
        }
        let mut hashes = std::collections::BTreeSet::new();
        walk(&self.dir.path().join(format!("node{n}/data")), &mut hashes);
        hashes
    }

    /// `scripts/garage.sh repair`: the metadata tables, then the blocks, resynced on every node
    /// at once (instead of within Garage's own anti-entropy period).
    pub fn repair(&self) {
        Self::script(&["repair", &self.dir()], self.base_port);
    }

    fn oracle(&self, args: &[&str]) -> Vec<u8> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/s3_oracle.py");
        super::run_ok(
            Command::new("python3")
                .arg(script)
                .args(args)
                .envs(self.env_of(0)),
        )
        .stdout
    }

    /// Every object under `prefix`, key → size (ListObjectsV2, every page).
    pub fn objects(&self, bucket: &str, prefix: &str) -> BTreeMap<String, u64> {
        serde_json::from_slice(&self.oracle(&["list", bucket, prefix])).unwrap()
    }

    /// An object's bytes.
    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.oracle(&["get", bucket, key])
    }

    /// Every object under `prefix`, key → hex SHA-256 of its bytes (one client for all).
    pub fn sha256s(&self, bucket: &str, prefix: &str) -> BTreeMap<String, String> {
        serde_json::from_slice(&self.oracle(&["sha256", bucket, prefix])).unwrap()
    }

    /// Keys of the multipart uploads started and neither completed nor aborted.
    pub fn pending_multipart_uploads(&self, bucket: &str) -> Vec<String> {
        serde_json::from_slice(&self.oracle(&["uploads", bucket])).unwrap()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("scripts/garage.sh"))
            .args(["stop", &self.dir()])
            .env("GARAGE_BASE_PORT", self.base_port.to_string())
            .output();
    }
}

/// Hex SHA-256 of `bytes`, as `Garage::sha256s` gives it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
