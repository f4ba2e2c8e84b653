//! C-MOVE destinations of a project.

use radport_catalog::MoveDestination;

use super::*;

both!(destinations);

fn destination(ae: &str, host: &str, port: u16) -> MoveDestination {
    MoveDestination {
        ae_title: ae.into(),
        host: host.into(),
        port,
        description: String::new(),
    }
}

async fn destinations(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    c.create_project("lung").await.expect("project");
    c.create_project("heart").await.expect("project");
    assert!(c.move_destinations("lung").await.expect("list").is_empty());
    let stored = c
        .put_move_destination("lung", destination(" WORKSTATION ", "10.0.0.5", 104))
        .await
        .expect("put");
    assert_eq!(stored.ae_title, "WORKSTATION");
    // Replacing keeps one row.
    c.put_move_destination("lung", destination("WORKSTATION", "ws.example", 11112))
        .await
        .expect("replace");
    let listed = c.move_destinations("lung").await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].host.as_str(), listed[0].port),
        ("ws.example", 11112)
    );
    // Per project: another project does not see it.
    assert_eq!(
        c.move_destination("heart", "WORKSTATION")
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        c.move_destination("lung", "WORKSTATION  ")
            .await
            .expect("get")
            .map(|d| d.port),
        Some(11112)
    );
    // Refused: port 0, empty host, bad AE titles, unknown project.
    for bad in [
        destination("A", "h", 0),
        destination("A", " ", 104),
        destination("", "h", 104),
        destination("SEVENTEEN-CHARS-X", "h", 104),
        destination("A\\B", "h", 104),
    ] {
        assert!(matches!(
            c.put_move_destination("lung", bad).await,
            Err(CatalogError::Invalid(_))
        ));
    }
    assert!(matches!(
        c.put_move_destination("nope", destination("A", "h", 1))
            .await,
        Err(CatalogError::NotFound(_))
    ));
    c.delete_move_destination("lung", "WORKSTATION")
        .await
        .expect("delete");
    assert!(matches!(
        c.delete_move_destination("lung", "WORKSTATION").await,
        Err(CatalogError::NotFound(_))
    ));
    // A project deleted and created again starts without destinations.
    c.put_move_destination("heart", destination("PACS", "h", 104))
        .await
        .expect("put");
    c.delete_project("heart").await.expect("delete project");
    c.create_project("heart").await.expect("project");
    assert!(c.move_destinations("heart").await.expect("list").is_empty());
}
