//! The dashboard's files (`dashboard/`): one HTML page, its script and its style sheet,
//! embedded in the binary. No library and nothing from another site: the page draws its
//! tables and charts itself from `/api/state`.

/// One embedded file.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct File {
    pub content_type: &'static str,
    pub body: &'static str,
}

const INDEX: File = File {
    content_type: "text/html; charset=utf-8",
    body: include_str!("dashboard/index.html"),
};
const SCRIPT: File = File {
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("dashboard/app.js"),
};
const STYLE: File = File {
    content_type: "text/css; charset=utf-8",
    body: include_str!("dashboard/style.css"),
};

/// The file served at `path`, if any.
pub(super) fn file(path: &str) -> Option<&'static File> {
    match path {
        "/" | "/index.html" => Some(&INDEX),
        "/app.js" => Some(&SCRIPT),
        "/style.css" => Some(&STYLE),
        _ => None,
    }
}
