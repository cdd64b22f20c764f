//! The Python page of `brasa run`: python-scripts (runs, failures, timeouts; reload, debug on
//! and off) and python-policy caches (search by key, page through the dump, set-lifetime,
//! clear after a confirmation) — the operator tools of SR OS's Python cache support as forms.

use super::{action_button, back, count, csrf_field, layout, live, Ctx, Flash, NavItem};
use crate::common::api::encode_component;
use crate::daemon::python_api::{self, DebugRequest, KeyRequest, SetLifetimeRequest};
use crate::daemon::ApiState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use maud::html;
use serde::Deserialize;

/// The navigation entry.
pub const NAV: NavItem = NavItem {
    href: "/ui/python",
    title: "Python",
};

/// Entries per page of a cache dump.
pub const PAGE_SIZE: usize = 50;

/// `/ui/python…`
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(NAV.href, get(page))
        .route("/ui/python/scripts/{name}/reload", post(reload))
        .route("/ui/python/scripts/{name}/debug", post(debug))
        .route("/ui/python/cache/{policy}", get(cache_page))
        .route(
            "/ui/python/cache/{policy}/clear",
            get(confirm_clear).post(clear),
        )
        .route("/ui/python/cache/{policy}/set-lifetime", post(set_lifetime))
}

fn outcome(
    result: Result<Json<python_api::Done>, crate::common::mgmt::ApiError>,
) -> Result<String, String> {
    result
        .map(|Json(done)| done.detail)
        .map_err(|err| err.detail)
}

async fn page(ctx: Ctx, State(state): State<ApiState>, Query(flash): Query<Flash>) -> Response {
    let stats = match python_api::statistics(State(state)).await {
        Ok(Json(stats)) => stats,
        Err(err) => return err.into_response(),
    };
    layout(&ctx, NAV.href, "Python", &flash, html! {
        (live(NAV.href, html! {
            @if let Some(worker) = &stats.worker {
                section {
                    h2 { "Scripts" }
                    p.note { (worker.queued) " of " (worker.queue_capacity) " packets queued for the Python worker" }
                    table {
                        thead { tr {
                            th { "script" } th { "action on fail" } th.num { "runs" } th.num { "completed" }
                            th.num { "dropped by script" } th.num { "exceptions" } th.num { "timeouts" }
                            th.num { "exits" } th.num { "overload" } th.num { "reloads" } th.num { "mean µs" }
                            th { "debug" } th { "last error" } th {}
                        } }
                        tbody {
                            @for s in &worker.scripts {
                                @let path = format!("/ui/python/scripts/{}", encode_component(&s.name));
                                tr {
                                    td { (s.name) }
                                    td { (format!("{:?}", s.action_on_fail).to_lowercase()) }
                                    @for value in [s.runs, s.completed, s.dropped_by_script, s.exceptions, s.timeouts, s.system_exits, s.overload, s.reloads] {
                                        td.num { (count(value)) }
                                    }
                                    td.num { (count(s.run_time_us.checked_div(s.completed).unwrap_or(0))) }
                                    td { (if s.debug { "on" } else { "off" }) }
                                    td.error { (s.last_error.as_deref().unwrap_or("")) }
                                    td.actions {
                                        (action_button(&ctx.principal, &format!("{path}/reload"), "Reload", &[]))
                                        (action_button(&ctx.principal, &format!("{path}/debug"),
                                            if s.debug { "Debug off" } else { "Debug on" },
                                            &[("on", if s.debug { "false" } else { "true" })]))
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(caches) = &stats.caches {
                section {
                    h2 { "Caches" }
                    p.note { (count(caches.global_memory_used as u64)) " of " (count(caches.global_memory_limit as u64)) " bytes used by all caches" }
                    table {
                        thead { tr {
                            th { "python-policy" } th.num { "entries" } th.num { "bytes" } th.num { "saves" }
                            th.num { "hits" } th.num { "misses" } th.num { "expirations" } th.num { "clears" }
                            th.num { "lifetime changes" } th.num { "refused" }
                        } }
                        tbody {
                            @for c in &caches.caches {
                                tr {
                                    td { a href={ "/ui/python/cache/" (encode_component(&c.policy)) } { (c.policy) } }
                                    td.num { (count(c.entries as u64)) } td.num { (count(c.bytes as u64)) }
                                    @for value in [c.saves, c.hits, c.misses, c.expirations, c.clears, c.lifetime_changes, c.refused.values().sum()] {
                                        td.num { (count(value)) }
                                    }
                                }
                            }
                        }
                    }
                }
                @if let Some(sync) = &caches.sync {
                    section {
                        h2 { "Multi-chassis sync" }
                        (super::json_table(&serde_json::to_value(&sync.peers).unwrap_or_default(), "No peer links."))
                    }
                }
            }
        }))
    })
    .into_response()
}

#[derive(Deserialize)]
struct DebugForm {
    on: bool,
}

async fn reload(State(state): State<ApiState>, Path(name): Path<String>) -> Response {
    back(
        NAV.href,
        outcome(python_api::reload(State(state), Path(name)).await),
    )
}

async fn debug(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Form(form): Form<DebugForm>,
) -> Response {
    let request = DebugRequest { on: form.on };
    back(
        NAV.href,
        outcome(python_api::debug(State(state), Path(name), Json(request)).await),
    )
}

#[derive(Deserialize)]
struct CacheQuery {
    /// Text or hex the key must contain.
    key: Option<String>,
    /// Page number, from 1.
    page: Option<usize>,
    msg: Option<String>,
    err: Option<String>,
}

async fn cache_page(
    ctx: Ctx,
    State(state): State<ApiState>,
    Path(policy): Path<String>,
    Query(query): Query<CacheQuery>,
) -> Response {
    // Tens of thousands of entries: filter and page the raw entries off the async workers,
    // and format (hex, text) only the page shown.
    let name = policy.clone();
    let dumped = tokio::task::spawn_blocking(move || python_api::dump_entries(&state, &name)).await;
    let entries = match dumped {
        Ok(Ok(entries)) => entries,
        Ok(Err(err)) => return err.into_response(),
        Err(err) => {
            return crate::common::mgmt::ApiError::internal(err.to_string()).into_response()
        }
    };
    let total = entries.len();
    let search = query
        .key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let search_bytes = search.map(|s| (s.as_bytes().to_vec(), python_api::parse_hex(s).ok()));
    let matching: Vec<brasa_python::cache_service::EntryDump> = entries
        .into_iter()
        .filter(|e| match &search_bytes {
            Some((text, hex)) => {
                contains(&e.key, text) || hex.as_ref().is_some_and(|hex| contains(&e.key, hex))
            }
            None => true,
        })
        .collect();
    let pages = matching.len().div_ceil(PAGE_SIZE).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let base = format!("/ui/python/cache/{}", encode_component(&policy));
    let search_param = search
        .map(|s| format!("&key={}", encode_component(s)))
        .unwrap_or_default();
    let here = format!("{base}?page={page}{search_param}");
    let flash = Flash {
        msg: query.msg,
        err: query.err,
    };
    layout(&ctx, NAV.href, &format!("Cache of python-policy {policy}"), &flash, html! {
        form.search method="get" action=(base) {
            label { "Key contains " input name="key" value=(search.unwrap_or("")) placeholder="text, or hex bytes"; }
            button type="submit" { "Search" }
        }
        p.note { (count(matching.len() as u64)) " of " (count(total as u64)) " entries; page " (page) " of " (pages) }
        table {
            thead { tr { th { "Key" } th { "Value (hex)" } th { "Time Left" } th { "DDP Key" } th {} } }
            tbody {
                @for entry in matching.into_iter().skip((page - 1) * PAGE_SIZE).take(PAGE_SIZE).map(python_api::CacheEntry::from) {
                    tr {
                        td.key {
                            @match entry.key.as_deref().filter(|k| python_api::printable(k)) {
                                Some(text) => { (text) }
                                None => { code { "(hex) " (entry.key_hex) } }
                            }
                        }
                        td { code { (entry.value_hex) } }
                        td { (entry.time_left) }
                        td { (entry.ddp_key) }
                        td.actions {
                            @if ctx.principal.can_change() {
                                form.inline method="post" action={ (base) "/set-lifetime" } {
                                    (csrf_field(&ctx.principal))
                                    input type="hidden" name="key_hex" value=(entry.key_hex);
                                    input type="hidden" name="back" value=(here);
                                    input.seconds type="number" name="seconds" min="0" required placeholder="seconds" aria-label="new lifetime in seconds";
                                    button type="submit" { "Set lifetime" }
                                }
                                a.button href={ (base) "/clear?key_hex=" (encode_component(&entry.key_hex)) } { "Clear…" }
                            }
                        }
                    }
                }
            }
        }
        nav.pages {
            @if page > 1 { a href={ (base) "?page=" (page - 1) (search_param) } { "← previous" } }
            @if page < pages { a href={ (base) "?page=" (page + 1) (search_param) } { "next →" } }
        }
    })
    .into_response()
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

#[derive(Deserialize)]
struct KeyQuery {
    key_hex: String,
}

async fn confirm_clear(
    ctx: Ctx,
    Path(policy): Path<String>,
    Query(query): Query<KeyQuery>,
) -> Response {
    let base = format!("/ui/python/cache/{}", encode_component(&policy));
    let key = python_api::parse_hex(&query.key_hex)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|text| python_api::printable(text));
    layout(&ctx, NAV.href, "Clear a cache entry", &Flash::default(), html! {
        p {
            "Clear the entry with key "
            @match &key { Some(text) => { strong { (text) } } None => { code { "(hex) " (query.key_hex) } } }
            " from the cache of python-policy " strong { (policy) } "? "
            "The next packet that needs it will not find it."
        }
        @if ctx.principal.can_change() {
            form method="post" action={ (base) "/clear" } {
                (csrf_field(&ctx.principal))
                input type="hidden" name="key_hex" value=(query.key_hex);
                button.danger type="submit" { "Clear the entry" }
                " "
                a href=(base) { "Cancel" }
            }
        } @else {
            p.flash.error { "Your role is read-only." }
        }
    })
    .into_response()
}

#[derive(Deserialize)]
struct ClearForm {
    key_hex: String,
}

async fn clear(
    State(state): State<ApiState>,
    Path(policy): Path<String>,
    Form(form): Form<ClearForm>,
) -> Response {
    let to = format!("/ui/python/cache/{}", encode_component(&policy));
    let request = KeyRequest {
        key_hex: form.key_hex,
    };
    back(
        &to,
        outcome(python_api::clear(State(state), Path(policy), Json(request)).await),
    )
}

#[derive(Deserialize)]
struct LifetimeForm {
    key_hex: String,
    seconds: u64,
    back: Option<String>,
}

async fn set_lifetime(
    State(state): State<ApiState>,
    Path(policy): Path<String>,
    Form(form): Form<LifetimeForm>,
) -> Response {
    let base = format!("/ui/python/cache/{}", encode_component(&policy));
    // Back to the page the form was on, if it is this cache's page.
    let to = form
        .back
        .filter(|b| b.starts_with(&format!("{base}?")))
        .unwrap_or(base);
    let request = SetLifetimeRequest {
        key_hex: form.key_hex,
        seconds: form.seconds,
    };
    back(
        &to,
        outcome(python_api::set_lifetime(State(state), Path(policy), Json(request)).await),
    )
}

#[cfg(test)]
mod tests {
    use super::contains;

    #[test]
    fn key_search_finds_text_or_hex_bytes_anywhere_in_the_key() {
        let key = b"00:20:fc:1e:cd:53";
        assert!(contains(key, b"fc:1e"));
        assert!(contains(key, b""));
        assert!(!contains(key, b"fc:1f"));
        let hex = crate::daemon::python_api::parse_hex("3a 32 30").unwrap();
        assert!(contains(key, &hex), ":20 as hex bytes");
        assert!(!contains(b"ab", b"abc"));
    }
}
