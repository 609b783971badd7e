//! The HTTP listener (`circuitd --http ADDR`): this daemon's metrics in the Prometheus text
//! format at `/metrics`, and a read-only web dashboard of the whole mesh at `/` (its JSON at
//! `/api/state`). One accept loop, one task per connection (HTTP/1.1 through `hyper`), all
//! within the daemon's shutdown. Nothing here changes anything: there are no write actions.
//!
//! - `routes`: which answer a method and path ask for (sans-IO).
//! - `metrics`: this daemon's metrics, gathered at each scrape and encoded.
//! - `state`: the mesh as the dashboard's JSON.
//! - `dashboard`: the page's files, embedded in the binary.

mod dashboard;
mod metrics;
mod routes;
mod state;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::api::Context;
use routes::Route;

/// Most HTTP connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request under way may go on once the daemon is stopping.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Serves the HTTP listener until shutdown.
pub(crate) async fn serve(listener: TcpListener, ctx: Arc<Context>) {
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(place) = places.clone().try_acquire_owned() else {
                        tracing::debug!(%peer, "http connection refused: at the connection limit");
                        continue;
                    };
                    let ctx2 = ctx.clone();
                    ctx.tracker.spawn(async move {
                        connection(stream, ctx2).await;
                        drop(place);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed on the http listener");
                    // Out of file descriptors and similar: pause instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = ctx.shutdown.cancelled() => return,
        }
    }
}

/// One connection: its requests answered one after the other, until the client closes it or
/// the daemon stops (the request under way gets [`SHUTDOWN_GRACE`] to finish).
async fn connection(stream: tokio::net::TcpStream, ctx: Arc<Context>) {
    let service = service_fn(|request: Request<Incoming>| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(answer(&request, &ctx).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        done = conn.as_mut() => {
            if let Err(e) = done {
                tracing::debug!(error = %e, "http connection ended");
            }
        }
        () = ctx.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        }
    }
}

/// The answer to one request.
async fn answer(request: &Request<Incoming>, ctx: &Context) -> Response<Full<Bytes>> {
    match routes::route(request.method(), request.uri().path()) {
        Route::File(file) => respond(
            StatusCode::OK,
            file.content_type,
            Bytes::from_static(file.body.as_bytes()),
        ),
        Route::Metrics => respond(
            StatusCode::OK,
            metrics::CONTENT_TYPE,
            metrics::render(ctx).await.into(),
        ),
        Route::State => match state::render(ctx).await {
            Ok(json) => respond(StatusCode::OK, state::CONTENT_TYPE, json.into()),
            Err(e) => {
                let body = serde_json::json!({ "error": e.to_string() }).to_string();
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    state::CONTENT_TYPE,
                    body.into(),
                )
            }
        },
        Route::NotAllowed => {
            let method = request.method();
            let mut response = respond(
                StatusCode::METHOD_NOT_ALLOWED,
                TEXT,
                format!("{method} is not allowed here: this listener only reads (GET, HEAD)\n")
                    .into(),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
        Route::NotFound => respond(
            StatusCode::NOT_FOUND,
            TEXT,
            format!(
                "no page at {}: see / (the dashboard), /metrics or /api/state\n",
                request.uri().path()
            )
            .into(),
        ),
    }
}

/// Plain text, for errors.
const TEXT: &str = "text/plain; charset=utf-8";

/// A response with `body`, never cached; the page may load only its own files.
fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}
