//! The Subscribers page of `brasa run` (Cisco SCMS Subscriber Manager): search by name prefix
//! or by IP address (longest-prefix match, `IP@VPN` too), a subscriber's record with its
//! mappings and properties, login and logout, and the enforcement points with their state,
//! resync and quarantine release.

use super::{action_button, back, csrf_field, json_cell, layout, live, Ctx, Flash, NavItem};
use crate::common::api::encode_component;
use crate::common::mgmt::ApiError;
use crate::daemon::sm_api::{self, DomainQuery, LoginBody, LogoutBody, LookupQuery, NamesQuery};
use crate::daemon::ApiState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use maud::{html, Markup};
use serde::Deserialize;

/// The navigation entry.
pub const NAV: NavItem = NavItem {
    href: "/ui/subscribers",
    title: "Subscribers",
};

/// How many names a prefix search lists.
pub const LISTED_NAMES: usize = 200;

/// `/ui/subscribers…`
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(NAV.href, get(page))
        .route("/ui/subscribers/by-name/{name}", get(record))
        .route("/ui/subscribers/login", post(login))
        .route("/ui/subscribers/logout", post(logout))
        .route("/ui/subscribers/eps/{id}/resync", post(resync))
        .route("/ui/subscribers/eps/{id}/release-quarantine", post(release))
}

fn record_href(name: &str, domain: Option<&str>) -> String {
    let mut href = format!("/ui/subscribers/by-name/{}", encode_component(name));
    if let Some(domain) = domain {
        href.push_str(&format!("?domain={}", encode_component(domain)));
    }
    href
}

#[derive(Deserialize)]
struct SearchQuery {
    /// What to look for.
    q: Option<String>,
    /// `prefix` (names) or `ip` (an address, `IP@VPN`).
    by: Option<String>,
    msg: Option<String>,
    err: Option<String>,
}

async fn page(
    ctx: Ctx,
    State(state): State<ApiState>,
    Query(query): Query<SearchQuery>,
) -> Response {
    let flash = Flash {
        msg: query.msg.clone(),
        err: query.err.clone(),
    };
    let q = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let by_ip = query.by.as_deref() == Some("ip");
    let results: Option<Result<Markup, ApiError>> = match q {
        None => None,
        Some(text) if by_ip => {
            let (address, vpn) = match text.split_once('@') {
                Some((address, vpn)) => (address.to_owned(), Some(vpn.to_owned())),
                None => (text.to_owned(), None),
            };
            Some(sm_api::lookup(State(state.clone()), Query(LookupQuery { address, vpn })).await.map(|Json(view)| {
                html! {
                    @match &view.subscriber {
                        Some(s) => {
                            p { (text) " belongs to " a href=(record_href(&s.name, Some(&s.domain))) { (s.name) } " (domain " (s.domain) ")." }
                            (subscriber_table(s))
                        }
                        None => { p.empty { "No subscriber's mapping covers " (text) "." } }
                    }
                }
            }))
        }
        Some(text) => {
            let names = NamesQuery {
                prefix: Some(text.to_owned()),
                suffix: None,
                limit: Some(LISTED_NAMES),
            };
            Some(sm_api::names(State(state.clone()), Query(names)).await.map(|Json(names)| {
                html! {
                    @if names.is_empty() {
                        p.empty { "No subscriber name starts with " (text) "." }
                    } @else {
                        ul.names { @for name in &names { li { a href=(record_href(name, None)) { (name) } } } }
                        @if names.len() == LISTED_NAMES { p.note { "The first " (LISTED_NAMES) " names; narrow the prefix." } }
                    }
                }
            }))
        }
    };
    let eps = match sm_api::eps(State(state)).await {
        Ok(Json(eps)) => serde_json::to_value(eps).unwrap_or_default(),
        Err(err) => return err.into_response(),
    };
    layout(&ctx, NAV.href, "Subscribers", &flash, html! {
        form.search method="get" action=(NAV.href) {
            label { "Find " input name="q" value=(q.unwrap_or("")) placeholder="name prefix, or 10.0.0.7, 10.1.2.3@vpn"; }
            label { input type="radio" name="by" value="prefix" checked[!by_ip]; " by name prefix" }
            label { input type="radio" name="by" value="ip" checked[by_ip]; " by IP address" }
            button type="submit" { "Search" }
        }
        @match results {
            Some(Ok(markup)) => { section.results { (markup) } }
            Some(Err(err)) => { p.flash.error role="alert" { (err.detail) } }
            None => {}
        }
        @if ctx.principal.can_change() {
            details.login {
                summary { "Log a subscriber in" }
                (login_form(&ctx, None))
            }
        }
        (live(NAV.href, eps_table(&ctx, &eps)))
    })
    .into_response()
}

fn eps_table(ctx: &Ctx, eps: &serde_json::Value) -> Markup {
    let rows = eps.as_array().map(Vec::as_slice).unwrap_or_default();
    html! {
        section {
            h2 { "Enforcement points" }
            @if rows.is_empty() {
                p.empty { "No enforcement point is configured." }
            } @else {
                table {
                    thead { tr {
                        th { "EP" } th { "domain" } th { "mode" } th { "state" } th { "role" } th.num { "sent" }
                        th.num { "acknowledged" } th.num { "backlog" } th { "quarantine" } th.num { "left s" }
                        th { "why" } th { "last failure" } th {}
                    } }
                    tbody {
                        @for ep in rows {
                            @let id = ep["id"].as_str().unwrap_or_default();
                            @let quarantine = ep["quarantine"].as_str().unwrap_or_default();
                            @let path = format!("/ui/subscribers/eps/{}", encode_component(id));
                            tr {
                                td { (id) }
                                @for field in ["domain", "mode", "state", "role", "seq_sent", "seq_acked", "backlog"] {
                                    td class=[ep[field].is_number().then_some("num")] { (json_cell(&ep[field])) }
                                }
                                td { span class={ "state " (if quarantine == "quarantined" { "down" } else { "up" }) } { (quarantine) } }
                                @for field in ["quarantine_left_s", "quarantine_reason", "last_failure"] {
                                    td { (json_cell(&ep[field])) }
                                }
                                td.actions {
                                    (action_button(&ctx.principal, &format!("{path}/resync"), "Resync", &[]))
                                    @if quarantine == "quarantined" {
                                        (action_button(&ctx.principal, &format!("{path}/release-quarantine"), "Release quarantine", &[]))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn subscriber_table(s: &sm_api::SubscriberView) -> Markup {
    html! {
        table.record {
            tbody {
                tr { th { "name" } td { (s.name) } }
                tr { th { "domain" } td { (s.domain) } }
                tr { th { "logged in" } td { (if s.logged_in { "yes" } else { "no" }) } }
                tr { th { "mappings" } td { @for m in &s.mappings { code { (m) } " " } } }
                tr { th { "properties" } td {
                    @if s.properties.is_empty() { "–" }
                    dl { @for (key, value) in &s.properties { dt { (key) } dd { (value) } } }
                } }
                tr { th { "EP state" } td { code { (if s.state.is_empty() { "–" } else { &s.state }) } } }
                tr { th { "automatic logout" } td {
                    @match s.auto_logout { Some(at) => { (super::radius::utc(at)) " UTC" } None => { "–" } }
                } }
            }
        }
    }
}

fn login_form(ctx: &Ctx, subscriber: Option<&sm_api::SubscriberView>) -> Markup {
    html! {
        form.stacked method="post" action="/ui/subscribers/login" {
            (csrf_field(&ctx.principal))
            label { "Name " input name="name" required value=[subscriber.map(|s| s.name.as_str())]; }
            label { "Domain " input name="domain" value=[subscriber.map(|s| s.domain.as_str())] placeholder="the default domain"; }
            label { "Mappings " input name="mappings" placeholder="10.0.0.7 2001:db8:7::/48 10.1.0.0/16@vpn1"; }
            label { "Properties " textarea name="properties" rows="2" placeholder="package=gold (one per line)" {} }
            label { input type="checkbox" name="additive" value="true"; " add to the current mappings" }
            button type="submit" { "Log in" }
        }
    }
}

async fn record(
    ctx: Ctx,
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(query): Query<RecordQuery>,
) -> Response {
    let flash = Flash {
        msg: query.msg,
        err: query.err,
    };
    let found = sm_api::subscriber(
        State(state),
        Path(name.clone()),
        Query(DomainQuery {
            domain: query.domain.clone(),
        }),
    )
    .await;
    let Json(s) = match found {
        Ok(found) => found,
        Err(err) => {
            return layout(
                &ctx,
                NAV.href,
                &name,
                &flash,
                html! { p.flash.error role="alert" { (err.detail) } },
            )
            .into_response()
        }
    };
    layout(&ctx, NAV.href, &format!("Subscriber {}", s.name), &flash, html! {
        (subscriber_table(&s))
        @if ctx.principal.can_change() {
            @if s.logged_in {
                (action_button(&ctx.principal, "/ui/subscribers/logout", "Log out", &[("name", &s.name), ("domain", &s.domain)]))
            }
            details.login {
                summary { "Log in (replace or add mappings and properties)" }
                (login_form(&ctx, Some(&s)))
            }
        }
    })
    .into_response()
}

#[derive(Deserialize)]
struct RecordQuery {
    domain: Option<String>,
    msg: Option<String>,
    err: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    domain: Option<String>,
    mappings: Option<String>,
    properties: Option<String>,
    additive: Option<bool>,
}

async fn login(State(state): State<ApiState>, Form(form): Form<LoginForm>) -> Response {
    let domain = form
        .domain
        .filter(|d| !d.trim().is_empty())
        .map(|d| d.trim().to_owned());
    let mut properties = Vec::new();
    for line in form
        .properties
        .as_deref()
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        match line.split_once('=') {
            Some((key, value)) => properties.push((key.trim().to_owned(), value.trim().to_owned())),
            None => {
                return back(
                    NAV.href,
                    Err(format!("property {line:?}: expected name=value")),
                );
            }
        }
    }
    let body = LoginBody {
        name: form.name.trim().to_owned(),
        mappings: form
            .mappings
            .as_deref()
            .unwrap_or("")
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
        additive: form.additive.unwrap_or(false),
        properties,
        domain: domain.clone(),
        auto_logout_seconds: None,
    };
    let name = body.name.clone();
    let to = record_href(&name, domain.as_deref());
    match sm_api::login(State(state), Json(body)).await {
        Ok(_) => back(&to, Ok(format!("{name} logged in"))),
        Err(err) => back(NAV.href, Err(err.detail)),
    }
}

#[derive(Deserialize)]
struct LogoutForm {
    name: String,
    domain: Option<String>,
}

async fn logout(State(state): State<ApiState>, Form(form): Form<LogoutForm>) -> Response {
    let to = record_href(&form.name, form.domain.as_deref());
    let body = LogoutBody {
        name: Some(form.name.clone()),
        domain: form.domain,
        mapping: None,
    };
    let outcome = sm_api::logout(State(state), Json(body)).await;
    back(
        &to,
        outcome
            .map(|_| format!("{} logged out", form.name))
            .map_err(|err| err.detail),
    )
}

async fn resync(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let outcome = sm_api::resync(State(state), Path(id.clone())).await;
    back(
        NAV.href,
        outcome
            .map(|_| format!("resync of EP {id} started"))
            .map_err(|err| err.detail),
    )
}

async fn release(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let outcome = sm_api::release_quarantine(State(state), Path(id.clone())).await;
    back(
        NAV.href,
        outcome
            .map(|_| format!("quarantine of EP {id} released"))
            .map_err(|err| err.detail),
    )
}
