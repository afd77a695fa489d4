//! The web console: static files embedded in the binary from `console/public` (the README's first
//! command needs no Node.js), served at `/` under a strict Content-Security-Policy.
//!
//! Paths are the console's own (`/w/{ws}/f/{flow}`, …), so every `GET` the API does not claim
//! answers `index.html` and the console routes in the browser — except the API's spaces
//! (`/api/…`, `/v1/…`, `/health`, `/ready`, `/metrics`), whose unknown paths keep their JSON 404.

use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};

static FILES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../console/public");

/// Scripts, styles and connections only from this origin; no inline script or style element, no
/// plugins, no framing, no `<base>`. Model output is rendered as text by the console, and this is
/// the second wall should a bug ever render it as HTML.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Whether `path` belongs to the API (and so never to the console).
pub fn is_api_path(path: &str) -> bool {
    ["/api/", "/v1/"].iter().any(|p| path.starts_with(p))
        || ["/api", "/v1", "/health", "/ready", "/metrics"].contains(&path)
}

/// The console's answer for `uri`, or `None` where the console has nothing to say (not a GET or
/// HEAD, or a path of the API's).
pub fn serve(method: &Method, uri: &Uri) -> Option<Response> {
    if !(method == Method::GET || method == Method::HEAD) || is_api_path(uri.path()) {
        return None;
    }
    let path = uri.path().trim_start_matches('/');
    // A file if there is one (`assets/app.js`), else the page, which routes in the browser.
    let (file, name) = match FILES.get_file(path) {
        Some(file) if !path.is_empty() => (file, path),
        _ => (FILES.get_file("index.html")?, "index.html"),
    };
    let mut response = (StatusCode::OK, file.contents()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Revalidate each time: a new binary may bring new files under the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(response)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Option<Response> {
        serve(&Method::GET, &path.parse().expect("uri"))
    }

    #[test]
    fn the_console_answers_its_paths_and_never_the_apis() {
        for api in [
            "/api/v1/nope",
            "/api",
            "/v1/models",
            "/health",
            "/ready",
            "/metrics",
        ] {
            assert!(get(api).is_none(), "{api}");
        }
        assert!(serve(&Method::POST, &"/".parse().expect("uri")).is_none());
        for page in ["/", "/w/abc/f/def", "/sign-in"] {
            let page = get(page).expect("page");
            assert_eq!(
                page.headers()[header::CONTENT_TYPE],
                "text/html; charset=utf-8"
            );
            assert!(
                page.headers()[header::CONTENT_SECURITY_POLICY]
                    .to_str()
                    .is_ok_and(|p| p.contains("script-src 'self';"))
            );
        }
        let script = get("/vendor/preact-htm.js").expect("script");
        assert_eq!(
            script.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        // `/health-check` is not `/health`: the console's.
        assert!(get("/health-check").is_some());
    }
}
