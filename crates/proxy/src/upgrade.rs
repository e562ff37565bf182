//! WebSocket, the only upgrade passed through: recognised on the request,
//! and spliced only when the site's 101 carries the `Sec-WebSocket-Accept`
//! that answers the client's key — any other 101 would turn the client
//! connection into a raw tunnel past the gateway.

use ferrygate_core::hop::connection_tokens;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Method;
use hyper_util::rt::TokioIo;

/// A WebSocket handshake: the only upgrade passed through.
pub(crate) fn is_websocket(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
        && headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

pub(crate) const SEC_WEBSOCKET_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");

/// The `Sec-WebSocket-Accept` that answers the request's `Sec-WebSocket-Key`
/// (RFC 6455 §4.2.2): base64 of SHA-1 of the key and the protocol's GUID.
pub(crate) fn websocket_accept(headers: &HeaderMap) -> Option<HeaderValue> {
    use base64::Engine;
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let key = headers.get("sec-websocket-key")?.as_bytes().trim_ascii();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(GUID);
    HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(ctx.finish())).ok()
}

pub(crate) async fn splice(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    match tokio::try_join!(client, upstream) {
        Ok((client, upstream)) => {
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(error = %e, "upgraded connection ended");
            }
        }
        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
    }
}
