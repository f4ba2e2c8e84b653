//! Every kind of audit message radport sends is valid against the DICOM Audit Message schema
//! of PS3.15 A.5.1.1 (`tests/data/dicom-audit-message.rnc`, converted to Relax NG XML), as
//! `xmllint --relaxng` (libxml2) judges it.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use radport_audit::{audit_message, AuditSource};
use radport_catalog::{AuditEvent, Outcome};

#[test]
fn every_kind_of_message_fits_the_dicom_schema() {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dicom-audit-message.rng");
    let source = AuditSource {
        source_id: "radport@pacs.example.org".into(),
        host: "pacs.example.org".into(),
        ae_title: "RADPORT".into(),
    };
    let cases = [
        ("sign-in", "", Outcome::Refused, "alice"),
        ("DELETE /api/session", "", Outcome::Success, "alice"),
        ("application start", "", Outcome::Success, "radport"),
        ("read series", "1.2.840.1.2", Outcome::Success, "bob"),
        ("download series", "1.2.840.1.2", Outcome::Success, "bob"),
        ("associate", "lung", Outcome::Success, "dicom:CT-1"),
        (
            "associate",
            "lung",
            Outcome::Refused,
            "dicom:<odd & \"name\">",
        ),
        (
            "DELETE /api/patients/{patient_id}",
            "patient#0123456789abcdef",
            Outcome::Success,
            "mona",
        ),
        ("POST /api/uploads", "", Outcome::Success, "carl"),
        (
            "PUT /api/projects/{project}/members/{user}",
            "lung/extra",
            Outcome::Success,
            "mona",
        ),
        ("POST /api/users", "", Outcome::Failure, "admin"),
        (
            "PUT /api/projects/{project}/dicom-rules",
            "lung",
            Outcome::Success,
            "mona",
        ),
        ("GET /api/audit", "", Outcome::Refused, "anonymous"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (action, target, outcome, actor)) in cases.into_iter().enumerate() {
        let event = AuditEvent {
            id: i.to_string(),
            at: "2026-12-02T16:00:00.123456Z".into(),
            actor: actor.into(),
            address: if i % 2 == 0 { "10.0.0.7" } else { "unknown" }.into(),
            action: action.into(),
            target: target.into(),
            outcome,
            detail: "200".into(),
        };
        let xml = audit_message(&event, &source);
        let file = dir.path().join(format!("{i}.xml"));
        std::fs::File::create(&file)
            .unwrap()
            .write_all(xml.as_bytes())
            .unwrap();
        let checked = Command::new("xmllint")
            .arg("--noout")
            .arg("--relaxng")
            .arg(&schema)
            .arg(&file)
            .output()
            .expect("xmllint runs (Debian: libxml2-utils; scripts/install-deps.sh)");
        assert!(
            checked.status.success(),
            "{action}: {}\n{xml}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }
    // The oracle can fail: a message without its event identification is refused.
    let broken = dir.path().join("broken.xml");
    std::fs::write(
        &broken,
        "<AuditMessage><AuditSourceIdentification AuditSourceID=\"x\"/></AuditMessage>",
    )
    .unwrap();
    let refused = Command::new("xmllint")
        .args(["--noout", "--relaxng"])
        .arg(&schema)
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!refused.status.success());
}
