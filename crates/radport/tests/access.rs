//! Access control, route by route: every operation of the served API called by six callers —
//! anonymous, a viewer of another project, and a viewer, contributor and manager of project
//! `lung`, and an administrator — each answer's status compared with the matrix below. The
//! matrix must name every operation the server documents, so a new route without a row fails.

use std::collections::BTreeSet;

use crate::common::*;
use radport_testkit::{series_uid, write_series, SeriesSpec};
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::Method;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "rpt_access-matrix-admin-token-00000000000000000";

/// The callers, in the matrix's column order.
const CALLERS: [&str; 6] = [
    "anonymous",
    "outsider",
    "viewer",
    "contributor",
    "manager",
    "admin",
];

struct World {
    server: Server,
    client: Client,
    /// Token of each caller (none for anonymous).
    tokens: Vec<Option<String>>,
}

impl World {
    fn request(&self, caller: usize, method: Method, path: &str) -> RequestBuilder {
        let r = self.client.request(method, self.server.url(path));
        match &self.tokens[caller] {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(5, method, path)
    }
}

/// A user with a password, signed in once to make an API token (through the session and its
/// CSRF header).
fn token_of(world: &World, name: &str) -> String {
    let password = format!("{name}'s password");
    let created = world
        .admin(Method::POST, "/api/users")
        .json(&json!({"name": name, "password": password}))
        .send()
        .unwrap();
    assert_eq!(created.status(), 201, "{name}");
    let signed_in = world
        .client
        .post(world.server.url("/api/session"))
        .json(&json!({"name": name, "password": password}))
        .send()
        .unwrap();
    assert_eq!(signed_in.status(), 201);
    let cookies: Vec<String> = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect();
    let csrf = cookies
        .iter()
        .find_map(|c| c.strip_prefix("radport_csrf="))
        .unwrap()
        .to_string();
    let cookie_header = cookies.join("; ");
    // Without the CSRF header the session may not make a token.
    let refused = world
        .client
        .post(world.server.url("/api/tokens"))
        .header("cookie", &cookie_header)
        .json(&json!({"name": "cli"}))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 403);
    // From another site, not either.
    let cross_site = world
        .client
        .post(world.server.url("/api/tokens"))
        .header("cookie", &cookie_header)
        .header("x-csrf-token", &csrf)
        .header("origin", "http://evil.example")
        .json(&json!({"name": "cli"}))
        .send()
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    let made: Value = world
        .client
        .post(world.server.url("/api/tokens"))
        .header("cookie", &cookie_header)
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "cli"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    made["token"].as_str().expect("a token").to_string()
}

/// Creates a tus upload of `length` bytes as `caller` and sends `bytes` of them; returns its id.
fn upload(world: &World, caller: usize, name: &str, length: usize, bytes: &[u8]) -> String {
    use base64::Engine;
    let created = world
        .request(caller, Method::POST, "/api/uploads")
        .header("tus-resumable", "1.0.0")
        .header("upload-length", length.to_string())
        .header(
            "upload-metadata",
            format!(
                "filename {}",
                base64::engine::general_purpose::STANDARD.encode(name)
            ),
        )
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.headers()["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    if !bytes.is_empty() {
        let sent = world
            .request(caller, Method::PATCH, &format!("/api/uploads/{id}"))
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", "0")
            .header("content-type", "application/offset+octet-stream")
            .body(bytes.to_vec())
            .send()
            .unwrap();
        assert_eq!(sent.status(), 204);
    }
    id
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn every_route_answers_each_role_as_the_matrix_says() {
    let server = Server::start_with_env(
        &["--stable-after", "1", "--access", "enforced"],
        &[("RADPORT_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    let mut world = World {
        server,
        client: Client::new(),
        tokens: vec![None, None, None, None, None, Some(ADMIN_TOKEN.to_string())],
    };
    for project in ["lung", "brain", "doomed", "spare"] {
        let r = world
            .admin(Method::POST, "/api/projects")
            .json(&json!({"name": project}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    for (i, (name, project, role)) in [
        ("olga", "brain", "viewer"),
        ("vera", "lung", "viewer"),
        ("carl", "lung", "contributor"),
        ("mona", "lung", "manager"),
    ]
    .into_iter()
    .enumerate()
    {
        world.tokens[i + 1] = Some(token_of(&world, name));
        let r = world
            .admin(
                Method::PUT,
                &format!("/api/projects/{project}/members/{name}"),
            )
            .json(&json!({"role": role}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let r = world
        .admin(Method::PUT, "/api/projects/spare/members/mona")
        .json(&json!({"role": "contributor"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let extra = world
        .admin(Method::POST, "/api/users")
        .json(&json!({"name": "extra"}))
        .send()
        .unwrap();
    assert_eq!(extra.status(), 201);

    // A series in lung, one in brain; their pipeline runs.
    let tmp = tempfile::tempdir().unwrap();
    let lung = SeriesSpec {
        count: 2,
        rows: 32,
        columns: 32,
        uid_seed: "951".into(),
        ..Default::default()
    };
    let brain = SeriesSpec {
        uid_seed: "952".into(),
        ..lung.clone()
    };
    write_series(&tmp.path().join("lung"), &lung).unwrap();
    write_series(&tmp.path().join("brain"), &brain).unwrap();
    assert!(world
        .server
        .dcmsend("kp-ds", "kp-lung", &tmp.path().join("lung"))
        .status
        .success());
    assert!(world
        .server
        .dcmsend("kp-ds", "kp-brain", &tmp.path().join("brain"))
        .status
        .success());
    let (lung_uid, brain_uid) = (series_uid(&lung), series_uid(&brain));
    // Series to erase and to take out of a project: X (lung), Y (lung, copied into brain),
    // Z (lung, a patient of its own), W (lung).
    let mut doomed = Vec::new();
    for (seed, patient) in [
        ("953", "PAT-X"),
        ("954", "PAT-Y"),
        ("955", "PAT-Z"),
        ("956", "PAT-W"),
    ] {
        let spec = SeriesSpec {
            count: 1,
            rows: 16,
            columns: 16,
            patient_id: patient.into(),
            uid_seed: seed.into(),
            ..Default::default()
        };
        let dir = tmp.path().join(seed);
        write_series(&dir, &spec).unwrap();
        assert!(world
            .server
            .dcmsend("kp-ds", "kp-lung", &dir)
            .status
            .success());
        doomed.push(spec);
    }
    let [x_uid, y_uid, _, w_uid] = [0, 1, 2, 3].map(|i| series_uid(&doomed[i]));
    let y_study = radport_testkit::study_uid(&doomed[1]);
    let copied = world
        .admin(Method::POST, &format!("/api/series/{y_uid}/copy"))
        .json(&json!({"from": "lung", "to": "brain"}))
        .send()
        .unwrap();
    assert_eq!(copied.status(), 204);
    world.server.wait_for(60, "validation and thumbnails", || {
        [&lung_uid, &brain_uid]
            .iter()
            .all(|uid| {
                ["validation", "thumbnail"].iter().all(|what| {
                    world
                        .admin(Method::GET, &format!("/api/series/{uid}/{what}"))
                        .send()
                        .is_ok_and(|r| r.status() == 200)
                })
            })
            .then_some(())
    });
    let detail: Value = world
        .admin(Method::GET, &format!("/api/series/{lung_uid}"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let sop = detail["instances"][0]["sop_instance_uid"]
        .as_str()
        .unwrap()
        .to_string();

    // The contributor's uploads and run; a token of theirs to revoke.
    let carl = 3;
    upload(&world, carl, "carl.bin", 9, b"not a zip");
    let pending = upload(&world, carl, "pending.bin", 10, b"");
    let doomed_upload = upload(&world, carl, "doomed-upload.bin", 10, b"");
    upload(&world, carl, "doomed.bin", 1, b"x");
    let run: Value = world
        .request(
            carl,
            Method::POST,
            "/api/workflows/import-dicoms-from-data-upload/runs",
        )
        .json(&json!({"file": "carl.bin", "project": "lung", "delete_original_file": false}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let run_id = run["id"].as_str().expect("a run").to_string();
    let spare_token: Value = world
        .request(carl, Method::POST, "/api/tokens")
        .json(&json!({"name": "spare"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let spare_id = spare_token["info"]["id"].as_str().unwrap().to_string();

    // Anonymous, outsider, viewer, contributor, manager, admin.
    let tus = |r: RequestBuilder| r.header("tus-resumable", "1.0.0");
    type Build = Box<dyn Fn(RequestBuilder, usize) -> RequestBuilder>;
    let plain: fn() -> Build = || Box::new(|r, _| r);
    let body = |v: Value| -> Build { Box::new(move |r, _| r.json(&v)) };
    let series = format!("/api/series/{lung_uid}");
    let instance = format!("{series}/instances/{sop}");
    let rows: Vec<(&str, &str, String, Build, [u16; 6])> = vec![
        (
            "GET",
            "/api/health",
            "/api/health".into(),
            plain(),
            [200; 6],
        ),
        (
            "GET",
            "/api/health/live",
            "/api/health/live".into(),
            plain(),
            [200; 6],
        ),
        (
            "GET",
            "/api/health/ready",
            "/api/health/ready".into(),
            plain(),
            [200; 6],
        ),
        (
            "GET",
            "/api/session",
            "/api/session".into(),
            plain(),
            [200; 6],
        ),
        (
            "GET",
            "/metrics",
            "/metrics".into(),
            plain(),
            [401, 200, 200, 200, 200, 200],
        ),
        (
            "POST",
            "/api/session",
            "/api/session".into(),
            body(json!({})),
            [400; 6],
        ),
        (
            "DELETE",
            "/api/session",
            "/api/session".into(),
            plain(),
            [204; 6],
        ),
        (
            "POST",
            "/api/session/password",
            "/api/session/password".into(),
            body(json!({"current": "not it", "new": "something long enough"})),
            [401, 403, 403, 403, 403, 403],
        ),
        // Single sign-on is not configured here: 404 for everyone (tests/oidc.rs has it on).
        (
            "GET",
            "/api/oidc/login",
            "/api/oidc/login?return_to=/".into(),
            plain(),
            [404; 6],
        ),
        (
            "GET",
            "/api/oidc/callback",
            "/api/oidc/callback?code=x&state=y".into(),
            plain(),
            [404; 6],
        ),
        (
            "GET",
            "/api/projects",
            "/api/projects".into(),
            plain(),
            [401, 200, 200, 200, 200, 200],
        ),
        (
            "POST",
            "/api/projects",
            "/api/projects".into(),
            Box::new(|r, caller| r.json(&json!({"name": format!("new-{caller}")}))),
            [401, 403, 403, 403, 403, 201],
        ),
        (
            "DELETE",
            "/api/projects/{project}",
            "/api/projects/doomed".into(),
            plain(),
            [401, 403, 403, 403, 403, 200],
        ),
        (
            "GET",
            "/api/projects/{project}/datasets",
            "/api/projects/lung/datasets".into(),
            plain(),
            [401, 403, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/api/projects/{project}/series",
            "/api/projects/lung/series".into(),
            plain(),
            [401, 403, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/api/projects/{project}/facets",
            "/api/projects/lung/facets".into(),
            plain(),
            [401, 403, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/api/projects/{project}/members",
            "/api/projects/lung/members".into(),
            plain(),
            [401, 403, 403, 403, 200, 200],
        ),
        (
            "PUT",
            "/api/projects/{project}/members/{user}",
            "/api/projects/lung/members/extra".into(),
            body(json!({"role": "viewer"})),
            [401, 403, 403, 403, 204, 204],
        ),
        (
            "DELETE",
            "/api/projects/{project}/members/{user}",
            "/api/projects/lung/members/extra".into(),
            plain(),
            [401, 403, 403, 403, 204, 404],
        ),
        (
            "GET",
            "/api/series/{series_uid}",
            series.clone(),
            plain(),
            [401, 404, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/api/series/{series_uid}/instances/{sop_instance_uid}",
            instance.clone(),
            plain(),
            [401, 404, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/api/series/{series_uid}/instances/{sop_instance_uid}/rendered",
            format!("{instance}/rendered"),
            plain(),
            [401, 404, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/api/series/{series_uid}/instances/{sop_instance_uid}/segmentation",
            format!("{instance}/segmentation"),
            plain(),
            [401, 404, 404, 404, 404, 404],
        ),
        (
            "GET",
            "/api/series/{series_uid}/thumbnail",
            format!("{series}/thumbnail"),
            plain(),
            [401, 404, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/api/series/{series_uid}/download",
            format!("{series}/download"),
            plain(),
            [401, 404, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/api/series/{series_uid}/validation",
            format!("{series}/validation"),
            plain(),
            [401, 404, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/api/series/{series_uid}/validation/report",
            format!("{series}/validation/report"),
            plain(),
            [401, 404, 200, 200, 200, 200],
        ),
        (
            "POST",
            "/api/series/{series_uid}/verify",
            format!("{series}/verify"),
            plain(),
            [401, 404, 202, 202, 202, 202],
        ),
        (
            "GET",
            "/api/jobs",
            "/api/jobs".into(),
            plain(),
            [401, 200, 200, 200, 200, 200],
        ),
        (
            "OPTIONS",
            "/api/uploads",
            "/api/uploads".into(),
            plain(),
            [204; 6],
        ),
        (
            "POST",
            "/api/uploads",
            "/api/uploads".into(),
            Box::new(move |r, caller| {
                tus(r).header("upload-length", "1").header(
                    "upload-metadata",
                    format!(
                        "filename {}",
                        ["YQ==", "Yg==", "Yw==", "ZA==", "ZQ==", "Zg=="][caller]
                    ),
                )
            }),
            [401, 403, 403, 201, 201, 201],
        ),
        (
            "OPTIONS",
            "/api/uploads/{id}",
            format!("/api/uploads/{pending}"),
            plain(),
            [204; 6],
        ),
        (
            "HEAD",
            "/api/uploads/{id}",
            format!("/api/uploads/{pending}"),
            Box::new(move |r, _| tus(r)),
            [401, 403, 403, 200, 403, 200],
        ),
        (
            "PATCH",
            "/api/uploads/{id}",
            format!("/api/uploads/{pending}"),
            Box::new(move |r, _| {
                tus(r)
                    .header("upload-offset", "5")
                    .header("content-type", "application/offset+octet-stream")
                    .body(b"x".to_vec())
            }),
            [401, 403, 403, 409, 403, 409],
        ),
        (
            "DELETE",
            "/api/uploads/{id}",
            format!("/api/uploads/{doomed_upload}"),
            Box::new(move |r, _| tus(r)),
            // Once its owner terminated it, it is gone for everyone.
            [401, 403, 403, 204, 404, 404],
        ),
        (
            "GET",
            "/api/workflows",
            "/api/workflows".into(),
            plain(),
            [401, 200, 200, 200, 200, 200],
        ),
        (
            "POST",
            "/api/workflows/{name}/runs",
            "/api/workflows/import-dicoms-from-data-upload/runs".into(),
            body(json!({"file": "carl.bin", "project": "lung", "delete_original_file": false})),
            [401, 403, 403, 201, 403, 201],
        ),
        (
            "GET",
            "/api/workflow-runs",
            "/api/workflow-runs".into(),
            plain(),
            [401, 200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/api/workflow-runs/{id}",
            format!("/api/workflow-runs/{run_id}"),
            plain(),
            [401, 404, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/api/files",
            "/api/files".into(),
            plain(),
            [401, 200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/api/files/{*path}",
            "/api/files/carl.bin".into(),
            plain(),
            [401, 403, 403, 200, 403, 200],
        ),
        (
            "DELETE",
            "/api/files/{*path}",
            "/api/files/doomed.bin".into(),
            plain(),
            [401, 403, 403, 204, 403, 404],
        ),
        (
            "GET",
            "/api/tokens",
            "/api/tokens".into(),
            plain(),
            [401, 200, 200, 200, 200, 200],
        ),
        (
            "POST",
            "/api/tokens",
            "/api/tokens".into(),
            body(json!({"name": "more"})),
            [401, 201, 201, 201, 201, 201],
        ),
        (
            "DELETE",
            "/api/tokens/{id}",
            format!("/api/tokens/{spare_id}"),
            plain(),
            [401, 403, 403, 204, 403, 404],
        ),
        (
            "GET",
            "/api/users",
            "/api/users".into(),
            plain(),
            [401, 403, 403, 403, 403, 200],
        ),
        (
            "POST",
            "/api/users",
            "/api/users".into(),
            Box::new(|r, caller| r.json(&json!({"name": format!("new-user-{caller}")}))),
            [401, 403, 403, 403, 403, 201],
        ),
        (
            "PATCH",
            "/api/users/{name}",
            "/api/users/extra".into(),
            body(json!({"disabled": false})),
            [401, 403, 403, 403, 403, 200],
        ),
        (
            "GET",
            "/api/projects/{project}/dicom-rules",
            "/api/projects/lung/dicom-rules".into(),
            plain(),
            [401, 403, 403, 403, 200, 200],
        ),
        (
            "PUT",
            "/api/projects/{project}/dicom-rules",
            "/api/projects/lung/dicom-rules".into(),
            body(json!({})),
            [401, 403, 403, 403, 200, 200],
        ),
        (
            "GET",
            "/api/projects/{project}/dicom-destinations",
            "/api/projects/lung/dicom-destinations".into(),
            plain(),
            [401, 403, 403, 403, 200, 200],
        ),
        (
            "PUT",
            "/api/projects/{project}/dicom-destinations/{ae_title}",
            "/api/projects/lung/dicom-destinations/WS".into(),
            body(json!({"host": "10.0.0.5", "port": 104})),
            [401, 403, 403, 403, 200, 200],
        ),
        (
            "DELETE",
            "/api/projects/{project}/dicom-destinations/{ae_title}",
            "/api/projects/lung/dicom-destinations/WS".into(),
            plain(),
            [401, 403, 403, 403, 204, 404],
        ),
        (
            "GET",
            "/api/audit",
            "/api/audit".into(),
            plain(),
            [401, 403, 403, 403, 403, 200],
        ),
        (
            "GET",
            "/api/projects/{project}/unshared-series",
            "/api/projects/lung/unshared-series".into(),
            plain(),
            [401, 403, 403, 403, 403, 200],
        ),
        (
            "POST",
            "/api/series/{series_uid}/copy",
            format!("/api/series/{lung_uid}/copy"),
            body(json!({"from": "lung", "to": "spare"})),
            // The manager views lung and contributes to spare.
            [401, 403, 403, 403, 204, 204],
        ),
        (
            "POST",
            "/api/series/{series_uid}/move",
            format!("/api/series/{lung_uid}/move"),
            body(json!({"from": "spare", "to": "lung"})),
            // Moving out of spare takes managing it.
            [401, 403, 403, 403, 403, 204],
        ),
        (
            "DELETE",
            "/api/projects/{project}/series/{series_uid}",
            format!("/api/projects/lung/series/{w_uid}"),
            plain(),
            [401, 403, 403, 403, 204, 404],
        ),
        (
            "DELETE",
            "/api/series/{series_uid}",
            format!("/api/series/{x_uid}"),
            plain(),
            [401, 404, 403, 403, 200, 404],
        ),
        (
            "DELETE",
            "/api/studies/{study_uid}",
            format!("/api/studies/{y_study}"),
            plain(),
            // Y is in brain too, which only the administrator manages; the brain viewer
            // sees it.
            [401, 403, 403, 403, 403, 200],
        ),
        (
            "DELETE",
            "/api/patients/{patient_id}",
            "/api/patients/PAT-Z".into(),
            plain(),
            [401, 404, 403, 403, 200, 404],
        ),
    ];

    // The matrix names every operation the server documents, and no other.
    let document: Value = world
        .client
        .get(world.server.url("/api/openapi.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(|m| (m.to_ascii_uppercase(), path.replace("{path}", "{*path}")))
                .collect::<Vec<_>>()
        })
        .collect();
    let in_matrix: BTreeSet<(String, String)> = rows
        .iter()
        .map(|(m, t, ..)| (m.to_string(), t.to_string()))
        .collect();
    assert_eq!(
        documented.difference(&in_matrix).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented operations without a row in the matrix"
    );
    assert_eq!(in_matrix.len(), rows.len(), "one row per operation");

    let mut wrong = Vec::new();
    for (method, template, path, build, expected) in &rows {
        for (caller, want) in expected.iter().enumerate() {
            let request = world.request(caller, method.parse().unwrap(), path);
            let status = build(request, caller).send().unwrap().status().as_u16();
            if status != *want {
                wrong.push(format!(
                    "{method} {template} as {}: {status}, expected {want}",
                    CALLERS[caller]
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Lists hold only what the caller may see.
    let list = |caller: usize, path: &str| -> Value {
        world
            .request(caller, Method::GET, path)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let names = |v: Value| -> Vec<String> {
        items(&v)
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(list(1, "/api/projects")), ["brain"]);
    assert_eq!(names(list(2, "/api/projects")), ["lung"]);
    assert!(names(list(5, "/api/projects")).contains(&"admin".to_string()));
    let job_series = |caller: usize| -> BTreeSet<String> {
        items(&list(caller, "/api/jobs?limit=1000"))
            .iter()
            .filter_map(|j| j["series_uid"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(job_series(1), BTreeSet::from([brain_uid.clone()]));
    assert_eq!(job_series(2), BTreeSet::from([lung_uid.clone()]));
    assert!(job_series(5).contains(&brain_uid) && job_series(5).contains(&lung_uid));
    let files = |caller: usize| -> Vec<String> {
        items(&list(caller, "/api/files"))
            .iter()
            .map(|f| f["path"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(files(2).is_empty(), "{:?}", files(2));
    assert!(files(3).contains(&"carl.bin".to_string()));
    assert!(files(5).contains(&"carl.bin".to_string()));
    assert!(items(&list(1, "/api/workflow-runs")).is_empty());
    assert!(!items(&list(2, "/api/workflow-runs")).is_empty());
    // A token of the viewer does not make the viewer more than a viewer.
    let me = list(2, "/api/session");
    assert_eq!(
        me["projects"],
        json!([{"project": "lung", "role": "viewer"}])
    );
}

/// The DICOM rules of a project: only its calling AE titles, from its networks, may store into
/// it; the others get an A-ASSOCIATE-RJ (calling AE title not recognised), and both kinds of
/// association are in the audit trail.
#[test]
fn dicom_rules_decide_who_may_store_into_a_project() {
    let server = Server::start(&[]);
    server.create_project("locked");
    let put = |rules: Value| {
        reqwest::blocking::Client::new()
            .put(server.url("/api/projects/locked/dicom-rules"))
            .json(&rules)
            .send()
            .unwrap()
    };
    let answer = put(json!({"calling_ae_titles": ["kp-scanner"], "networks": []}));
    assert_eq!(answer.status(), 200);
    let bad = put(json!({"networks": ["10.0.0.0/99"]}));
    assert_eq!(bad.status(), 400);

    let tmp = tempfile::tempdir().unwrap();
    let spec = SeriesSpec {
        count: 2,
        rows: 16,
        columns: 16,
        uid_seed: "961".into(),
        ..Default::default()
    };
    write_series(tmp.path(), &spec).unwrap();
    let refused = server.dcmsend("kp-other", "kp-locked", tmp.path());
    let text = output_text(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("Association Rejected"), "{text}");
    // The reason, as echoscu shows it.
    let echo = std::process::Command::new(dcmtk("echoscu"))
        .args(["-v", "-aet", "kp-other", "-aec", "kp-locked", "127.0.0.1"])
        .arg(server.dicom_port.to_string())
        .output()
        .unwrap();
    let text = output_text(&echo);
    assert!(!echo.status.success(), "{text}");
    assert!(text.contains("Calling AE Title Not Recognized"), "{text}");
    assert_eq!(server.instance_total("locked"), 0);
    let sent = server.dcmsend("kp-scanner", "kp-locked", tmp.path());
    assert!(sent.status.success(), "{}", output_text(&sent));
    assert_eq!(server.instance_total("locked"), 2);

    // The right AE title from the wrong network.
    let answer = put(json!({"calling_ae_titles": ["kp-scanner"], "networks": ["10.9.9.0/24"]}));
    assert_eq!(answer.status(), 200);
    let from_here = server.dcmsend("kp-scanner", "kp-locked", tmp.path());
    assert!(!from_here.status.success(), "{}", output_text(&from_here));
    // Other projects are not concerned.
    let elsewhere = server.dcmsend("kp-other", "kp-admin", tmp.path());
    assert!(elsewhere.status.success(), "{}", output_text(&elsewhere));

    let events = server.wait_for(10, "the associations in the audit trail", || {
        let v = server.get_json("/api/audit?action=associate&limit=100");
        (items(&v).len() >= 4).then_some(items(&v))
    });
    let find = |actor: &str, outcome: &str| {
        events
            .iter()
            .any(|e| e["actor"] == actor && e["outcome"] == outcome && e["target"] == "locked")
    };
    assert!(find("dicom:kp-other", "refused"), "{events:?}");
    assert!(find("dicom:kp-scanner", "success"), "{events:?}");
    assert!(find("dicom:kp-scanner", "refused"), "{events:?}");
    assert!(
        events.iter().any(|e| e["actor"] == "dicom:kp-scanner"
            && e["detail"].as_str().unwrap_or("").contains("2 stored")),
        "{events:?}"
    );
}

/// DICOMweb, route by route: every route of `/dicomweb` and `/projects/{project}/dicomweb`
/// called by the six callers. Searches at `/dicomweb` are open to anyone signed in and narrowed
/// to what they may see (an outsider finds nothing, and what it names is not found); the
/// project root needs a role in the project; storing needs `contributor` (into `admin`: an
/// administrator). Rendered pictures and thumbnails follow the reads. The rows are generated
/// from the router's list of routes.
#[test]
fn dicomweb_answers_each_role_as_the_matrix_says() {
    use radport_testkit::{sop_uid, study_uid};
    let server = Server::start_with_env(
        &["--access", "enforced"],
        &[("RADPORT_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    let mut world = World {
        server,
        client: Client::new(),
        tokens: vec![None, None, None, None, None, Some(ADMIN_TOKEN.to_string())],
    };
    for project in ["lung", "brain"] {
        let r = world
            .admin(Method::POST, "/api/projects")
            .json(&json!({"name": project}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    for (i, (name, project, role)) in [
        ("olga", "brain", "viewer"),
        ("vera", "lung", "viewer"),
        ("carl", "lung", "contributor"),
        ("mona", "lung", "manager"),
    ]
    .into_iter()
    .enumerate()
    {
        world.tokens[i + 1] = Some(token_of(&world, name));
        let r = world
            .admin(
                Method::PUT,
                &format!("/api/projects/{project}/members/{name}"),
            )
            .json(&json!({"role": role}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    let tmp = tempfile::tempdir().unwrap();
    let lung = SeriesSpec {
        count: 2,
        rows: 16,
        columns: 16,
        uid_seed: "961".into(),
        ..Default::default()
    };
    write_series(tmp.path(), &lung).unwrap();
    assert!(world
        .server
        .dcmsend("kp-ds", "kp-lung", tmp.path())
        .status
        .success());
    let file = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let bytes = read_file(p);
            let sop = sop_uid(&lung, 0);
            bytes.windows(sop.len()).any(|w| w == sop.as_bytes())
        })
        .map(|p| read_file(&p))
        .expect("the first instance's file");
    let values = [
        ("{project}", "lung".to_string()),
        ("{study}", study_uid(&lung)),
        ("{series}", series_uid(&lung)),
        ("{instance}", sop_uid(&lung, 0)),
        ("{frames}", "1".to_string()),
        ("{tag}", "7FE00010".to_string()),
    ];
    let mut wrong = Vec::new();
    let mut outsider_found = Vec::new();
    let routes = radport_http::dicomweb::routes_list();
    assert_eq!(routes.len(), 48);
    for (method, template) in routes {
        let mut path = template.clone();
        for (name, value) in &values {
            path = path.replace(name, value);
        }
        let per_project = template.starts_with("/projects/");
        let search = template.ends_with("/studies")
            || template.ends_with("/series")
            || template.ends_with("/instances");
        let expected: [u16; 6] = match (method, per_project, search) {
            ("POST", true, _) => [401, 403, 403, 200, 200, 200],
            ("POST", false, _) => [401, 403, 403, 403, 403, 200],
            (_, true, _) => [401, 403, 200, 200, 200, 200],
            (_, false, true) => [401, 200, 200, 200, 200, 200],
            (_, false, false) => [401, 404, 200, 200, 200, 200],
        };
        for (caller, want) in expected.iter().enumerate() {
            let mut request = world
                .request(caller, method.parse().unwrap(), &path)
                .header("accept", "*/*");
            if method == "POST" {
                let boundary = "matrix-boundary";
                let mut body =
                    format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
                body.extend_from_slice(&file);
                body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
                request = request
                    .header(
                        "content-type",
                        format!(
                            "multipart/related; type=\"application/dicom\"; boundary={boundary}"
                        ),
                    )
                    .body(body);
            }
            let response = request.send().unwrap();
            let status = response.status().as_u16();
            if status != *want {
                wrong.push(format!(
                    "{method} {template} as {}: {status}, expected {want}",
                    CALLERS[caller]
                ));
            }
            if caller == 1 && search && status == 200 && !per_project {
                let found: Value = response.json().unwrap();
                if !found.as_array().unwrap().is_empty() {
                    outsider_found.push(template.clone());
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        outsider_found.is_empty(),
        "the outsider found lung's data through {outsider_found:?}"
    );
    // A viewer's search finds lung's study.
    let found: Value = world
        .request(2, Method::GET, "/dicomweb/studies")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    // Searches, retrieves and rendered pictures are in the audit trail; frames and
    // thumbnails are not.
    let audit: Value = world
        .admin(Method::GET, "/api/audit?actor=vera&limit=200")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let actions: BTreeSet<String> = items(&audit)
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for action in [
        "search (DICOMweb)",
        "retrieve (DICOMweb)",
        "read metadata (DICOMweb)",
        "view rendered (DICOMweb)",
    ] {
        assert!(actions.contains(action), "{action} in {actions:?}");
    }
    assert!(
        !actions.iter().any(|a| a.contains("thumbnail")),
        "{actions:?}"
    );
}
