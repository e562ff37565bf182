//! The admin listener: `/healthz` (the process runs), `/readyz` (config loaded,
//! not draining, the session store answers) and `/metrics` (Prometheus text).
//! It never shares a port with traffic: `/metrics` on a traffic port is just
//! another path of the site.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::stack::Active;

pub(crate) struct Admin {
    pub(crate) active: Arc<ArcSwap<Active>>,
    pub(crate) draining: Arc<AtomicBool>,
    pub(crate) metrics: PrometheusHandle,
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

impl Admin {
    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                if self.draining.load(Ordering::SeqCst) {
                    return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
                }
                let store = self.active.load().gateway.store().clone();
                match tokio::time::timeout(Duration::from_secs(2), store.ping()).await {
                    Ok(Ok(())) => text(StatusCode::OK, "ready\n"),
                    _ => text(StatusCode::SERVICE_UNAVAILABLE, "session store unavailable\n"),
                }
            }
            "/metrics" => {
                let store = self.active.load().gateway.store().clone();
                if let Ok(Some(n)) = tokio::time::timeout(Duration::from_secs(2), store.active()).await {
                    metrics::gauge!("ferrygate_sessions_active").set(n as f64);
                }
                metrics::gauge!("ferrygate_upstream_lanes_open").set(ferrygate_proxy::open_lanes() as f64);
                self.metrics.run_upkeep();
                let mut r = Response::new(Full::new(Bytes::from(self.metrics.render())));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// Serves until the process exits (it stays up while traffic drains).
    pub(crate) async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let admin = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, Infallible>(admin.answer(req).await) }
                });
                let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(Duration::from_secs(5));
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    }
}
