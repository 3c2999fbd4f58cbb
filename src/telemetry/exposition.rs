//! The metrics listener (`--metrics-listen`): plain HTTP/1.1, apart from
//! the gRPC port so that a scraper needs no gRPC and no API key.
//! `GET /metrics` answers the exposition; anything else is a 404 naming the
//! one path there is.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use super::metrics::CONTENT_TYPE;

/// Writes the exposition anew for each scrape.
pub type Render = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// Answers scrapes on `listener` until `stopped` completes.
pub async fn serve(listener: TcpListener, render: Render, stopped: impl Future<Output = ()>) {
    tokio::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stopped => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, most likely: pause rather than spin.
                warn!(%error, "the metrics listener cannot accept");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let render = render.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, render.clone()));
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%error, "a metrics connection ended with an error");
            }
        });
    }
}

async fn answer(
    request: http::Request<hyper::body::Incoming>,
    render: Render,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let response = if request.uri().path() != "/metrics" {
        plain(
            http::StatusCode::NOT_FOUND,
            "Paddock serves its metrics at /metrics\n".into(),
        )
    } else if request.method() != http::Method::GET && request.method() != http::Method::HEAD {
        plain(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "/metrics answers GET\n".into(),
        )
    } else {
        let mut response = http::Response::new(Full::new(Bytes::from(render().await)));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(CONTENT_TYPE),
        );
        response
    };
    Ok(response)
}

fn plain(status: http::StatusCode, text: String) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
