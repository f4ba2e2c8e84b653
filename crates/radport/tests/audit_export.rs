//! The audit trail exported as DICOM audit messages (PS3.15 A.5) to a real syslog collector:
//! rsyslogd, receiving over TCP (octet-counted) and UDP, writing what it got to a file. Every
//! message must fit the standard's schema (`xmllint --relaxng`) and say what happened.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::common::*;
use radport_testkit::{write_series, SeriesSpec};

struct Collector {
    child: Child,
    out: PathBuf,
    tcp: u16,
    udp: u16,
    _dir: tempfile::TempDir,
}

impl Collector {
    fn start() -> Collector {
        let dir = tempfile::tempdir().unwrap();
        let (tcp, udp) = (free_port(), free_port());
        let out = dir.path().join("received.log");
        let conf = dir.path().join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{work}")
module(load="imtcp")
module(load="imudp")
input(type="imtcp" port="{tcp}" address="127.0.0.1")
input(type="imudp" port="{udp}" address="127.0.0.1")
template(name="fields" type="string" string="%pri% %app-name% %msgid% %msg%\n")
*.* action(type="omfile" file="{out}" template="fields")
"#,
                work = dir.path().display(),
                out = out.display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .spawn()
            .expect("rsyslogd runs (Debian: rsyslog; scripts/install-deps.sh)");
        let collector = Collector {
            child,
            out,
            tcp,
            udp,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", tcp)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "rsyslogd does not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        collector
    }

    /// Lines received so far: (priority, app name, MSGID, message).
    fn received(&self) -> Vec<(String, String, String, String)> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut parts = l.splitn(4, ' ');
                Some((
                    parts.next()?.to_string(),
                    parts.next()?.to_string(),
                    parts.next()?.to_string(),
                    parts.next()?.to_string(),
                ))
            })
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../audit/tests/data/dicom-audit-message.rng")
}

/// The XML of a received message (rsyslog may keep the BOM in front of it).
fn xml_of(message: &str) -> &str {
    message.find("<?xml").map_or(message, |i| &message[i..])
}

fn fits_the_schema(xml: &str, dir: &Path, n: usize) {
    let file = dir.join(format!("{n}.xml"));
    std::fs::write(&file, xml).unwrap();
    let checked = Command::new("xmllint")
        .args(["--noout", "--relaxng"])
        .arg(schema())
        .arg(&file)
        .output()
        .expect("xmllint runs (Debian: libxml2-utils)");
    assert!(checked.status.success(), "{}\n{xml}", output_text(&checked));
}

#[test]
fn the_audit_trail_reaches_a_syslog_collector_as_dicom_audit_messages() {
    let collector = Collector::start();
    let tmp = tempfile::tempdir().unwrap();
    let target = format!("tcp://127.0.0.1:{}", collector.tcp);
    let server = Server::start(&[
        "--audit-syslog",
        &target,
        "--audit-source-id",
        "radport-under-test",
    ]);
    // A DICOM association, a read of patient data, a refused sign-in.
    let spec = SeriesSpec {
        count: 1,
        rows: 16,
        columns: 16,
        uid_seed: "991".into(),
        ..Default::default()
    };
    write_series(tmp.path(), &spec).unwrap();
    assert!(server
        .dcmsend("kp-ds", "kp-admin", tmp.path())
        .status
        .success());
    let uid = radport_testkit::series_uid(&spec);
    assert_eq!(server.get_status(&format!("/api/series/{uid}")).0, 200);
    let (status, _) = server.post_json(
        "/api/session",
        serde_json::json!({"name": "nobody", "password": "not a password at all"}),
    );
    assert_eq!(status, 401);

    let wanted = ["110120", "110104", "110103", "110122"];
    let received = server.wait_for(30, "the audit messages at the collector", || {
        let got = collector.received();
        wanted
            .iter()
            .all(|code| {
                got.iter()
                    .any(|(.., m)| m.contains(&format!("csd-code=\"{code}\"")))
            })
            .then_some(got)
    });
    for (n, (pri, app, msgid, message)) in received.iter().enumerate() {
        assert_eq!(app, "radport");
        assert_eq!(msgid, "DICOM+RFC3881");
        assert!(
            pri == "85" || pri == "84",
            "authpriv.notice or .warning: {pri}"
        );
        fits_the_schema(xml_of(message), tmp.path(), n);
        assert!(
            message.contains("AuditSourceID=\"radport-under-test\""),
            "{message}"
        );
    }
    let find = |code: &str| {
        received
            .iter()
            .find(|(.., m)| m.contains(&format!("csd-code=\"{code}\"")))
            .map(|(pri, .., m)| (pri.clone(), m.clone()))
            .unwrap()
    };
    let (_, association) = find("110104");
    assert!(
        association.contains("UserID=\"dicom:kp-ds\""),
        "{association}"
    );
    assert!(
        association.contains("ParticipantObjectID=\"admin\""),
        "{association}"
    );
    let (_, read) = find("110103");
    assert!(
        read.contains(&format!("ParticipantObjectID=\"{uid}\"")),
        "{read}"
    );
    assert!(
        read.contains("NetworkAccessPointID=\"127.0.0.1\""),
        "{read}"
    );
    let (pri, sign_in) = find("110122");
    assert_eq!(pri, "84", "a refused sign-in is a warning");
    assert!(sign_in.contains("EventOutcomeIndicator=\"4\""), "{sign_in}");
    assert!(sign_in.contains("UserID=\"nobody\""), "{sign_in}");
    // No patient's name in any of them.
    assert!(received.iter().all(|(.., m)| !m.contains("Test^Patient")));
    drop(server);

    // Over UDP too.
    let target = format!("udp://127.0.0.1:{}", collector.udp);
    let before = collector.received().len();
    let server = Server::start(&["--audit-syslog", &target]);
    assert_eq!(server.get_status("/api/health").0, 200);
    let received = server.wait_for(30, "an application start over UDP", || {
        let got = collector.received();
        (got.len() > before && got[before..].iter().any(|(.., m)| m.contains("110120")))
            .then_some(got)
    });
    fits_the_schema(xml_of(&received[before].3), tmp.path(), 1000);
}
