//! The overview page every daemon opens on: its components, uptime, live rates with
//! sparklines, and its error and drop counters. Each daemon supplies an [`Overview`]; `brasa
//! run`'s is built here from [`ApiState`].

use super::{count, format_uptime, layout, live, plural, sparkline, Ctx, Flash, NavItem};
use crate::daemon::ApiState;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};

/// The navigation entry.
pub const NAV: NavItem = NavItem {
    href: "/ui/overview",
    title: "Overview",
};

/// One component the daemon runs.
pub struct Component {
    /// Its name.
    pub name: &'static str,
    /// Its page, if it has one.
    pub href: Option<&'static str>,
    /// One line of state (`3 clients, 1 upstream alive`).
    pub detail: String,
}

/// What the overview shows.
#[derive(Default)]
pub struct Overview {
    /// The components, in navigation order.
    pub components: Vec<Component>,
    /// Error and drop counters: (what, how many since start).
    pub problems: Vec<(String, u64)>,
}

/// The overview page of any daemon.
pub fn render(ctx: &Ctx, flash: &Flash, overview: &Overview) -> Markup {
    let shell = &ctx.shell;
    let uptime = shell.started.elapsed().as_secs();
    layout(
        ctx,
        NAV.href,
        "Overview",
        flash,
        html! {
            // Outside the live region: console.js updates the charts in place.
            section.sparks {
                @for index in 0..shell.series.len() { (sparkline(shell, index)) }
            }
            (live(NAV.href, html! {
                p.uptime { "Up " (format_uptime(uptime)) }
                section {
                    h2 { "Components" }
                    table {
                        thead { tr { th { "component" } th { "state" } } }
                        tbody {
                            @for component in &overview.components {
                                tr {
                                    td { @if let Some(href) = component.href { a href=(href) { (component.name) } } @else { (component.name) } }
                                    td { (component.detail) }
                                }
                            }
                        }
                    }
                }
                section {
                    h2 { "Errors and drops" }
                    table.problems {
                        thead { tr { th { "counter" } th.num { "since start" } } }
                        tbody {
                            @for (what, value) in &overview.problems {
                                tr class=[(*value > 0).then_some("nonzero")] { td { (what) } td.num { (count(*value)) } }
                            }
                        }
                    }
                }
            }))
        },
    )
}

/// `/ui/overview` of `brasa run`.
pub fn routes() -> Router<ApiState> {
    Router::new().route(NAV.href, get(run_overview))
}

/// The counters `brasa run` samples for its sparklines, in [`RUN_SERIES`] order.
pub fn run_counters(state: &ApiState) -> Vec<f64> {
    let (mut requests, mut rejects, mut drops) = (0u64, 0u64, 0u64);
    if let Some(radius) = &state.radius {
        let stats = radius.stats();
        drops += stats.unknown_client;
        for client in &stats.clients {
            requests += client.requests;
            rejects += client.rejects;
            drops += client.malformed
                + client.bad_authenticator
                + client.dropped_by_policy
                + client.unanswered;
        }
    }
    let (mut runs, mut failures) = (0u64, 0u64);
    if let Some(python) = &state.python {
        for script in python.stats().scripts {
            runs += script.runs;
            failures += script.exceptions + script.timeouts + script.system_exits + script.overload;
        }
    }
    let sm_changes = state
        .sm
        .as_ref()
        .map_or(0, |sm| sm.service.stats().ops.applied);
    [requests, rejects, drops, runs, failures, sm_changes]
        .map(|v| v as f64)
        .to_vec()
}

/// The names of [`run_counters`]' rates.
pub const RUN_SERIES: [&str; 6] = [
    "RADIUS requests",
    "Access-Rejects",
    "RADIUS drops",
    "Python runs",
    "Python failures",
    "SM changes",
];

async fn run_overview(
    ctx: Ctx,
    State(state): State<ApiState>,
    Query(flash): Query<Flash>,
) -> Markup {
    let mut overview = Overview::default();
    if let Some(radius) = &state.radius {
        let stats = radius.stats();
        let alive = stats
            .upstreams
            .iter()
            .filter(|u| u.state == "alive")
            .count();
        overview.components.push(Component {
            name: "RADIUS",
            href: Some(super::radius::NAV.href),
            detail: format!(
                "{}, {}, {alive} of {} alive, {}",
                plural(stats.clients.len(), "client", "clients"),
                plural(stats.servers.len(), "server", "servers"),
                plural(stats.upstreams.len(), "upstream server", "upstream servers"),
                plural(stats.sessions as usize, "session", "sessions")
            ),
        });
        overview.problems.push((
            "RADIUS datagrams from unknown clients".into(),
            stats.unknown_client,
        ));
        let sum = |field: fn(&brasa_aaa::ClientStats) -> u64| stats.clients.iter().map(field).sum();
        overview.problems.extend([
            ("RADIUS malformed packets".into(), sum(|c| c.malformed)),
            (
                "RADIUS bad authenticators".into(),
                sum(|c| c.bad_authenticator),
            ),
            (
                "RADIUS dropped by policy".into(),
                sum(|c| c.dropped_by_policy),
            ),
            ("RADIUS requests unanswered".into(), sum(|c| c.unanswered)),
            ("RADIUS hook timeouts".into(), stats.hook_timeouts),
            (
                "RADIUS upstream timeouts".into(),
                stats.upstreams.iter().map(|u| u.timeouts).sum(),
            ),
        ]);
    }
    if let Some(python) = &state.python {
        let stats = python.stats();
        overview.components.push(Component {
            name: "Python",
            href: Some(super::python::NAV.href),
            detail: format!(
                "{}, {} of {} packets queued",
                plural(stats.scripts.len(), "script", "scripts"),
                stats.queued,
                stats.queue_capacity
            ),
        });
        let sum = |field: fn(&brasa_python::worker::ScriptStats) -> u64| {
            stats.scripts.iter().map(field).sum()
        };
        overview.problems.extend([
            ("Python exceptions".into(), sum(|s| s.exceptions)),
            ("Python timeouts".into(), sum(|s| s.timeouts)),
            ("Python queue overloads".into(), sum(|s| s.overload)),
        ]);
    }
    if let Some(caches) = &state.caches {
        let stats = caches.stats();
        overview.components.push(Component {
            name: "Policy caches",
            href: Some(super::python::NAV.href),
            detail: format!(
                "{}, {}, {} of {} bytes",
                plural(stats.caches.len(), "cache", "caches"),
                plural(
                    stats.caches.iter().map(|c| c.entries).sum::<usize>(),
                    "entry",
                    "entries"
                ),
                count(stats.global_memory_used as u64),
                count(stats.global_memory_limit as u64)
            ),
        });
    }
    if let Some(sm) = &state.sm {
        let stats = sm.service.stats();
        overview.components.push(Component {
            name: "Subscriber manager",
            href: Some(super::subscribers::NAV.href),
            detail: format!(
                "{}, {}, {} connected{}",
                plural(stats.subscribers, "subscriber", "subscribers"),
                plural(stats.vpns, "VPN", "VPNs"),
                plural(stats.connected_eps, "EP", "EPs"),
                stats
                    .failed
                    .as_ref()
                    .map(|why| format!(", refusing changes: {why}"))
                    .unwrap_or_default()
            ),
        });
        overview.problems.extend([
            ("SM operations refused".into(), stats.ops.refused),
            ("SM store failures".into(), stats.store_failures),
        ]);
    }
    render(&ctx, &flash, &overview)
}
