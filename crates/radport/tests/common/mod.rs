//! Shared harness of the end-to-end tests: a real `radport serve` process on free ports with
//! its own data directory, the real DCMTK tools, and a raw DIMSE client for what DCMTK cannot
//! be made to do on purpose (abort half-way, send garbage).

pub mod garage;
pub mod postgres_server;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Absolute path of a DCMTK tool (pip's pynetdicom may shadow the names on PATH).
pub fn dcmtk(tool: &str) -> PathBuf {
    let path = PathBuf::from("/usr/bin").join(tool);
    assert!(
        path.exists(),
        "{} is missing: install DCMTK (apt-get install dcmtk)",
        path.display()
    );
    path
}

/// A port free now and never handed out before in this test binary. The kernel may give a
/// port it just gave back out again: two calls without the set could name the same port
/// (stop 37's CI: a test's DICOM TLS port became its server's HTTP port).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// A running `radport serve`.
pub struct Server {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub dicom_port: u16,
    pub http_port: u16,
    pub log_path: PathBuf,
    extra_args: Vec<String>,
    /// Environment variables set for the server process (beyond the test's own).
    env: Vec<(String, String)>,
    /// `prlimit --as` for the server process, in bytes (hostile-input tests).
    address_space_limit: Option<u64>,
    /// Run under `strace` ([`radport_testkit::strace::STRACE_ARGS`]), logging to this file.
    strace_log: Option<PathBuf>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server on a fresh data directory.
    pub fn start(extra_args: &[&str]) -> Server {
        Self::start_with_env(extra_args, &[])
    }

    /// Starts a server on a fresh data directory with extra environment variables (kept on
    /// restarts).
    pub fn start_with_env(extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut server = Self::unstarted(extra_args, env);
        server.spawn();
        server
    }

    fn unstarted(extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        // `--data-dir X` among the extra arguments replaces the temporary one.
        let mut extra: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let mut data_dir = tmp.path().join("data");
        if let Some(i) = extra.iter().position(|a| a == "--data-dir") {
            data_dir = PathBuf::from(extra.remove(i + 1));
            extra.remove(i);
        }
        Server {
            child: None,
            data_dir,
            dicom_port: 0,
            http_port: 0,
            log_path: tmp.path().join("server.log"),
            extra_args: extra,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            address_space_limit: None,
            strace_log: None,
            _tmp: Some(tmp),
        }
    }

    /// A handle on radport reached through a load balancer at these ports (no process of
    /// its own): the helpers of `Server` then talk to whichever node the balancer picks.
    pub fn front(http_port: u16, dicom_port: u16) -> Server {
        let mut front = Self::unstarted(&[], &[]);
        front.http_port = http_port;
        front.dicom_port = dicom_port;
        front
    }

    /// Kills the server process with SIGKILL (a node failing), without waiting for anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a server whose address space is limited to `bytes` (`prlimit --as`), as the
    /// hostile-input tests run it: an allocation at a declared size fails instead of
    /// succeeding on a machine with memory to spare. The limit is kept on restarts.
    pub fn start_limited(extra_args: &[&str], bytes: u64) -> Server {
        let mut server = Self::unstarted(extra_args, &[]);
        server.address_space_limit = Some(bytes);
        server.spawn();
        server
    }

    /// Starts a server under `strace`, its system calls logged to `log` (the durability
    /// proof: `radport_testkit::strace`).
    pub fn start_traced(extra_args: &[&str], log: &Path) -> Server {
        let mut server = Self::unstarted(extra_args, &[]);
        server.strace_log = Some(log.to_path_buf());
        server.spawn();
        server
    }

    /// The server process's peak resident set (`VmHWM`), in kB; 0 when it is not running.
    pub fn peak_rss_kb(&self) -> u64 {
        let Some(child) = self.child.as_ref() else {
            return 0;
        };
        std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts `radport serve` on free ports. A port found free can be taken by another test
    /// before the server binds it: then the server says "Address already in use" and is
    /// started again on other ports.
    fn spawn(&mut self) {
        for attempt in 1..=5 {
            match self.try_spawn() {
                Ok(()) => return,
                Err(log) if attempt < 5 && log.contains("Address already in use") => continue,
                Err(log) => panic!("radport serve exited:\n{log}"),
            }
        }
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        self.dicom_port = free_port();
        self.http_port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let mut command = match (&self.strace_log, self.address_space_limit) {
            (Some(trace), _) => {
                let mut c = Command::new("strace");
                c.args(radport_testkit::strace::STRACE_ARGS)
                    .arg("-o")
                    .arg(trace)
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_radport"));
                c
            }
            (None, Some(bytes)) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--as={bytes}"))
                    .arg("--")
                    .arg(env!("CARGO_BIN_EXE_radport"));
                c
            }
            (None, None) => Command::new(env!("CARGO_BIN_EXE_radport")),
        };
        let child = command
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--dicom-port")
            .arg(self.dicom_port.to_string())
            .arg("--http-port")
            .arg(self.http_port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .args(&self.extra_args)
            // Info, and each pass of the pipeline's scheduler (see `wait_for_scheduler_passes`).
            .env("RADPORT_LOG", "info,radport_pipeline::scheduler=trace")
            // Access is enforced by default; the tests of what it enforces say so (a flag or
            // this variable of their own), the others run open.
            .env("RADPORT_ACCESS", "open")
            // A small ingest journal: made at every test server's first start (1 GiB by
            // default). Four segments of 4 MiB still hold the largest instance journaled.
            .env("RADPORT_JOURNAL_SIZE", "16M")
            // Zeros written ahead of the packs' records while idle: a little (the default's
            // gigabyte, for every server of the suite, would be written for nothing).
            .env("RADPORT_PACK_WRITE_AHEAD", "8M")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("radport serve starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        // An HTTPS server is ready once it says so (this client speaks plain HTTP only).
        let https = self.extra_args.iter().any(|a| a == "--tls-cert");
        loop {
            if https {
                if self.log().contains("radport is running") {
                    return Ok(());
                }
            } else if let Ok(r) = reqwest::blocking::get(self.url("/api/health")) {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("{status}\n{}", self.log()));
                }
            }
            assert!(
                Instant::now() < deadline,
                "radport did not answer /api/health:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server gracefully (SIGTERM) and starts it again on the same data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Restarts on the same data directory with other extra arguments.
    pub fn restart_with(&mut self, extra_args: &[&str]) {
        self.stop();
        self.extra_args = extra_args.iter().map(|s| s.to_string()).collect();
        self.spawn();
    }

    /// Polls `check` every 100 ms until it returns `Some`, or panics after `seconds`.
    pub fn wait_for<T>(&self, seconds: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {seconds} s waiting for {what}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Lines of the log (so far) that contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits until the log has at least `count` lines containing `needle`.
    pub fn wait_for_log(&self, seconds: u64, needle: &str, count: usize) {
        self.wait_for(
            seconds,
            &format!("{count} log lines with {needle:?}"),
            || (self.log_count(needle) >= count).then_some(()),
        );
    }

    /// Waits until the pipeline's scheduler has made `passes` more passes: after that, what it
    /// would have scheduled (again) is in the queue. The proof of a quiet period, where a fixed
    /// sleep would only hope for one.
    pub fn wait_for_scheduler_passes(&self, passes: usize) {
        let now = self.log_count("scheduler pass");
        self.wait_for_log(60, "scheduler pass", now + passes);
    }

    /// Jobs of a series as the API lists them.
    pub fn jobs_of(&self, series_uid: &str) -> Vec<Value> {
        self.get_json(&format!("/api/jobs?series={series_uid}"))["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Under strace the child is the tracer: the server is its child.
            let target = if self.strace_log.is_some() {
                vec!["-P".to_string(), child.id().to_string()]
            } else {
                vec![child.id().to_string()]
            };
            let _ = Command::new(if self.strace_log.is_some() {
                "pkill"
            } else {
                "kill"
            })
            .arg("-TERM")
            .args(&target)
            .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn get_json(&self, path: &str) -> Value {
        let r = reqwest::blocking::get(self.url(path)).expect("GET");
        let status = r.status();
        let text = r.text().expect("body");
        assert!(status.is_success(), "GET {path} -> {status}: {text}");
        serde_json::from_str(&text).expect("JSON")
    }

    pub fn get_status(&self, path: &str) -> (u16, Value) {
        let r = reqwest::blocking::get(self.url(path)).expect("GET");
        let status = r.status().as_u16();
        let v = r.json().unwrap_or(Value::Null);
        (status, v)
    }

    pub fn get_bytes(&self, path: &str) -> Vec<u8> {
        let r = reqwest::blocking::get(self.url(path)).expect("GET");
        assert!(r.status().is_success(), "GET {path} -> {}", r.status());
        r.bytes().expect("body").to_vec()
    }

    pub fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let r = reqwest::blocking::Client::new()
            .post(self.url(path))
            .json(&body)
            .send()
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    pub fn create_project(&self, name: &str) {
        let (status, body) = self.post_json("/api/projects", serde_json::json!({ "name": name }));
        assert_eq!(status, 201, "create project {name}: {body}");
    }

    /// The series visible in a project, as the API lists them (first 1000).
    pub fn series(&self, project: &str, query: &str) -> Value {
        self.get_json(&format!(
            "/api/projects/{project}/series?limit=1000{}{query}",
            if query.is_empty() { "" } else { "&" }
        ))
    }

    /// Number of instances visible in a project.
    pub fn instance_total(&self, project: &str) -> i64 {
        self.series(project, "")["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|s| s["instance_count"].as_i64().expect("instance_count"))
            .sum()
    }

    /// Every stored DICOM object in the archive directory.
    pub fn archived_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.data_dir.join("archive").join("instances"), &mut out);
        out
    }

    /// What the archive holds of received instances, whichever way `--ingest-durability`
    /// took: a file each under `instances/` (its path), or a record in a pack (its key,
    /// `packs/<pack>@<offset>`; punched records are not there).
    pub fn archived_instances(&self) -> Vec<String> {
        self.archived_instance_bodies()
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// [`Server::archived_instances`] with the bytes of each (a file's, a record's body).
    pub fn archived_instance_bodies(&self) -> Vec<(String, Vec<u8>)> {
        use radport_journal::pack::{generations, open_record, pack_file_name, records_before};
        use radport_journal::Position;
        use std::os::unix::fs::FileExt;
        let mut out: Vec<(String, Vec<u8>)> = self
            .archived_files()
            .iter()
            .map(|p| (p.display().to_string(), std::fs::read(p).unwrap()))
            .collect();
        let packs = self.data_dir.join("archive").join("packs");
        let end = Position {
            generation: u64::MAX,
            offset: u64::MAX,
        };
        for generation in generations(&packs).unwrap_or_default() {
            let records = records_before(&packs, generation, end, u64::MAX).expect("packs read");
            for walked in records {
                // Punched since it was walked (a copy kept out, past a checkpoint): gone.
                let Some(record) =
                    open_record(&packs, walked.position, u64::MAX).expect("a pack read")
                else {
                    continue;
                };
                let mut body = vec![0u8; usize::try_from(record.body_len).unwrap()];
                record
                    .file
                    .read_exact_at(&mut body, record.body_offset)
                    .unwrap();
                let name = format!(
                    "packs/{}@{}",
                    pack_file_name(generation),
                    walked.position.offset
                );
                out.push((name, body));
            }
        }
        out
    }

    /// [`Server::archived_instances`] once there are `count` of them: a record that is no
    /// longer referenced (a duplicate kept out) leaves its pack once a checkpoint passed it
    /// (every second), a file at once. Panics after 20 s.
    pub fn archived_instances_settled(&self, count: usize) -> Vec<String> {
        let what = format!("the archive to hold {count} instances");
        self.wait_for(20, &what, || {
            let held = self.archived_instances();
            (held.len() == count).then_some(held)
        })
    }

    /// Runs `dcmsend` with the exact flags of the Data Upload documentation.
    pub fn dcmsend(&self, dataset_ae: &str, project_ae: &str, dir: &Path) -> Output {
        self.dcmsend_with(dataset_ae, project_ae, dir, &[])
    }

    /// [`Server::dcmsend`] with more of dcmsend's options (e.g. `--dimse-timeout`).
    pub fn dcmsend_with(
        &self,
        dataset_ae: &str,
        project_ae: &str,
        dir: &Path,
        options: &[&str],
    ) -> Output {
        Command::new(dcmtk("dcmsend"))
            .args(options)
            .arg("-v")
            .arg("127.0.0.1")
            .arg(self.dicom_port.to_string())
            .arg("--aetitle")
            .arg(dataset_ae)
            .arg("--call")
            .arg(project_ae)
            .arg("--scan-directories")
            .arg("--scan-pattern")
            .arg("*.dcm")
            .arg("--recurse")
            .arg(dir)
            .output()
            .expect("dcmsend runs")
    }
}

impl Server {
    /// Runs the `radport` CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_radport"))
            .args(args)
            .args(["--url", &self.url("")])
            .output()
            .expect("radport runs")
    }

    /// Uploads a file with the CLI as `name`, asserting success.
    pub fn upload(&self, file: &Path, name: &str) {
        let out = self.cli(&["upload", file.to_str().expect("UTF-8 path"), "--as", name]);
        assert!(out.status.success(), "{}", output_text(&out));
    }
}

/// Writes a zip (deflated) with the given entries.
pub fn zip_of<N: AsRef<str>>(path: &Path, entries: &[(N, Vec<u8>)]) {
    use std::io::Write;
    let file = std::fs::File::create(path).expect("zip file");
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        zip.start_file(name.as_ref(), options).expect("zip entry");
        zip.write_all(bytes).expect("zip data");
    }
    zip.finish().expect("zip");
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

pub fn output_text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs a command and asserts it succeeded.
pub fn run_ok(cmd: &mut Command) -> Output {
    let o = cmd.output().expect("command runs");
    assert!(o.status.success(), "{cmd:?} failed: {}", output_text(&o));
    o
}

/// The data-set bytes of a Part-10 file (everything after the file meta group).
pub fn dataset_bytes(file: &[u8]) -> &[u8] {
    assert_eq!(&file[128..132], b"DICM", "Part-10 magic");
    // (0002,0000) UL group length, explicit VR LE: tag(4) VR(2) len(2) value(4)
    let group_len = u32::from_le_bytes([file[140], file[141], file[142], file[143]]) as usize;
    &file[144 + group_len..]
}

pub fn read_file(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut v))
        .expect("read file");
    v
}

/// A minimal DIMSE storage SCU on dicom-ul, for protocol situations DCMTK will not produce on
/// purpose: a data set cut off by an abort, garbage in place of a data set.
pub struct RawClient {
    association: dicom_ul::ClientAssociation<std::net::TcpStream>,
    context_id: u8,
    next_message_id: u16,
    sop_class: String,
}

pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";

fn c_store_rq(message_id: u16, sop_class: &str, sop_instance: &str) -> Vec<u8> {
    c_store_rq_with(message_id, sop_class, sop_instance, &[])
}

/// A C-STORE-RQ command set (Implicit VR Little Endian, with its group length), with `extra`
/// encoded elements appended inside the command (for hostile commands).
pub fn c_store_rq_with(
    message_id: u16,
    sop_class: &str,
    sop_instance: &str,
    extra: &[u8],
) -> Vec<u8> {
    use dicom_core::{dicom_value, DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let pad = |s: &str| {
        let mut s = s.to_string();
        if s.len() % 2 == 1 {
            s.push('\0');
        }
        s
    };
    let mut obj = dicom_object::InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::AFFECTED_SOP_CLASS_UID,
        VR::UI,
        PrimitiveValue::from(pad(sop_class)),
    ));
    obj.put(DataElement::new(
        tags::COMMAND_FIELD,
        VR::US,
        dicom_value!(U16, [0x0001]),
    ));
    obj.put(DataElement::new(
        tags::MESSAGE_ID,
        VR::US,
        dicom_value!(U16, [message_id]),
    ));
    obj.put(DataElement::new(
        tags::PRIORITY,
        VR::US,
        dicom_value!(U16, [0]),
    ));
    obj.put(DataElement::new(
        tags::COMMAND_DATA_SET_TYPE,
        VR::US,
        dicom_value!(U16, [0x0000]),
    ));
    obj.put(DataElement::new(
        tags::AFFECTED_SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(pad(sop_instance)),
    ));
    let mut body = Vec::new();
    obj.write_dataset_with_ts(
        &mut body,
        &dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
    )
    .expect("encode command");
    body.extend_from_slice(extra);
    let mut out = vec![0, 0, 0, 0, 4, 0, 0, 0];
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

impl RawClient {
    pub fn connect(port: u16, calling: &str, called: &str) -> Result<RawClient, String> {
        Self::connect_with(port, calling, called, CT_IMAGE_STORAGE, EXPLICIT_VR_LE)
    }

    /// Connects proposing one presentation context: `sop_class` with `transfer_syntax` only.
    pub fn connect_with(
        port: u16,
        calling: &str,
        called: &str,
        sop_class: &str,
        transfer_syntax: &str,
    ) -> Result<RawClient, String> {
        let association = dicom_ul::ClientAssociationOptions::new()
            .calling_ae_title(calling)
            .called_ae_title(called)
            .with_presentation_context(sop_class, vec![transfer_syntax])
            .establish(format!("127.0.0.1:{port}"))
            .map_err(|e| e.to_string())?;
        let context_id = association
            .presentation_contexts()
            .first()
            .map(|pc| pc.id)
            .ok_or("no presentation context accepted")?;
        Ok(RawClient {
            association,
            context_id,
            next_message_id: 1,
            sop_class: sop_class.to_string(),
        })
    }

    fn send_command(&mut self, sop_instance: &str) {
        let id = self.next_message_id;
        self.next_message_id += 1;
        let cmd = c_store_rq(id, &self.sop_class, sop_instance);
        self.association
            .send(&dicom_ul::Pdu::PData {
                data: vec![dicom_ul::pdu::PDataValue {
                    presentation_context_id: self.context_id,
                    value_type: dicom_ul::pdu::PDataValueType::Command,
                    is_last: true,
                    data: cmd,
                }],
            })
            .expect("send command");
    }

    fn send_data(&mut self, data: &[u8], last: bool) {
        for (i, chunk) in data.chunks(16_000).enumerate() {
            let is_last = last && (i + 1) * 16_000 >= data.len();
            self.association
                .send(&dicom_ul::Pdu::PData {
                    data: vec![dicom_ul::pdu::PDataValue {
                        presentation_context_id: self.context_id,
                        value_type: dicom_ul::pdu::PDataValueType::Data,
                        is_last,
                        data: chunk.to_vec(),
                    }],
                })
                .expect("send data");
        }
    }

    /// Sends one C-STORE and returns the response status.
    pub fn store(&mut self, sop_instance: &str, dataset: &[u8]) -> u16 {
        self.send_command(sop_instance);
        self.send_data(dataset, true);
        match self.association.receive().expect("C-STORE-RSP") {
            dicom_ul::Pdu::PData { data } => {
                let cmd = &data[0].data;
                let obj = dicom_object::InMemDicomObject::read_dataset_with_ts(
                    std::io::Cursor::new(cmd),
                    &dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
                )
                .expect("response command");
                obj.element(dicom_dictionary_std::tags::STATUS)
                    .expect("status")
                    .to_int::<u16>()
                    .expect("status value")
            }
            other => panic!("expected P-DATA, got {other:?}"),
        }
    }

    /// Sends several C-STOREs without waiting for responses (an asynchronous operations window),
    /// then reads the responses: (message ID, status) in the order they came.
    pub fn store_pipelined(&mut self, instances: &[(String, Vec<u8>)]) -> Vec<(u16, u16)> {
        let first_id = self.next_message_id;
        for (sop, dataset) in instances {
            self.send_command(sop);
            self.send_data(dataset, true);
        }
        let mut out = Vec::new();
        while out.len() < instances.len() {
            match self.association.receive().expect("C-STORE-RSP") {
                dicom_ul::Pdu::PData { data } => {
                    for pdv in data {
                        let obj = dicom_object::InMemDicomObject::read_dataset_with_ts(
                            std::io::Cursor::new(&pdv.data),
                            &dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN
                                .erased(),
                        )
                        .expect("response command");
                        let get = |tag| {
                            obj.element(tag)
                                .expect("element")
                                .to_int::<u16>()
                                .expect("u16")
                        };
                        out.push((
                            get(dicom_dictionary_std::tags::MESSAGE_ID_BEING_RESPONDED_TO),
                            get(dicom_dictionary_std::tags::STATUS),
                        ));
                    }
                }
                other => panic!("expected P-DATA, got {other:?}"),
            }
        }
        assert_eq!(out.first().map(|r| r.0), Some(first_id));
        out
    }

    /// Sends a C-STORE command and only the first `bytes` of its data set.
    pub fn store_partial(&mut self, sop_instance: &str, dataset: &[u8], bytes: usize) {
        self.send_command(sop_instance);
        self.send_data(&dataset[..bytes.min(dataset.len())], false);
    }

    pub fn release(self) {
        let _ = self.association.release();
    }

    pub fn abort(self) {
        let _ = self.association.abort();
    }

    /// Drops the TCP connection without any A-ABORT, like a killed sender.
    pub fn vanish(self) {
        drop(self);
    }
}

impl RawClient {
    /// Sends one C-STORE and returns the response status, or why none came (the server went
    /// away mid-transfer: crash tests).
    pub fn try_store(&mut self, sop_instance: &str, dataset: &[u8]) -> Result<u16, String> {
        let id = self.next_message_id;
        self.next_message_id += 1;
        let command = c_store_rq(id, &self.sop_class, sop_instance);
        let pdv = |value_type, is_last, data| dicom_ul::Pdu::PData {
            data: vec![dicom_ul::pdu::PDataValue {
                presentation_context_id: self.context_id,
                value_type,
                is_last,
                data,
            }],
        };
        let mut pdus = vec![pdv(dicom_ul::pdu::PDataValueType::Command, true, command)];
        let chunks = dataset.chunks(16_000).count();
        for (i, chunk) in dataset.chunks(16_000).enumerate() {
            pdus.push(pdv(
                dicom_ul::pdu::PDataValueType::Data,
                i + 1 == chunks,
                chunk.to_vec(),
            ));
        }
        for pdu in &pdus {
            self.association.send(pdu).map_err(|e| e.to_string())?;
        }
        match self.association.receive().map_err(|e| e.to_string())? {
            dicom_ul::Pdu::PData { data } => {
                let cmd = &data.first().ok_or("an empty P-DATA")?.data;
                let obj = dicom_object::InMemDicomObject::read_dataset_with_ts(
                    std::io::Cursor::new(cmd),
                    &dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
                )
                .map_err(|e| e.to_string())?;
                obj.element(dicom_dictionary_std::tags::STATUS)
                    .map_err(|e| e.to_string())?
                    .to_int::<u16>()
                    .map_err(|e| e.to_string())
            }
            other => Err(format!("expected P-DATA, got {other:?}")),
        }
    }
}
