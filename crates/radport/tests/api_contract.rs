//! The served OpenAPI document against the API's real answers: every operation of the document
//! is called on a server (access enforced, called with an administrator's token) that received
//! a series over DICOM and ran an import, and every answer must be documented (its status, its
//! media type) and, for JSON, valid against the document's schema with no property the schema
//! does not name.

use std::collections::BTreeSet;

use crate::common::*;
use radport_testkit::{
    seg_series_uid, seg_sop_uid, series_uid, write_seg, write_series, SegSpec, SeriesSpec,
};
use reqwest::blocking::{Client, Response};
use reqwest::Method;
use serde_json::{json, Value};

/// The document, with every object schema closed (`additionalProperties: false`), and the
/// operations called so far.
struct Contract {
    server_url: String,
    document: Value,
    client: Client,
    called: BTreeSet<(String, String)>,
}

/// The administrator token the server is started with.
const TOKEN: &str = "rpt_contract-test-token-00000000000000000000000";

/// A client that sends the administrator token with every request.
fn authorized_client() -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {TOKEN}").parse().unwrap(),
    );
    Client::builder().default_headers(headers).build().unwrap()
}

/// The status of an authorized GET (for waiting; not checked against the document).
fn status_of(server: &Server, path: &str) -> u16 {
    authorized_client()
        .get(server.url(path))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// One answer, checked.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

impl Contract {
    fn new(server: &Server) -> Contract {
        let mut document = server.get_json("/api/openapi.json");
        assert_eq!(document["openapi"], "3.1.0");
        let schemas = document["components"]["schemas"]
            .as_object_mut()
            .expect("components.schemas");
        for schema in schemas.values_mut() {
            if schema.get("properties").is_some() && schema.get("additionalProperties").is_none() {
                schema["additionalProperties"] = json!(false);
            }
        }
        Contract {
            server_url: server.url(""),
            document,
            client: authorized_client(),
            called: BTreeSet::new(),
        }
    }

    /// Calls `method` on `template` with `{name}` parts filled from `args`, and checks the
    /// answer against the document's operation.
    fn call(
        &mut self,
        method: Method,
        template: &str,
        args: &[(&str, &str)],
        build: impl FnOnce(reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder,
    ) -> Answer {
        let mut path = template.to_string();
        for (name, value) in args {
            path = path.replace(&format!("{{{name}}}"), value);
        }
        assert!(
            !path.contains('{'),
            "{template}: a path parameter is not given"
        );
        let request = self
            .client
            .request(method.clone(), format!("{}{path}", self.server_url));
        let response: Response = build(request).send().expect("the request is answered");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().expect("the body").to_vec();
        let method_key = method.as_str().to_ascii_lowercase();
        let what = format!("{method} {path} -> {status}");
        let operation = &self.document["paths"][template][&method_key];
        assert!(
            operation.is_object(),
            "{what}: {template} has no {method_key} in the document"
        );
        let documented = &operation["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{what}: status {status} is not documented for {method} {template}: {}",
            String::from_utf8_lossy(&body)
        );
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_string();
        match documented.get("content").and_then(Value::as_object) {
            None => assert!(
                body.is_empty(),
                "{what}: the document says no body, the answer has {} bytes",
                body.len()
            ),
            Some(content) => {
                let media = content.get(&content_type).unwrap_or_else(|| {
                    panic!(
                        "{what}: answered {content_type:?}, documented {:?}",
                        content.keys().collect::<Vec<_>>()
                    )
                });
                if content_type == "application/json" {
                    let value: Value = serde_json::from_slice(&body)
                        .unwrap_or_else(|e| panic!("{what}: not JSON ({e})"));
                    self.validate(&what, &media["schema"], &value);
                }
            }
        }
        self.called.insert((method_key, template.to_string()));
        Answer {
            status,
            headers,
            body,
        }
    }

    fn validate(&self, what: &str, schema: &Value, value: &Value) {
        let mut root = schema.clone();
        root["components"] = self.document["components"].clone();
        let validator = jsonschema::draft202012::new(&root)
            .unwrap_or_else(|e| panic!("{what}: the document's schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: the answer does not fit the document:\n{}\n{value:#}",
            errors.join("\n")
        );
    }

    fn get(&mut self, template: &str, args: &[(&str, &str)]) -> Answer {
        self.call(Method::GET, template, args, |r| r)
    }

    /// Every operation of the document that was not called.
    fn not_called(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for (path, item) in self.document["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                if !self.called.contains(&(method.clone(), path.clone())) {
                    missing.push(format!("{method} {path}"));
                }
            }
        }
        missing
    }
}

#[test]
fn every_answer_of_the_api_fits_its_openapi_document() {
    let server = Server::start_with_env(
        &["--stable-after", "1", "--access", "enforced"],
        &[
            ("RADPORT_ADMIN_TOKEN", TOKEN),
            ("RADPORT_ADMIN_PASSWORD", "the contract's password"),
        ],
    );
    let mut api = Contract::new(&server);
    let tmp = tempfile::tempdir().unwrap();

    // Server and projects.
    let health = api.get("/api/health", &[]).json();
    assert_eq!(health["status"], "ok");
    assert!(health["deployment"]["dicom_port"].as_u64().is_some());
    assert_eq!(api.get("/api/health/live", &[]).json()["status"], "ok");
    let figures = api.get("/metrics", &[]);
    assert_eq!(figures.status, 200);
    let ready = api.get("/api/health/ready", &[]).json();
    assert_eq!(ready["checks"]["archive"], "ok", "{ready}");
    let created = api.call(Method::POST, "/api/projects", &[], |r| {
        r.json(&json!({"name": "contract"}))
    });
    assert_eq!(created.status, 201);
    assert_eq!(created.json()["dicom_addressable"], true);
    let again = api.call(Method::POST, "/api/projects", &[], |r| {
        r.json(&json!({"name": "CONTRACT"}))
    });
    assert_eq!(again.status, 409);
    let bad = api.call(Method::POST, "/api/projects", &[], |r| {
        r.header("content-type", "application/json").body("{")
    });
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().is_some());
    let projects = api.get("/api/projects", &[]).json();
    assert!(projects["items"].as_array().unwrap().len() >= 2);

    // A series over DICOM, until it is validated and drawn.
    let spec = SeriesSpec {
        count: 3,
        rows: 64,
        columns: 64,
        uid_seed: "901".into(),
        ..Default::default()
    };
    let files = write_series(&tmp.path().join("dicom"), &spec).unwrap();
    assert!(server
        .dcmsend("kp-sent", "kp-contract", &tmp.path().join("dicom"))
        .status
        .success());
    let uid = series_uid(&spec);
    let series = [("series_uid", uid.as_str())];
    server.wait_for(60, "validation and thumbnail", || {
        let validated = status_of(&server, &format!("/api/series/{uid}/validation")) == 200;
        let drawn = status_of(&server, &format!("/api/series/{uid}/thumbnail")) == 200;
        (validated && drawn).then_some(())
    });

    let datasets = api.get(
        "/api/projects/{project}/datasets",
        &[("project", "contract")],
    );
    assert_eq!(datasets.json()["items"][0]["name"], "sent");
    let page = api.call(
        Method::GET,
        "/api/projects/{project}/series",
        &[("project", "contract")],
        |r| {
            r.query(&[
                ("sort", "study_date"),
                ("validated", "true"),
                ("limit", "10"),
            ])
        },
    );
    assert_eq!(page.json()["total"], 1);
    let bad_sort = api.call(
        Method::GET,
        "/api/projects/{project}/series",
        &[("project", "contract")],
        |r| r.query(&[("sort", "size")]),
    );
    assert_eq!(bad_sort.status, 400);
    // One series: no page after it, and a cursor this list did not make is refused.
    assert!(page.json().get("next").is_none());
    let bad_cursor = api.call(
        Method::GET,
        "/api/projects/{project}/series",
        &[("project", "contract")],
        |r| r.query(&[("after", "not-a-cursor")]),
    );
    assert_eq!(bad_cursor.status, 400);
    let missing = api.get("/api/projects/{project}/series", &[("project", "nope")]);
    assert_eq!(missing.status, 404);
    let facets = api.get("/api/projects/{project}/facets", &[("project", "contract")]);
    assert_eq!(facets.json()["dataset"][0]["value"], "sent");

    let detail = api.get("/api/series/{series_uid}", &series).json();
    assert_eq!(detail["instances"].as_array().unwrap().len(), files.len());
    assert!(detail["metadata"].is_object());
    assert!(
        detail["instances"][0].get("object_key").is_none(),
        "archive keys stay inside"
    );
    let sop = detail["instances"][0]["sop_instance_uid"]
        .as_str()
        .unwrap()
        .to_string();
    let instance = [
        ("series_uid", uid.as_str()),
        ("sop_instance_uid", sop.as_str()),
    ];
    let file = api.get(
        "/api/series/{series_uid}/instances/{sop_instance_uid}",
        &instance,
    );
    assert_eq!(&file.body[128..132], b"DICM");
    let rendered = api.get(
        "/api/series/{series_uid}/instances/{sop_instance_uid}/rendered",
        &instance,
    );
    assert!(rendered.body.starts_with(b"\x89PNG"));
    // A segmentation of two of its slices: its slices, and a CT instance that is none.
    let seg = SegSpec {
        source: spec.clone(),
        slices: vec![2, 0],
        claimed_frames: None,
        uid_seed: "902".into(),
    };
    write_seg(&tmp.path().join("seg"), &seg).unwrap();
    assert!(server
        .dcmsend("kp-sent", "kp-contract", &tmp.path().join("seg"))
        .status
        .success());
    let (seg_series, seg_sop) = (seg_series_uid(&seg), seg_sop_uid(&seg));
    let seg_instance = [
        ("series_uid", seg_series.as_str()),
        ("sop_instance_uid", seg_sop.as_str()),
    ];
    let slices = api
        .get(
            "/api/series/{series_uid}/instances/{sop_instance_uid}/segmentation",
            &seg_instance,
        )
        .json();
    assert_eq!(slices["slices"].as_array().unwrap().len(), 2);
    assert_eq!(slices["slices"][0]["source"]["stored"], true);
    let not_seg = api.get(
        "/api/series/{series_uid}/instances/{sop_instance_uid}/segmentation",
        &instance,
    );
    assert_eq!(not_seg.status, 404);
    let thumbnail = api.get("/api/series/{series_uid}/thumbnail", &series);
    let etag = thumbnail.headers["etag"].clone();
    let unchanged = api.call(
        Method::GET,
        "/api/series/{series_uid}/thumbnail",
        &series,
        |r| r.header("if-none-match", etag),
    );
    assert_eq!(unchanged.status, 304);
    let zip = api.get("/api/series/{series_uid}/download", &series);
    assert!(zip.body.starts_with(b"PK"));
    let validation = api
        .get("/api/series/{series_uid}/validation", &series)
        .json();
    assert_eq!(validation["instances_checked"], files.len());
    let report = api.get("/api/series/{series_uid}/validation/report", &series);
    assert!(String::from_utf8_lossy(&report.body).contains("<html"));
    let verify = api.call(
        Method::POST,
        "/api/series/{series_uid}/verify",
        &series,
        |r| r,
    );
    assert_eq!(verify.status, 202);
    let unknown = [("series_uid", "1.2.3.4")];
    assert_eq!(api.get("/api/series/{series_uid}", &unknown).status, 404);
    assert_eq!(
        api.get("/api/series/{series_uid}/validation", &unknown)
            .status,
        404
    );
    let jobs = api.call(Method::GET, "/api/jobs", &[], |r| {
        r.query(&[("state", "succeeded"), ("kind", "thumbnail")])
    });
    assert!(jobs.json()["total"].as_i64().unwrap() >= 1);
    let bad_state = api.call(Method::GET, "/api/jobs", &[], |r| {
        r.query(&[("state", "done")])
    });
    assert_eq!(bad_state.status, 400);

    // An upload through tus, then an import of it.
    let mut entries = Vec::new();
    for (i, path) in files.iter().enumerate() {
        entries.push((format!("folder/{i}.dcm"), std::fs::read(path).unwrap()));
    }
    let zip_path = tmp.path().join("import.zip");
    zip_of(&zip_path, &entries);
    let zip_bytes = std::fs::read(&zip_path).unwrap();
    let options = api.call(Method::OPTIONS, "/api/uploads", &[], |r| r);
    assert_eq!(options.headers["tus-version"], "1.0.0");
    let tus = |r: reqwest::blocking::RequestBuilder| r.header("tus-resumable", "1.0.0");
    let length = zip_bytes.len().to_string();
    let created = api.call(Method::POST, "/api/uploads", &[], |r| {
        tus(r)
            .header("upload-length", &length)
            .header("upload-metadata", "filename aW1wb3J0LnppcA==")
    });
    assert_eq!(created.status, 201);
    let location = created.headers["location"].to_str().unwrap().to_string();
    let id = location.rsplit('/').next().unwrap().to_string();
    let upload = [("id", id.as_str())];
    api.call(Method::OPTIONS, "/api/uploads/{id}", &upload, |r| r);
    let half = zip_bytes.len() / 2;
    let first = api.call(Method::PATCH, "/api/uploads/{id}", &upload, |r| {
        tus(r)
            .header("upload-offset", "0")
            .header("content-type", "application/offset+octet-stream")
            .body(zip_bytes[..half].to_vec())
    });
    assert_eq!(first.status, 204);
    let stale = api.call(Method::PATCH, "/api/uploads/{id}", &upload, |r| {
        tus(r)
            .header("upload-offset", "0")
            .header("content-type", "application/offset+octet-stream")
            .body(zip_bytes[..half].to_vec())
    });
    assert_eq!(stale.status, 409);
    let head = api.call(Method::HEAD, "/api/uploads/{id}", &upload, tus);
    assert_eq!(head.headers["upload-offset"], half.to_string().as_str());
    let rest = api.call(Method::PATCH, "/api/uploads/{id}", &upload, |r| {
        tus(r)
            .header("upload-offset", half.to_string())
            .header("content-type", "application/offset+octet-stream")
            .body(zip_bytes[half..].to_vec())
    });
    assert_eq!(rest.status, 204);
    let listed = api.get("/api/files", &[]).json();
    assert!(listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["path"] == "import.zip" && f["size"] == zip_bytes.len()));
    let file = [("path", "import.zip")];
    assert_eq!(api.get("/api/files/{path}", &file).body, zip_bytes);

    let workflows = api.get("/api/workflows", &[]).json();
    assert!(workflows["items"].as_array().unwrap().len() >= 2);
    let name = [("name", "import-dicoms-from-data-upload")];
    let bad_params = api.call(Method::POST, "/api/workflows/{name}/runs", &name, |r| {
        r.json(&json!({"file": "import.zip", "colour": "red"}))
    });
    assert_eq!(bad_params.status, 400);
    let no_such = api.call(
        Method::POST,
        "/api/workflows/{name}/runs",
        &[("name", "nope")],
        |r| r.json(&json!({})),
    );
    assert_eq!(no_such.status, 404);
    let run = api.call(Method::POST, "/api/workflows/{name}/runs", &name, |r| {
        r.json(&json!({
            "file": "import.zip",
            "project": "contract",
            "dataset": "zipped",
            "delete_original_file": false
        }))
    });
    assert_eq!(run.status, 201);
    let run_id = run.json()["id"].as_str().unwrap().to_string();
    server.wait_for(60, "the run to end", || {
        let run: Value = authorized_client()
            .get(server.url(&format!("/api/workflow-runs/{run_id}")))
            .send()
            .ok()?
            .json()
            .ok()?;
        matches!(run["state"].as_str(), Some("succeeded" | "failed")).then_some(())
    });
    let run = api
        .get("/api/workflow-runs/{id}", &[("id", run_id.as_str())])
        .json();
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["errors"], json!([]), "{run}");
    let runs = api.call(Method::GET, "/api/workflow-runs", &[], |r| {
        r.query(&[("limit", "5")])
    });
    assert_eq!(runs.json()["items"][0]["id"], run_id.as_str());
    assert_eq!(
        api.get("/api/workflow-runs/{id}", &[("id", "nope")]).status,
        404
    );

    // Deletions.
    let deleted = api.call(Method::DELETE, "/api/files/{path}", &file, |r| r);
    assert_eq!(deleted.status, 204);
    assert_eq!(api.get("/api/files/{path}", &file).status, 404);
    let created = api.call(Method::POST, "/api/uploads", &[], |r| {
        tus(r).header("upload-length", "10")
    });
    let id = created.headers["location"]
        .to_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let terminated = api.call(
        Method::DELETE,
        "/api/uploads/{id}",
        &[("id", id.as_str())],
        tus,
    );
    assert_eq!(terminated.status, 204);
    placement_and_erasure(&mut api, &server, &uid, &seg_series, tmp.path());
    let admin = api.call(
        Method::DELETE,
        "/api/projects/{project}",
        &[("project", "admin")],
        |r| r,
    );
    assert_eq!(admin.status, 400);
    let gone = api.call(
        Method::DELETE,
        "/api/projects/{project}",
        &[("project", "contract")],
        |r| r.query(&[("erase_unshared_series", "true")]),
    );
    assert_eq!(gone.status, 200);
    assert_eq!(gone.json()["series"], json!([uid]));

    access_operations(&mut api);
    assert_eq!(
        api.not_called(),
        Vec::<String>::new(),
        "operations of the document this test does not call"
    );
}

/// Copying and moving series, and erasing a series, a study and a patient.
fn placement_and_erasure(
    api: &mut Contract,
    server: &Server,
    uid: &str,
    seg_series: &str,
    tmp: &std::path::Path,
) {
    let created = api.call(Method::POST, "/api/projects", &[], |r| {
        r.json(&json!({"name": "other"}))
    });
    assert_eq!(created.status, 201);
    let series = [("series_uid", uid)];
    let place = |api: &mut Contract, what: &str, body: Value| {
        api.call(
            Method::POST,
            &format!("/api/series/{{series_uid}}/{what}"),
            &series,
            |r| r.json(&body),
        )
        .status
    };
    assert_eq!(
        place(api, "copy", json!({"from": "contract", "to": "other"})),
        204
    );
    assert_eq!(
        place(api, "copy", json!({"from": "contract", "to": "admin"})),
        400
    );
    assert_eq!(
        place(api, "copy", json!({"from": "nope", "to": "other"})),
        404
    );
    let in_other = [("project", "other"), ("series_uid", uid)];
    let removed = api.call(
        Method::DELETE,
        "/api/projects/{project}/series/{series_uid}",
        &in_other,
        |r| r,
    );
    assert_eq!(removed.status, 204);
    let again = api.call(
        Method::DELETE,
        "/api/projects/{project}/series/{series_uid}",
        &in_other,
        |r| r,
    );
    assert_eq!(again.status, 404);
    assert_eq!(
        place(api, "move", json!({"from": "contract", "to": "other"})),
        204
    );
    assert_eq!(
        place(api, "move", json!({"from": "other", "to": "contract"})),
        204
    );
    assert_eq!(
        place(api, "move", json!({"from": "admin", "to": "other"})),
        400
    );
    assert_eq!(
        place(api, "move", json!({"from": "other", "to": "contract"})),
        404
    );
    assert_eq!(place(api, "move", json!({"to": "contract"})), 400);
    let unshared = api.get(
        "/api/projects/{project}/unshared-series",
        &[("project", "contract")],
    );
    assert_eq!(
        unshared.json()["count"],
        2,
        "the CT series and its segmentation"
    );
    let missing = api.get(
        "/api/projects/{project}/unshared-series",
        &[("project", "nope")],
    );
    assert_eq!(missing.status, 404);

    // Erasure: the segmentation by its series, then a patient of its own and a study of its
    // own (sent for this).
    let erased = api.call(
        Method::DELETE,
        "/api/series/{series_uid}",
        &[("series_uid", seg_series)],
        |r| r,
    );
    assert_eq!(erased.status, 200);
    assert_eq!(erased.json()["instances"], 1);
    for (seed, patient) in [("903", "CONTRACT-P"), ("904", "CONTRACT-S")] {
        let spec = SeriesSpec {
            count: 1,
            rows: 16,
            columns: 16,
            patient_id: patient.into(),
            uid_seed: seed.into(),
            ..Default::default()
        };
        let dir = tmp.join(seed);
        write_series(&dir, &spec).unwrap();
        assert!(server
            .dcmsend("kp-sent", "kp-contract", &dir)
            .status
            .success());
    }
    let patient = api.call(
        Method::DELETE,
        "/api/patients/{patient_id}",
        &[("patient_id", "CONTRACT-P")],
        |r| r,
    );
    assert_eq!(patient.status, 200);
    assert_eq!(patient.json()["patients"], 1);
    let study = radport_testkit::study_uid(&SeriesSpec {
        uid_seed: "904".into(),
        ..Default::default()
    });
    let erased = api.call(
        Method::DELETE,
        "/api/studies/{study_uid}",
        &[("study_uid", study.as_str())],
        |r| r,
    );
    assert_eq!(erased.status, 200);
    assert_eq!(erased.json()["studies"], 1);
    for (template, name) in [
        ("/api/series/{series_uid}", "series_uid"),
        ("/api/studies/{study_uid}", "study_uid"),
        ("/api/patients/{patient_id}", "patient_id"),
    ] {
        let gone = api.call(Method::DELETE, template, &[(name, "1.2.3.999")], |r| r);
        assert_eq!(gone.status, 404, "{template}");
    }
}

/// Sessions, tokens, accounts and members, and the refusals of the guard.
fn access_operations(api: &mut Contract) {
    // Who: the administrator's token.
    let me = api.get("/api/session", &[]).json();
    assert_eq!(
        (me["user"].as_str(), me["admin"].as_bool()),
        (Some("admin"), Some(true))
    );
    assert_eq!(me["access"], "enforced");

    // Anonymous callers: refused, with documented answers.
    let anonymous = |api: &mut Contract, method: Method, template: &str, args: &[(&str, &str)]| {
        api.call(method, template, args, |r| {
            r.header(
                "authorization",
                "Bearer rpt_not-a-real-token-0000000000000000000000000",
            )
        })
    };
    assert_eq!(
        anonymous(api, Method::GET, "/api/projects", &[]).status,
        401
    );
    assert_eq!(anonymous(api, Method::GET, "/api/users", &[]).status, 401);

    // Single sign-on is not configured on this server: both routes say so (tests/oidc.rs calls
    // them with a provider).
    for template in ["/api/oidc/login", "/api/oidc/callback"] {
        let answer = api.get(template, &[]);
        assert_eq!(answer.status, 404, "{template}");
        assert!(
            answer.json()["error"]
                .as_str()
                .is_some_and(|e| e.contains("not configured")),
            "{template}"
        );
    }
    assert_eq!(me["single_sign_on"], Value::Null);

    // A session: sign in, see it, sign out.
    let bad = api.call(Method::POST, "/api/session", &[], |r| {
        r.json(&json!({"name": "admin", "password": "wrong password!"}))
    });
    assert_eq!(bad.status, 401);
    let session = api.call(Method::POST, "/api/session", &[], |r| {
        r.json(&json!({"name": "admin", "password": "the contract's password"}))
    });
    assert_eq!(session.status, 201);
    let cookies: Vec<String> = session
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        cookies.iter().any(|c| c.starts_with("radport_session=rpt_")
            && c.contains("HttpOnly")
            && c.contains("SameSite=Strict")),
        "{cookies:?}"
    );
    let signed_out = api.call(Method::DELETE, "/api/session", &[], |r| r);
    assert_eq!(signed_out.status, 204);

    // The administrator's own password.
    let wrong = api.call(Method::POST, "/api/session/password", &[], |r| {
        r.json(&json!({"current": "not it at all", "new": "a new password 1"}))
    });
    assert_eq!(wrong.status, 403);
    let changed = api.call(Method::POST, "/api/session/password", &[], |r| {
        r.json(&json!({"current": "the contract's password", "new": "a new password 1"}))
    });
    assert_eq!(changed.status, 204);

    // Accounts and members.
    let created = api.call(Method::POST, "/api/users", &[], |r| {
        r.json(&json!({"name": "carol"}))
    });
    assert_eq!(created.status, 201);
    assert_eq!(created.json()["password"].as_str().map(str::len), Some(20));
    let again = api.call(Method::POST, "/api/users", &[], |r| {
        r.json(&json!({"name": "CAROL"}))
    });
    assert_eq!(again.status, 409);
    let users = api.get("/api/users", &[]).json();
    assert!(users["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["name"] == "carol"));
    let patched = api.call(
        Method::PATCH,
        "/api/users/{name}",
        &[("name", "carol")],
        |r| r.json(&json!({"disabled": true, "reset_password": true})),
    );
    assert_eq!(patched.status, 200);
    assert_eq!(patched.json()["user"]["disabled"], true);
    let nobody = api.call(
        Method::PATCH,
        "/api/users/{name}",
        &[("name", "nobody")],
        |r| r.json(&json!({"disabled": true})),
    );
    assert_eq!(nobody.status, 404);
    let project = [("project", "admin")];
    let member = [("project", "admin"), ("user", "carol")];
    assert_eq!(
        api.call(
            Method::PUT,
            "/api/projects/{project}/members/{user}",
            &member,
            |r| r.json(&json!({"role": "viewer"}))
        )
        .status,
        204
    );
    let members = api.get("/api/projects/{project}/members", &project).json();
    assert_eq!(members["items"][0]["role"], "viewer");
    assert_eq!(
        api.call(
            Method::PUT,
            "/api/projects/{project}/members/{user}",
            &[("project", "admin"), ("user", "nobody")],
            |r| r.json(&json!({"role": "viewer"}))
        )
        .status,
        404
    );
    assert_eq!(
        api.call(
            Method::DELETE,
            "/api/projects/{project}/members/{user}",
            &member,
            |r| r
        )
        .status,
        204
    );
    assert_eq!(
        api.call(
            Method::DELETE,
            "/api/projects/{project}/members/{user}",
            &member,
            |r| r
        )
        .status,
        404
    );

    // DICOM rules.
    let rules = [("project", "admin")];
    let got = api.get("/api/projects/{project}/dicom-rules", &rules);
    assert_eq!(got.json(), json!({"calling_ae_titles": [], "networks": []}));
    let set = api.call(
        Method::PUT,
        "/api/projects/{project}/dicom-rules",
        &rules,
        |r| r.json(&json!({"calling_ae_titles": [" CT-1 "], "networks": ["10.1.2.3/16"]})),
    );
    assert_eq!(
        set.json(),
        json!({"calling_ae_titles": ["CT-1"], "networks": ["10.1.0.0/16"]})
    );
    let bad = api.call(
        Method::PUT,
        "/api/projects/{project}/dicom-rules",
        &rules,
        |r| r.json(&json!({"networks": ["nowhere"]})),
    );
    assert_eq!(bad.status, 400);
    let missing = api.get(
        "/api/projects/{project}/dicom-rules",
        &[("project", "nope")],
    );
    assert_eq!(missing.status, 404);
    let cleared = api.call(
        Method::PUT,
        "/api/projects/{project}/dicom-rules",
        &rules,
        |r| r.json(&json!({})),
    );
    assert_eq!(cleared.status, 200);

    // C-MOVE destinations.
    let project = [("project", "admin")];
    let listed = api.get("/api/projects/{project}/dicom-destinations", &project);
    assert_eq!(listed.json(), json!({"destinations": []}));
    let ws = [("project", "admin"), ("ae_title", "WS")];
    let put = api.call(
        Method::PUT,
        "/api/projects/{project}/dicom-destinations/{ae_title}",
        &ws,
        |r| r.json(&json!({"host": " ws.example ", "port": 11112})),
    );
    assert_eq!(
        put.json(),
        json!({"ae_title": "WS", "host": "ws.example", "port": 11112, "description": ""})
    );
    let listed = api.get("/api/projects/{project}/dicom-destinations", &project);
    assert_eq!(listed.json()["destinations"].as_array().unwrap().len(), 1);
    let bad = api.call(
        Method::PUT,
        "/api/projects/{project}/dicom-destinations/{ae_title}",
        &ws,
        |r| r.json(&json!({"host": "ws.example", "port": 0})),
    );
    assert_eq!(bad.status, 400);
    let missing = api.get(
        "/api/projects/{project}/dicom-destinations",
        &[("project", "nope")],
    );
    assert_eq!(missing.status, 404);
    let removed = api.call(
        Method::DELETE,
        "/api/projects/{project}/dicom-destinations/{ae_title}",
        &ws,
        |r| r,
    );
    assert_eq!(removed.status, 204);
    let gone = api.call(
        Method::DELETE,
        "/api/projects/{project}/dicom-destinations/{ae_title}",
        &ws,
        |r| r,
    );
    assert_eq!(gone.status, 404);

    // The audit trail.
    let audit = api.call(Method::GET, "/api/audit", &[], |r| {
        r.query(&[("action", "sign-in"), ("limit", "10")])
    });
    assert_eq!(audit.status, 200);
    assert!(audit.json()["total"].as_i64().unwrap() >= 2);
    let bad = api.call(Method::GET, "/api/audit", &[], |r| {
        r.query(&[("outcome", "maybe")])
    });
    assert_eq!(bad.status, 400);

    // Tokens.
    let made = api.call(Method::POST, "/api/tokens", &[], |r| {
        r.json(&json!({"name": "ci", "role": "viewer", "expires_in_days": 30}))
    });
    assert_eq!(made.status, 201);
    let made = made.json();
    assert!(made["token"].as_str().unwrap().starts_with("rpt_"));
    let id = made["info"]["id"].as_str().unwrap().to_string();
    let listed = api.get("/api/tokens", &[]).json();
    assert!(listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == id.as_str()));
    assert!(!listed.to_string().contains(made["token"].as_str().unwrap()));
    let bad_expiry = api.call(Method::POST, "/api/tokens", &[], |r| {
        r.json(&json!({"name": "x", "expires_in_days": 0}))
    });
    assert_eq!(bad_expiry.status, 400);
    assert_eq!(
        api.call(
            Method::DELETE,
            "/api/tokens/{id}",
            &[("id", id.as_str())],
            |r| r
        )
        .status,
        204
    );
    assert_eq!(
        api.call(
            Method::DELETE,
            "/api/tokens/{id}",
            &[("id", id.as_str())],
            |r| r
        )
        .status,
        404
    );
}
