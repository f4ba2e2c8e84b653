//! The web UI: static files (vanilla ES modules, no build step) embedded in the binary.
//!
//! `/` serves the single page (`ui/index.html`); the scripts and styles are under `/ui/`. Pages
//! are hash routes (`/#/gallery?project=admin`), so the server needs no fallback and every
//! unknown `/api/*` path keeps its JSON 404. The UI only ever inserts API values as text; the
//! Content-Security-Policy below (scripts from this origin only, no inline script) is a second
//! line of defence against a DICOM value that would try to become markup.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Every embedded file: name under `/ui/`, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", CSS, include_str!("../ui/app.css")),
    ("app.js", JS, include_str!("../ui/app.js")),
    ("api.js", JS, include_str!("../ui/api.js")),
    ("dom.js", JS, include_str!("../ui/dom.js")),
    ("router.js", JS, include_str!("../ui/router.js")),
    ("tus.js", JS, include_str!("../ui/tus.js")),
    ("zip.js", JS, include_str!("../ui/zip.js")),
    ("dicom.js", JS, include_str!("../ui/dicom.js")),
    (
        "pages/gallery.js",
        JS,
        include_str!("../ui/pages/gallery.js"),
    ),
    ("pages/series.js", JS, include_str!("../ui/pages/series.js")),
    (
        "pages/projects.js",
        JS,
        include_str!("../ui/pages/projects.js"),
    ),
    ("pages/upload.js", JS, include_str!("../ui/pages/upload.js")),
    ("pages/runs.js", JS, include_str!("../ui/pages/runs.js")),
    ("pages/files.js", JS, include_str!("../ui/pages/files.js")),
    ("pages/login.js", JS, include_str!("../ui/pages/login.js")),
    (
        "pages/password.js",
        JS,
        include_str!("../ui/pages/password.js"),
    ),
    ("pages/users.js", JS, include_str!("../ui/pages/users.js")),
    (
        "pages/project.js",
        JS,
        include_str!("../ui/pages/project.js"),
    ),
    ("pages/tokens.js", JS, include_str!("../ui/pages/tokens.js")),
    ("pages/audit.js", JS, include_str!("../ui/pages/audit.js")),
    ("session.js", JS, include_str!("../ui/session.js")),
    ("favicon.svg", SVG, include_str!("../ui/favicon.svg")),
];

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

const INDEX: &str = include_str!("../ui/index.html");

/// Scripts and styles from this origin only; thumbnails are same-origin PNGs.
const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
                   form-action 'self'";

/// Routes of the UI, to merge into the API router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/ui/{*file}", get(asset))
}

/// ETags of `INDEX` (first) and of every asset (in the order of `ASSETS`): the files change only
/// with the binary, so the browser revalidates (`no-cache`) and gets 304s without a body.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        std::iter::once(INDEX)
            .chain(ASSETS.iter().map(|(_, _, body)| *body))
            .map(|body| format!("\"{:016x}\"", crate::fnv1a(body.as_bytes())))
            .collect()
    })
}

/// The file, or a 304 when the browser already holds this version.
fn cached(
    headers: &HeaderMap,
    etag: &str,
    content_type: &'static str,
    body: &'static str,
) -> Response {
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let common = [
        (header::CACHE_CONTROL, "no-cache".to_string()),
        (header::ETAG, etag.to_string()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (common, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn index(headers: HeaderMap) -> Response {
    let mut response = cached(&headers, &etags()[0], "text/html; charset=utf-8", INDEX);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP),
    );
    response
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|(name, _, _)| *name == file) {
        Some(i) => {
            let (_, content_type, body) = ASSETS[i];
            cached(&headers, &etags()[i + 1], content_type, body)
        }
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such file in the web UI",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_the_browser_holds_is_not_sent_again() {
        let etag = &etags()[1];
        let first = cached(&HeaderMap::new(), etag, JS, ASSETS[0].2);
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()[header::ETAG], etag.as_str());
        assert_eq!(first.headers()[header::CACHE_CONTROL], "no-cache");
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag.parse().unwrap());
        let again = cached(&headers, etag, JS, ASSETS[0].2);
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        // Every file has its own tag.
        let mut tags = etags().to_vec();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), ASSETS.len() + 1);
    }

    #[test]
    fn every_module_is_preloaded() {
        for (name, content_type, _) in ASSETS {
            if *content_type == JS && *name != "app.js" {
                let link = format!("<link rel=\"modulepreload\" href=\"/ui/{name}\">");
                assert!(INDEX.contains(&link), "index.html lacks {link}");
            }
        }
    }

    #[test]
    fn every_module_the_pages_import_is_embedded() {
        // An import of a file missing from ASSETS would only fail in the browser.
        let sources = ASSETS
            .iter()
            .map(|(_, _, body)| *body)
            .chain([INDEX])
            .collect::<Vec<_>>();
        for source in sources {
            for line in source.lines() {
                let Some(start) = line.find("from './").or_else(|| line.find("from '../")) else {
                    continue;
                };
                let rest = &line[start + 6..];
                let spec = &rest[..rest.find('\'').expect("closing quote")];
                let name = spec.trim_start_matches("./").trim_start_matches("../");
                assert!(
                    ASSETS.iter().any(|(n, _, _)| n.ends_with(name)),
                    "{spec} is imported but not embedded"
                );
            }
        }
    }
}
