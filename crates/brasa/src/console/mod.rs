//! The operator console: server-rendered HTML pages under `/ui/`, served by each daemon's
//! management API listener behind the same access guard as the JSON routes.
//!
//! Pages are [maud] templates (HTML written in Rust, checked when the binary compiles, every
//! interpolated value escaped). They read the daemon's state through the same handlers as the
//! JSON API, work without JavaScript, and are enhanced by two vendored files: htmx (forms and
//! links without full reloads, live tables refreshed every few seconds) and uPlot (sparklines
//! of the rates [`series::Series`] samples). This module holds what every page shares: the
//! layout and navigation, the login and logout pages, forms with their CSRF field, the static
//! files and the security headers. Each page is a module of its own with a `routes()` and a
//! `nav()` entry; a daemon lists the pages of the components it runs.

pub mod curling;
pub mod dataplane;
pub mod overview;
pub mod python;
pub mod radius;
pub mod rae;
pub mod series;
pub mod subscribers;

use crate::common::access::{Access, LoginError, Principal, CSRF_FIELD, SESSION_COOKIE};
use crate::common::api::encode_component;
use axum::extract::{ConnectInfo, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// One entry of the navigation bar.
#[derive(Clone, Copy, Debug)]
pub struct NavItem {
    /// Where it leads (under `/ui/`).
    pub href: &'static str,
    /// Its label.
    pub title: &'static str,
}

/// What every page of one daemon's console shares.
pub struct Shell {
    /// The daemon, as the header names it (`brasa run`, `brasa rae` …).
    pub daemon: &'static str,
    /// The pages of the components this daemon runs, in navigation order.
    pub nav: Vec<NavItem>,
    /// The listener's access state (login, logout).
    pub access: Arc<Access>,
    /// Sampled rates for the sparklines.
    pub series: Arc<series::Series>,
    /// When the daemon started (uptime).
    pub started: Instant,
    /// Whether the listener speaks HTTPS (the session cookie is then `Secure`).
    pub tls: bool,
}

/// What a page handler gets: the shell and the authenticated principal.
pub struct Ctx {
    /// The daemon's console.
    pub shell: Arc<Shell>,
    /// Who asks.
    pub principal: Principal,
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Both are inserted for every `/ui/` route: the shell by `router`, the principal by
        // the access guard. A route outside both is a wiring error.
        let shell = parts.extensions.get::<Arc<Shell>>().cloned();
        let principal = parts.extensions.get::<Principal>().cloned();
        match (shell, principal) {
            (Some(shell), Some(principal)) => Ok(Ctx { shell, principal }),
            _ => Err(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

/// A message carried to the next page after a change (`?msg=` or `?err=`).
#[derive(Debug, Default, Deserialize)]
pub struct Flash {
    /// What was done.
    pub msg: Option<String>,
    /// What went wrong.
    pub err: Option<String>,
}

/// The console's routes for one daemon: its `pages` (with their state) and what every console
/// has. The result is merged into the daemon's API router, behind the same access guard.
pub fn router<S: Clone + Send + Sync + 'static>(
    shell: Arc<Shell>,
    pages: Router<S>,
    state: S,
) -> Router {
    let index = shell.nav.first().map_or("/ui/login", |item| item.href);
    Router::new()
        .route("/ui", get(move || async move { Redirect::to(index) }))
        .route("/ui/", get(move || async move { Redirect::to(index) }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/series.json", get(series_json))
        .route("/ui/assets/{name}", get(asset))
        .merge(pages.with_state(state))
        .layer(Extension(shell))
        .layer(axum::middleware::map_response(security_headers))
}

/// The whole page around `content`.
pub fn layout(ctx: &Ctx, active: &str, title: &str, flash: &Flash, content: Markup) -> Markup {
    page(
        &ctx.shell,
        title,
        html! {
            header {
                a.brand href="/ui/" { "brasa" }
                span.daemon { (ctx.shell.daemon) }
                nav {
                    @for item in &ctx.shell.nav {
                        a href=(item.href) class=[(item.href == active).then_some("active")] { (item.title) }
                    }
                }
                div.who {
                    @if let Some(name) = &ctx.principal.name {
                        span { (name) " (" (ctx.principal.role.as_str()) ")" }
                        form method="post" action="/ui/logout" {
                            (csrf_field(&ctx.principal))
                            button.link type="submit" { "Log out" }
                        }
                    } @else {
                        span title="No users are configured: the API listens on loopback only" { "loopback, no login" }
                    }
                }
            }
            main {
                h1 { (title) }
                @if let Some(msg) = &flash.msg { p.flash.ok role="status" { (msg) } }
                @if let Some(err) = &flash.err { p.flash.error role="alert" { (err) } }
                (content)
            }
        },
    )
}

fn page(shell: &Shell, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // No eval, no inline styles or scripts: the CSP forbids them.
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
                title { (title) " · " (shell.daemon) " · brasa" }
                link rel="icon" href="/ui/assets/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/ui/assets/console.css";
                link rel="stylesheet" href="/ui/assets/uPlot.min.css";
                script src="/ui/assets/htmx.min.js" defer {}
                script src="/ui/assets/uPlot.min.js" defer {}
                script src="/ui/assets/console.js" defer {}
            }
            body hx-boost="true" { (body) }
        }
    }
}

/// The hidden CSRF field every form that changes something carries.
pub fn csrf_field(principal: &Principal) -> Markup {
    html! {
        @if let Some(token) = &principal.csrf {
            input type="hidden" name=(CSRF_FIELD) value=(token);
        }
    }
}

/// A one-button form that POSTs `fields` to `action`; nothing for a principal that may not
/// change anything (read-only users do not see the buttons at all).
pub fn action_button(
    principal: &Principal,
    action: &str,
    label: &str,
    fields: &[(&str, &str)],
) -> Markup {
    html! {
        @if principal.can_change() {
            form.inline method="post" action=(action) {
                (csrf_field(principal))
                @for (name, value) in fields {
                    input type="hidden" name=(name) value=(value);
                }
                button type="submit" { (label) }
            }
        }
    }
}

/// A region that htmx re-fetches every few seconds (the page itself, of which it keeps only
/// this region): counters move without a reload, and without JavaScript the page is simply
/// static.
pub fn live(uri: &str, content: Markup) -> Markup {
    html! {
        // hx-disinherit: links and forms inside are boosted like any other, not refreshes.
        div #live hx-get=(uri) hx-trigger="every 2s" hx-select="#live" hx-swap="outerHTML" hx-push-url="false" hx-disinherit="*" {
            (content)
        }
    }
}

/// A sparkline of one sampled series (drawn by `console.js`; the figure is there without it).
pub fn sparkline(shell: &Shell, index: usize) -> Markup {
    let (name, latest) = shell.series.latest(index);
    html! {
        figure.spark data-series=(index) {
            figcaption { (name) }
            span.now { (format_rate(latest)) }
        }
    }
}

/// Where a change goes back to, with its outcome as a flash message.
pub fn back(to: &str, outcome: Result<String, String>) -> Response {
    let separator = if to.contains('?') { '&' } else { '?' };
    let (key, text) = match outcome {
        Ok(msg) => ("msg", msg),
        Err(err) => ("err", err),
    };
    Redirect::to(&format!("{to}{separator}{key}={}", encode_component(&text))).into_response()
}

/// A count with thin-space thousands separators, as the tables print it.
pub fn count(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push('\u{2009}');
        }
        out.push(digit);
    }
    out
}

/// `1 entry`, `2 entries`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A rate per second with a precision that suits its size.
pub fn format_rate(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}/s")
    } else {
        format!("{value:.1}/s")
    }
}

/// A duration as days, hours, minutes and seconds (`3d 04:05:06`).
pub fn format_uptime(seconds: u64) -> String {
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    format!(
        "{days}d {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Renders a JSON array of objects as a table whose columns are the first row's keys; nested
/// values are shown as compact JSON. The views of the JSON API are shown as they are.
pub fn json_table(rows: &serde_json::Value, empty: &str) -> Markup {
    let rows = rows.as_array().map(Vec::as_slice).unwrap_or_default();
    let columns: Vec<&String> = rows
        .first()
        .and_then(|row| row.as_object())
        .map(|object| object.keys().collect())
        .unwrap_or_default();
    html! {
        @if rows.is_empty() {
            p.empty { (empty) }
        } @else {
            table {
                thead { tr { @for column in &columns { th { (column.replace('_', " ")) } } } }
                tbody {
                    @for row in rows {
                        tr {
                            @for column in &columns {
                                @let value = row.get(column.as_str()).unwrap_or(&serde_json::Value::Null);
                                td class=[value.is_number().then_some("num")] { (json_cell(value)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One JSON value as table text.
pub fn json_cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "–".into(),
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(n), _) => count(n),
            // Seconds, ratios: three decimals say enough on a page.
            (None, Some(x)) if x.fract() != 0.0 => {
                let text = format!("{x:.3}");
                text.trim_end_matches('0').trim_end_matches('.').to_owned()
            }
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
    err: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
    next: Option<String>,
}

/// Only a console path is a place to go after login (no open redirect to another site).
fn next_or_index(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if next.starts_with("/ui/") && !next.starts_with("/ui//") && !next.contains('\\') =>
        {
            next
        }
        _ => "/ui/",
    }
}

fn login_form(shell: &Shell, next: &str, error: Option<&str>) -> Markup {
    page(
        shell,
        "Log in",
        html! {
            main.login {
                h1 { "brasa" }
                p.daemon { (shell.daemon) }
                @if let Some(error) = error { p.flash.error role="alert" { (error) } }
                form method="post" action="/ui/login" hx-boost="false" {
                    input type="hidden" name="next" value=(next);
                    label { "User " input name="user" autocomplete="username" required autofocus; }
                    label { "Password " input name="password" type="password" autocomplete="current-password" required; }
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

async fn login_page(
    Extension(shell): Extension<Arc<Shell>>,
    Query(query): Query<LoginQuery>,
) -> Response {
    if !shell.access.enabled() {
        return Redirect::to("/ui/").into_response();
    }
    let next = next_or_index(query.next.as_deref());
    login_form(&shell, next, query.err.as_deref()).into_response()
}

async fn login(
    Extension(shell): Extension<Arc<Shell>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = next_or_index(form.next.as_deref()).to_owned();
    let access = shell.access.clone();
    let user = form.user.clone();
    // Argon2 takes tens of milliseconds of CPU on purpose: not on an async worker.
    let outcome = tokio::task::spawn_blocking(move || {
        access.login(Instant::now(), peer.ip(), &user, &form.password)
    })
    .await;
    let (status, error) = match outcome {
        Ok(Ok((id, principal))) => {
            tracing::info!(%peer, user = ?form.user, role = principal.role.as_str(), "console login");
            let secure = if shell.tls { "; Secure" } else { "" };
            let cookie = format!(
                "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                shell.access.session_lifetime().as_secs()
            );
            return (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, next), (header::SET_COOKIE, cookie)],
            )
                .into_response();
        }
        Ok(Err(err @ LoginError::RateLimited { .. })) => {
            tracing::warn!(%peer, user = ?form.user, %err, "console login refused");
            (StatusCode::TOO_MANY_REQUESTS, err.to_string())
        }
        Ok(Err(LoginError::Disabled)) => return Redirect::to("/ui/").into_response(),
        Ok(Err(err)) => {
            tracing::warn!(%peer, user = ?form.user, %err, "console login failed");
            (StatusCode::UNAUTHORIZED, err.to_string())
        }
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    };
    (status, login_form(&shell, &next, Some(&error))).into_response()
}

async fn logout(ctx: Ctx) -> Response {
    if let Some(session) = &ctx.principal.session {
        ctx.shell.access.logout(session);
    }
    let expired = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/ui/login".to_owned()),
            (header::SET_COOKIE, expired),
        ],
    )
        .into_response()
}

async fn series_json(ctx: Ctx) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(ctx.shell.series.to_json()),
    )
        .into_response()
}

/// The vendored files (versions and licences in `assets/README.md`) and the console's own.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "htmx.min.js",
        "text/javascript",
        include_bytes!("assets/htmx-2.0.11.min.js"),
    ),
    (
        "uPlot.min.js",
        "text/javascript",
        include_bytes!("assets/uPlot-1.6.32.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css",
        include_bytes!("assets/uPlot-1.6.32.min.css"),
    ),
    (
        "console.css",
        "text/css",
        include_bytes!("assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript",
        include_bytes!("assets/console.js"),
    ),
];

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// Headers of every console answer: no script, style or frame from elsewhere, no inline
/// script at all, no sniffing, no caching of pages that show live state.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_followed_after_login() {
        assert_eq!(next_or_index(Some("/ui/radius")), "/ui/radius");
        assert_eq!(next_or_index(Some("//evil.example/")), "/ui/");
        assert_eq!(next_or_index(Some("/ui//evil.example/")), "/ui/");
        assert_eq!(next_or_index(Some("https://evil.example/ui/")), "/ui/");
        assert_eq!(next_or_index(Some("/ui/\\evil")), "/ui/");
        assert_eq!(next_or_index(None), "/ui/");
    }

    #[test]
    fn counts_rates_and_uptimes_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1\u{2009}000");
        assert_eq!(count(1234567), "1\u{2009}234\u{2009}567");
        assert_eq!(format_rate(12.34), "12.3/s");
        assert_eq!(format_rate(1234.5), "1234/s");
        assert_eq!(
            format_uptime(3 * 86_400 + 4 * 3600 + 5 * 60 + 6),
            "3d 04:05:06"
        );
    }

    #[test]
    fn json_tables_escape_what_they_show() {
        let rows = serde_json::json!([{ "name": "<script>alert(1)</script>", "n": 1200 }]);
        let html = json_table(&rows, "none").into_string();
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("1\u{2009}200"), "{html}");
        assert_eq!(json_cell(&serde_json::json!(6.164437791)), "6.164");
        assert_eq!(json_cell(&serde_json::json!(0.5)), "0.5");
        assert_eq!(json_cell(&serde_json::json!(-3)), "-3");
        let empty = json_table(&serde_json::json!([]), "nothing yet").into_string();
        assert!(empty.contains("nothing yet"));
    }
}
