//! Accounts, project roles and API tokens.

use super::*;
use radport_catalog::{NewToken, OidcAccount, Role};

both!(accounts);
both!(memberships);
both!(tokens);
both!(single_sign_on_accounts);

async fn accounts(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    assert_eq!(c.count_users().await.expect("count"), 0);
    let u = c
        .create_user("Alice", Some("$argon2id$hash"), false, true)
        .await
        .expect("create");
    assert_eq!(
        (u.name.as_str(), u.is_admin, u.must_change_password),
        ("Alice", false, true)
    );
    assert!(matches!(
        c.create_user("ALICE", None, false, false).await,
        Err(CatalogError::Conflict(_))
    ));
    assert!(matches!(
        c.create_user("no spaces", None, false, false).await,
        Err(CatalogError::Invalid(_))
    ));
    c.create_user("bob", None, true, false)
        .await
        .expect("create");
    assert_eq!(c.count_users().await.expect("count"), 2);

    let found = c.get_user("alice").await.expect("get").expect("exists");
    assert_eq!(found, u);
    assert!(c.get_user("carol").await.expect("get").is_none());
    assert!(c.get_user("../x").await.expect("get").is_none());

    c.set_password("alice", "$argon2id$new", false)
        .await
        .expect("passwd");
    c.set_user_disabled("ALICE", true).await.expect("disable");
    let changed = c.get_user("alice").await.expect("get").expect("exists");
    assert_eq!(changed.password_hash.as_deref(), Some("$argon2id$new"));
    assert!(changed.disabled && !changed.must_change_password);
    assert!(changed.updated_at >= u.updated_at);
    c.set_user_admin("alice", true).await.expect("admin");
    assert!(c.get_user("alice").await.unwrap().unwrap().is_admin);
    assert!(matches!(
        c.set_user_disabled("carol", true).await,
        Err(CatalogError::NotFound(_))
    ));
    let names: Vec<String> = c
        .list_users()
        .await
        .expect("list")
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["Alice", "bob"]);
}

async fn memberships(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    c.create_project("Lung").await.expect("project");
    c.create_project("brain").await.expect("project");
    c.create_user("alice", None, false, false)
        .await
        .expect("user");
    c.create_user("bob", None, false, false)
        .await
        .expect("user");
    c.set_member("lung", "ALICE", Role::Viewer)
        .await
        .expect("member");
    c.set_member("lung", "alice", Role::Manager)
        .await
        .expect("replaced");
    c.set_member("brain", "alice", Role::Contributor)
        .await
        .expect("member");
    c.set_member("lung", "bob", Role::Viewer)
        .await
        .expect("member");
    assert!(matches!(
        c.set_member("nope", "alice", Role::Viewer).await,
        Err(CatalogError::NotFound(_))
    ));
    assert!(matches!(
        c.set_member("lung", "carol", Role::Viewer).await,
        Err(CatalogError::NotFound(_))
    ));
    let of_alice: Vec<(String, Role)> = c
        .list_members(None, Some("alice"))
        .await
        .expect("list")
        .into_iter()
        .map(|m| (m.project, m.role))
        .collect();
    assert_eq!(
        of_alice,
        [
            ("brain".to_string(), Role::Contributor),
            ("Lung".to_string(), Role::Manager)
        ]
    );
    let of_lung: Vec<String> = c
        .list_members(Some("LUNG"), None)
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.user)
        .collect();
    assert_eq!(of_lung, ["alice", "bob"]);
    assert!(c.remove_member("lung", "bob").await.expect("remove"));
    assert!(!c.remove_member("lung", "bob").await.expect("again"));
    assert_eq!(c.list_members(None, None).await.expect("all").len(), 2);
    assert!(Role::Viewer < Role::Contributor && Role::Contributor < Role::Manager);
    assert_eq!(Role::parse("manager"), Some(Role::Manager));
    assert_eq!(Role::parse("owner"), None);
}

async fn tokens(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    c.create_user("alice", None, false, false)
        .await
        .expect("user");
    let t = c
        .create_token(&NewToken {
            id: "t1".into(),
            user: "ALICE".into(),
            name: "ci".into(),
            token_hash: "hash-1".into(),
            role: Some(Role::Viewer),
            projects: Some(vec!["lung".into(), "brain".into()]),
            expires_at: Some("2030-01-01T00:00:00Z".into()),
        })
        .await
        .expect("token");
    assert_eq!(t.user, "alice");
    assert_eq!(t.role, Some(Role::Viewer));
    assert_eq!(
        t.projects.as_deref(),
        Some(&["lung".to_string(), "brain".to_string()][..])
    );
    assert!(t.revoked_at.is_none() && t.last_used_at.is_none());
    let all = c
        .create_token(&NewToken {
            id: "t2".into(),
            user: "alice".into(),
            name: "everything".into(),
            token_hash: "hash-2".into(),
            role: None,
            projects: None,
            expires_at: None,
        })
        .await
        .expect("token");
    assert_eq!((all.role, all.projects.clone()), (None, None));
    // A hash names one token.
    assert!(c
        .create_token(&NewToken {
            id: "t3".into(),
            token_hash: "hash-1".into(),
            ..NewToken {
                id: String::new(),
                user: "alice".into(),
                name: "dup".into(),
                token_hash: String::new(),
                role: None,
                projects: None,
                expires_at: None,
            }
        })
        .await
        .is_err());
    assert!(matches!(
        c.create_token(&NewToken {
            id: "t4".into(),
            user: "carol".into(),
            name: "x".into(),
            token_hash: "hash-4".into(),
            role: None,
            projects: None,
            expires_at: None,
        })
        .await,
        Err(CatalogError::NotFound(_))
    ));
    assert_eq!(
        c.token_by_hash("hash-1").await.expect("find").map(|t| t.id),
        Some("t1".into())
    );
    assert!(c.token_by_hash("hash-9").await.expect("find").is_none());
    c.touch_token("t1").await.expect("touch");
    assert!(c
        .get_token("t1")
        .await
        .unwrap()
        .unwrap()
        .last_used_at
        .is_some());
    assert!(c.revoke_token("t1").await.expect("revoke"));
    assert!(!c.revoke_token("t1").await.expect("revoked already"));
    let revoked = c.token_by_hash("hash-1").await.unwrap().unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(c.list_tokens(Some("alice")).await.expect("list").len(), 2);
    assert_eq!(c.list_tokens(None).await.expect("list").len(), 2);
}

both!(what_a_member_sees);

/// The catalog's answers that access control filters by: a series' projects, jobs of some
/// projects' series, an upload's owner.
async fn what_a_member_sees(url: &str) {
    use radport_catalog::{JobFilter, JobKind, NewJob, NewUpload};
    let c = Catalog::connect(url).await.expect("connect");
    c.create_project("Lung").await.expect("project");
    c.create_project("brain").await.expect("project");
    c.record_instance(
        &rec("1", "1.1", "1.1.1"),
        &route("lung", "d"),
        DuplicatePolicy::KeepFirst,
    )
    .await
    .expect("record");
    c.record_instance(
        &rec("1", "1.1", "1.1.2"),
        &route("brain", "d"),
        DuplicatePolicy::KeepFirst,
    )
    .await
    .expect("record");
    c.record_instance(
        &rec("2", "2.1", "2.1.1"),
        &route("brain", "d"),
        DuplicatePolicy::KeepFirst,
    )
    .await
    .expect("record");
    assert_eq!(
        c.projects_of_series("1.1").await.expect("projects"),
        ["admin", "brain", "Lung"]
    );
    assert_eq!(
        c.projects_of_series("2.1").await.expect("projects"),
        ["admin", "brain"]
    );
    assert!(c.projects_of_series("9.9").await.expect("none").is_empty());
    for series in ["1.1", "2.1"] {
        c.enqueue_job(&NewJob {
            kind: JobKind::Thumbnail,
            series_uid: Some(series.into()),
            payload: serde_json::json!({}),
            max_attempts: 1,
        })
        .await
        .expect("job");
    }
    let of = |projects: Option<Vec<String>>| {
        let c = c.clone();
        async move {
            let page = c
                .list_jobs(&JobFilter {
                    projects,
                    ..Default::default()
                })
                .await
                .expect("jobs");
            let mut series: Vec<String> = page
                .items
                .into_iter()
                .filter_map(|j| j.series_uid)
                .collect();
            series.sort();
            (page.total, series)
        }
    };
    assert_eq!(of(None).await, (2, vec!["1.1".into(), "2.1".into()]));
    assert_eq!(of(Some(vec!["LUNG".into()])).await, (1, vec!["1.1".into()]));
    assert_eq!(of(Some(vec![])).await, (0, vec![]));

    let later = "2999-01-01T00:00:00Z";
    c.create_upload(
        &NewUpload {
            id: "u1",
            path: "mine.zip",
            length: 10,
            metadata: "",
            expires_at: later,
            owner: Some("alice"),
        },
        1 << 40,
    )
    .await
    .expect("create")
    .expect("created");
    assert_eq!(
        c.get_upload("u1")
            .await
            .expect("get")
            .expect("row")
            .owner
            .as_deref(),
        Some("alice")
    );
}

both!(audit_trail);

async fn audit_trail(url: &str) {
    use radport_catalog::{AuditFilter, NewAuditEvent, Outcome};
    let c = Catalog::connect(url).await.expect("connect");
    let event = |actor: &str, action: &str, outcome: Outcome| NewAuditEvent {
        actor: actor.into(),
        address: "10.0.0.1".into(),
        action: action.into(),
        target: "1.2.3".into(),
        outcome,
        detail: "200".into(),
    };
    c.record_audit(&event("alice", "sign-in", Outcome::Success))
        .await
        .expect("record");
    c.record_audit(&event("alice", "read series", Outcome::Success))
        .await
        .expect("record");
    c.record_audit(&event("anonymous", "read series", Outcome::Refused))
        .await
        .expect("record");
    let all = c.list_audit(&AuditFilter::default()).await.expect("list");
    assert_eq!(all.total, 3);
    assert_eq!(all.items[0].actor, "anonymous", "newest first");
    let of_alice = c
        .list_audit(&AuditFilter {
            actor: Some("alice".into()),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(of_alice.total, 2);
    let reads = c
        .list_audit(&AuditFilter {
            action: Some("series".into()),
            outcome: Some(Outcome::Refused),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(
        (reads.total, reads.items[0].actor.as_str()),
        (1, "anonymous")
    );
    let page = c
        .list_audit(&AuditFilter {
            limit: Some(1),
            offset: Some(1),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!((page.total, page.items.len()), (3, 1));
    assert!(c
        .list_audit(&AuditFilter {
            limit: Some(5000),
            ..Default::default()
        })
        .await
        .is_err());
}

both!(dicom_rules);

async fn dicom_rules(url: &str) {
    use radport_catalog::DicomRules;
    let c = Catalog::connect(url).await.expect("connect");
    c.create_project("Lung").await.expect("project");
    assert_eq!(
        c.dicom_rules("lung").await.expect("rules"),
        DicomRules::default()
    );
    let rules = DicomRules {
        calling_ae_titles: vec!["CT-SCANNER".into(), "MR-1".into()],
        networks: vec!["10.0.0.0/8".into()],
    };
    c.set_dicom_rules("LUNG", &rules).await.expect("set");
    assert_eq!(c.dicom_rules("lung").await.expect("rules"), rules);
    c.set_dicom_rules("lung", &DicomRules::default())
        .await
        .expect("cleared");
    assert_eq!(
        c.dicom_rules("lung").await.expect("rules"),
        DicomRules::default()
    );
    assert!(matches!(
        c.set_dicom_rules("nope", &rules).await,
        Err(CatalogError::NotFound(_))
    ));
    // A project deleted and made again starts without the old one's rules and members.
    c.set_dicom_rules("lung", &rules).await.expect("set");
    c.create_user("ann", None, false, false)
        .await
        .expect("user");
    c.set_member("lung", "ann", Role::Manager)
        .await
        .expect("member");
    c.delete_project("lung").await.expect("delete");
    c.create_project("lung").await.expect("again");
    assert_eq!(
        c.dicom_rules("lung").await.expect("rules"),
        DicomRules::default()
    );
    assert!(c
        .list_members(Some("lung"), None)
        .await
        .expect("members")
        .is_empty());
}

/// Accounts of a single sign-on: made at the first sign-in without a password, given exactly the
/// provider's roles at every sign-in; never a local account or another subject's.
async fn single_sign_on_accounts(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    c.create_project("Lung").await.expect("project");
    let idp = OidcAccount {
        issuer: "https://idp.example".into(),
        subject: "s-1".into(),
    };
    let dana = c
        .sign_in_oidc_user(
            "Dana",
            &idp,
            false,
            &[
                ("lung".into(), Role::Viewer),
                ("not-made-yet".into(), Role::Manager),
            ],
        )
        .await
        .expect("first sign-in");
    assert_eq!(dana.oidc.as_ref(), Some(&idp));
    assert_eq!(
        (
            dana.password_hash.as_deref(),
            dana.is_admin,
            dana.must_change_password
        ),
        (None, false, false)
    );
    let roles = |c: &Catalog| {
        let c = c.clone();
        async move {
            c.list_members(None, Some("dana"))
                .await
                .expect("members")
                .into_iter()
                .map(|m| (m.project, m.role))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(roles(&c).await, [("Lung".to_string(), Role::Viewer)]);
    assert_eq!(c.get_user("DANA").await.expect("get"), Some(dana.clone()));

    // A role given in radport lasts until the next sign-in, which sets the provider's.
    c.set_member("lung", "dana", Role::Manager)
        .await
        .expect("set");
    let again = c
        .sign_in_oidc_user("dana", &idp, true, &[])
        .await
        .expect("second sign-in");
    assert_eq!((again.name.as_str(), again.is_admin), ("Dana", true));
    assert!(roles(&c).await.is_empty());

    // A local account is not taken over, nor another subject's, nor a subject under two names.
    c.create_user("local", Some("$argon2id$x"), false, false)
        .await
        .expect("local");
    for (name, account) in [
        ("LOCAL", idp.clone()),
        (
            "dana",
            OidcAccount {
                subject: "s-2".into(),
                ..idp.clone()
            },
        ),
        (
            "dana",
            OidcAccount {
                issuer: "https://other.example".into(),
                ..idp.clone()
            },
        ),
        ("dana-again", idp.clone()),
    ] {
        assert!(
            matches!(
                c.sign_in_oidc_user(name, &account, true, &[]).await,
                Err(CatalogError::Conflict(_))
            ),
            "{name} {account:?}"
        );
    }
    let local = c.get_user("local").await.expect("get").expect("exists");
    assert_eq!((local.is_admin, local.oidc), (false, None));
    assert!(c.get_user("dana-again").await.expect("get").is_none());
    c.close().await;
}
