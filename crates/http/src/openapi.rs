//! The OpenAPI 3.1 document of the API, kept by hand in `openapi.json` beside this file.
//!
//! Why by hand: the response types live in `radport-catalog`, which should not depend on an
//! HTTP documentation crate; a test checks that every route the router serves is documented.

/// The OpenAPI document.
pub fn document() -> serde_json::Value {
    serde_json::from_str(include_str!("openapi.json")).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("the embedded OpenAPI document is invalid: {e}") })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_parses_and_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(include_str!("openapi.json")).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let source = include_str!("lib.rs");
        let mut documented = 0;
        for piece in source.split(".route(").skip(1) {
            let path = piece.split('"').nth(1).unwrap();
            assert!(paths.contains_key(path), "route {path} is not documented");
            documented += 1;
        }
        assert!(documented >= 8, "the router's routes were found in lib.rs");
    }
}
