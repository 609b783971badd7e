//! Which answer a request asks for, from its method and path alone (sans-IO): a file of the
//! dashboard, the metrics, the mesh's JSON, or a refusal. Only `GET` and `HEAD` are served.

use hyper::Method;

use super::dashboard::{self, File};

/// What a request gets.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// A file of the dashboard.
    File(&'static File),
    /// `/metrics`.
    Metrics,
    /// `/api/state`.
    State,
    /// A known path with a method other than `GET` or `HEAD`: 405.
    NotAllowed,
    /// Nothing here: 404.
    NotFound,
}

/// The route of `method` on `path` (the query is not part of `path`).
pub(super) fn route(method: &Method, path: &str) -> Route {
    let found = match path {
        "/metrics" => Route::Metrics,
        "/api/state" => Route::State,
        path => match dashboard::file(path) {
            Some(file) => Route::File(file),
            None => return Route::NotFound,
        },
    };
    if method == Method::GET || method == Method::HEAD {
        found
    } else {
        Route::NotAllowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_and_head_of_known_paths_are_served() {
        assert_eq!(route(&Method::GET, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::HEAD, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::GET, "/api/state"), Route::State);
        assert!(matches!(route(&Method::GET, "/"), Route::File(f) if f.body.contains("<html")));
        assert!(matches!(route(&Method::GET, "/app.js"), Route::File(_)));
        assert_eq!(route(&Method::POST, "/metrics"), Route::NotAllowed);
        assert_eq!(route(&Method::DELETE, "/"), Route::NotAllowed);
        assert_eq!(route(&Method::GET, "/nope"), Route::NotFound);
        assert_eq!(route(&Method::POST, "/nope"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/metrics/"), Route::NotFound);
    }
}
