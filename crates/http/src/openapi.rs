//! The OpenAPI 3.1 document: derived with `utoipa` from the handlers' `#[utoipa::path]`
//! annotations and the types of [`crate::responses`] and [`crate::requests`], collected by the
//! router itself (`utoipa_axum`), so that a route cannot be served undocumented and a schema
//! cannot differ from what is serialized.

use utoipa::openapi::OpenApi as Document;
use utoipa::OpenApi;

/// The document's fixed parts; the paths and schemas come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "radport API",
        description = "Medical imaging intake: projects, datasets, series and instances \
                       received over DICOM DIMSE or imported from uploads.",
    ),
    tags(
        (name = "server", description = "Health and this deployment"),
        (name = "access", description = "Sessions, tokens, accounts and project members"),
        (name = "projects", description = "Projects and their datasets"),
        (name = "series", description = "Series, their instances, thumbnails, validation"),
        (name = "jobs", description = "The job queue (thumbnails, validations, runs)"),
        (name = "uploads", description = "Resumable uploads (tus 1.0) and uploaded files"),
        (name = "workflows", description = "Workflows that import uploaded files, and their runs"),
    ),
    components(schemas(crate::responses::ErrorBody))
)]
pub(crate) struct ApiDoc;

/// The document as served: the refusals of the guard added to every operation it guards (so
/// the annotations need not repeat them), and axum's wildcard `{*path}` written as OpenAPI's
/// `{path}`.
pub(crate) fn finish(mut document: Document) -> Document {
    use crate::guard::{rule, Rule};
    use utoipa::openapi::{ContentBuilder, ResponseBuilder};
    let error = || {
        ContentBuilder::new()
            .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
            .build()
    };
    for (path, item) in document.paths.paths.iter_mut() {
        let operations = [
            ("GET", &mut item.get),
            ("POST", &mut item.post),
            ("PUT", &mut item.put),
            ("PATCH", &mut item.patch),
            ("DELETE", &mut item.delete),
            ("HEAD", &mut item.head),
            ("OPTIONS", &mut item.options),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation.as_mut() else {
                continue;
            };
            let method: axum::http::Method = method.parse().unwrap_or_default();
            let refusals: &[(&str, &str)] = match rule(&method, path) {
                None | Some(Rule::Public) => &[],
                Some(Rule::SignedIn) => &[("401", "Not signed in (access enforced)")],
                Some(_) => &[
                    ("401", "Not signed in (access enforced)"),
                    ("403", "The caller's roles do not allow this"),
                ],
            };
            for (status, description) in refusals {
                let responses = &mut operation.responses.responses;
                if !responses.contains_key(*status) {
                    let mut response = ResponseBuilder::new().description(*description);
                    if method != axum::http::Method::HEAD {
                        response = response.content("application/json", error());
                    }
                    responses.insert(status.to_string(), response.build().into());
                }
            }
        }
    }
    let paths = std::mem::take(&mut document.paths.paths);
    document.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (path.replace("{*", "{"), item))
        .collect();
    document
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_names_every_path_in_openapi_syntax() {
        let doc = serde_json::to_value(crate::openapi_document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        assert!(
            paths.contains_key("/api/files/{path}"),
            "{:?}",
            paths.keys()
        );
        for (path, item) in paths {
            assert!(!path.contains('*'), "{path}");
            for (method, op) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                assert!(
                    op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                    "{method} {path} has no tag"
                );
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path}"
                );
                // Every `{name}` of the path is a documented path parameter.
                for name in path.split('{').skip(1).filter_map(|p| p.split('}').next()) {
                    let documented = op["parameters"].as_array().is_some_and(|ps| {
                        ps.iter().any(|p| p["name"] == name && p["in"] == "path")
                    });
                    assert!(
                        documented,
                        "{method} {path}: path parameter {name} is not documented"
                    );
                }
            }
        }
    }
}
