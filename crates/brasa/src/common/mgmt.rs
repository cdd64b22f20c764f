//! The management API server side: an axum router over HTTP or HTTPS, every request passed
//! through the access guard, errors as `application/problem+json`, and the Prometheus
//! `/metrics` route.

use crate::common::access::{
    constant_time_eq, Access, ApiConfig, Principal, Refusal, CSRF_FIELD, CSRF_HEADER,
    SESSION_COOKIE,
};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An API error answered as RFC 9457 problem+json with a precise `detail`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
}

impl ApiError {
    /// 400: the request is malformed or a value is invalid.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            detail: detail.into(),
        }
    }

    /// 404: the named object does not exist.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            detail: detail.into(),
        }
    }

    /// 403: the principal may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            detail: detail.into(),
        }
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::CONFLICT,
            detail: detail.into(),
        }
    }

    /// 500: the daemon failed to do something it should have been able to do.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            detail: detail.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// A Prometheus text exposition response.
pub fn metrics_response(text: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The largest form a console page posts; the guard reads it whole to find the CSRF field.
pub const FORM_LIMIT: usize = 64 * 1024;

/// How long a client may take to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `config.listen` and serves `router` behind the access guard until the process ends,
/// over HTTPS when `config.tls` is set. Returns the bound address (useful when the port is 0)
/// once the socket is listening.
pub async fn serve(
    config: &ApiConfig,
    access: Arc<Access>,
    router: Router,
) -> anyhow::Result<SocketAddr> {
    Ok(bind(config).await?.serve(access, router))
}

/// A bound management API socket that does not serve yet. A daemon whose peers query its API
/// as soon as they hear from it binds first: connections queue until [`Listener::serve`].
pub struct Listener {
    listener: tokio::net::TcpListener,
    bound: SocketAddr,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

/// Binds `config.listen`.
pub async fn bind(config: &ApiConfig) -> anyhow::Result<Listener> {
    let addr = config.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|err| anyhow::anyhow!("management API: cannot bind {addr}: {err}"))?;
    Ok(Listener {
        bound: listener.local_addr()?,
        listener,
        tls: config.tls.clone(),
    })
}

impl Listener {
    /// Serves `router` behind the access guard until the process ends; returns the address.
    pub fn serve(self, access: Arc<Access>, router: Router) -> SocketAddr {
        let Listener {
            listener,
            bound,
            tls,
        } = self;
        let app = router.layer(axum::middleware::from_fn_with_state(access, guard));
        let scheme = if tls.is_some() { "https" } else { "http" };
        match tls {
            None => {
                tokio::spawn(async move {
                    let service = app.into_make_service_with_connect_info::<SocketAddr>();
                    if let Err(err) = axum::serve(listener, service).await {
                        tracing::error!(%err, "management API stopped");
                    }
                });
            }
            Some(tls) => {
                tokio::spawn(serve_tls(
                    listener,
                    tokio_rustls::TlsAcceptor::from(tls),
                    app,
                ));
            }
        }
        tracing::info!(addr = %bound, scheme, "management API listening");
        bound
    }
}

async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower::ServiceExt;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors or similar: go on with the next connection.
                tracing::warn!(%err, "management API: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, %err, "management API: TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let service =
                hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    app.clone().oneshot(request.map(Body::new))
                });
            let served = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
            if let Err(err) = served {
                tracing::debug!(%peer, %err, "management API: connection ended");
            }
        });
    }
}

/// Paths anyone may reach: the login page and the console's static files.
fn public(path: &str) -> bool {
    path == "/ui/login" || path.starts_with("/ui/assets/")
}

fn console(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// Who sent `headers`: a bearer token, else a session cookie, else (access control off) the
/// open principal.
pub fn authenticate(access: &Access, headers: &HeaderMap) -> Option<Principal> {
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return access.by_token(token.trim());
    }
    if let Some(id) = cookie(headers, SESSION_COOKIE) {
        if let Some(principal) = access.by_session(Instant::now(), id) {
            return Some(principal);
        }
    }
    access.open_principal()
}

/// The value of cookie `name` in the request's Cookie headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Whether a browser says this request comes from another site (`Sec-Fetch-Site`, or an
/// `Origin` that is not this host). Non-browser clients send neither header.
fn cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|site| site != "same-origin" && site != "none") {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => false,
        Some(origin) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            Some(origin_host) != host
        }
    }
}

fn refuse(access: &Access, why: Refusal, detail: String) -> Response {
    access.refused(why);
    tracing::warn!(?why, %detail, "management API: request refused");
    ApiError::forbidden(detail).into_response()
}

/// The access guard in front of every route: authenticates the request, refuses changes by
/// read-only principals (403), changes from browsers without the session's CSRF token (403)
/// and anything unauthenticated (401 for the API, a redirect to the login page for the
/// console); the handlers get the [`Principal`] as a request extension.
async fn guard(
    State(access): State<Arc<Access>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if public(&path) {
        return next.run(request).await;
    }
    let Some(principal) = authenticate(&access, request.headers()) else {
        access.refused(Refusal::Unauthenticated);
        tracing::debug!(%peer, %path, "management API: unauthenticated request");
        if console(&path) && request.method() == Method::GET {
            let target = format!(
                "/ui/login?next={}",
                crate::common::api::encode_component(&path)
            );
            return (StatusCode::SEE_OTHER, [(header::LOCATION, target)]).into_response();
        }
        let mut response = ApiError {
            status: StatusCode::UNAUTHORIZED,
            detail: "authentication required: a session (log in at /ui/login) or an \
                     `Authorization: Bearer` token"
                .into(),
        }
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"brasa\""),
        );
        return response;
    };
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let mut request = request;
    if !safe {
        if !principal.can_change() {
            let who = principal.name.as_deref().unwrap_or("-");
            return refuse(
                &access,
                Refusal::ReadOnly,
                format!("{who:?} is read-only and may not change anything"),
            );
        }
        if let Some(expected) = &principal.csrf {
            let open_api = principal.session.is_none() && !console(&path);
            if open_api {
                // Access control off, API route: the CLI sends no token; a browser that
                // another site drives is told apart by its headers.
                if cross_site(request.headers()) {
                    return refuse(
                        &access,
                        Refusal::Csrf,
                        "a change from another web site is refused".into(),
                    );
                }
            } else {
                let (checked, given) = match csrf_token(request).await {
                    Ok(found) => found,
                    Err(response) => return response,
                };
                request = checked;
                if !given
                    .is_some_and(|given| constant_time_eq(given.as_bytes(), expected.as_bytes()))
                {
                    return refuse(
                        &access,
                        Refusal::Csrf,
                        "missing or wrong CSRF token: reload the page and try again".into(),
                    );
                }
            }
        }
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// The CSRF token of a request: the header, or the field of a URL-encoded form (whose body
/// is read, up to [`FORM_LIMIT`], and put back).
async fn csrf_token(request: Request) -> Result<(Request, Option<String>), Response> {
    if let Some(token) = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        let token = token.to_owned();
        return Ok((request, Some(token)));
    }
    let form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Ok((request, None));
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            detail: format!("a form may hold at most {FORM_LIMIT} bytes"),
        }
        .into_response()
    })?;
    let token = form_urlencoded::parse(&bytes)
        .find(|(key, _)| key == CSRF_FIELD)
        .map(|(_, value)| value.into_owned());
    Ok((Request::from_parts(parts, Body::from(bytes)), token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::access::AccessConfig;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn cookies_are_found_by_exact_name_in_any_cookie_header() {
        let h = headers(&[
            ("cookie", "theme=dark; brasa_session_x=1"),
            ("cookie", " brasa_session=abc ;other=2"),
        ]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(
            cookie(&headers(&[("cookie", "=;;brasa_session")]), SESSION_COOKIE),
            None
        );
        assert_eq!(cookie(&HeaderMap::new(), SESSION_COOKIE), None);
    }

    #[test]
    fn browsers_driven_by_other_sites_are_told_apart() {
        assert!(
            !cross_site(&HeaderMap::new()),
            "the CLI sends neither header"
        );
        assert!(!cross_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!cross_site(&headers(&[("sec-fetch-site", "none")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_site(&headers(&[
            ("host", "127.0.0.1:7780"),
            ("origin", "http://127.0.0.1:7780")
        ])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:7780"),
            ("origin", "http://127.0.0.1:7781")
        ])));
        assert!(cross_site(&headers(&[("origin", "null")])));
    }

    #[test]
    fn a_bearer_token_decides_even_beside_a_cookie() {
        let access = Access::new(AccessConfig::open());
        // Access control off: anyone is the open principal, but a token header that names no
        // token is refused rather than ignored.
        assert!(authenticate(&access, &HeaderMap::new()).is_some());
        assert!(authenticate(&access, &headers(&[("authorization", "Bearer nope")])).is_none());
        assert!(authenticate(&access, &headers(&[("cookie", "brasa_session=forged")])).is_some());
    }
}
