//! The console of `brasa rae` (COMET D4.3 §4): the overview, and the RAE page with its peers,
//! the RIB per class of service, the preferred paths and a graph of the domains (ASes) and
//! the links the RIB's AS paths use.

use super::overview::{self, Component, Overview};
use super::{json_cell, json_table, layout, live, Ctx, Flash, NavItem, Shell};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use brasa_rae::engine::RouteView;
use brasa_rae_net::{PeerView, RaeHandle, SessionState};
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// The navigation entry.
pub const NAV: NavItem = NavItem {
    href: "/ui/rae",
    title: "RAE",
};

/// The pages of `brasa rae`.
pub fn nav() -> Vec<NavItem> {
    vec![overview::NAV, NAV]
}

/// `/ui/overview` and `/ui/rae`.
pub fn routes() -> Router<RaeHandle> {
    Router::new()
        .route(overview::NAV.href, get(overview_page))
        .route(NAV.href, get(page))
}

/// The sampled rates' names, in [`counters`] order.
pub fn series_names() -> Vec<String> {
    ["Updates in", "Withdraws in", "Updates out", "Decision runs"]
        .map(String::from)
        .to_vec()
}

/// The counters the sparklines sample.
pub async fn counters(handle: &RaeHandle) -> Option<Vec<f64>> {
    let c = handle.metrics().await.ok()?.counters;
    Some(
        [c.updates_in, c.withdraws_in, c.updates_out, c.decision_runs]
            .map(|v| v as f64)
            .to_vec(),
    )
}

async fn overview_page(
    ctx: Ctx,
    State(handle): State<RaeHandle>,
    Query(flash): Query<Flash>,
) -> Response {
    let (metrics, peers) = match (handle.metrics().await, handle.peers().await) {
        (Ok(metrics), Ok(peers)) => (metrics, peers),
        (Err(err), _) | (_, Err(err)) => {
            return crate::common::mgmt::ApiError::internal(err.to_string()).into_response()
        }
    };
    let overview = Overview {
        components: vec![Component {
            name: "Routing Awareness Entity",
            href: Some(NAV.href),
            detail: format!(
                "AS {}: {} of {} peers established, {} routes, {} paths ({} preferred), CME {}",
                metrics.local_as,
                metrics.sessions_established,
                metrics.peers_configured,
                metrics.routes,
                metrics.paths,
                metrics.preferred_paths,
                if metrics.cme_connected {
                    "connected"
                } else {
                    "not connected"
                }
            ),
        }],
        problems: vec![
            ("Routes or paths rejected".into(), metrics.counters.rejected),
            (
                "Paths with a loop (local AS)".into(),
                metrics.counters.loops,
            ),
            ("Malformed frames".into(), metrics.malformed_frames),
            (
                "Session drops".into(),
                peers.iter().map(|p| p.session_drops).sum(),
            ),
        ],
    };
    overview::render(&ctx, &flash, &overview).into_response()
}

#[derive(Deserialize)]
struct RibQuery {
    cos: Option<u32>,
}

async fn page(
    ctx: Ctx,
    State(handle): State<RaeHandle>,
    Query(query): Query<RibQuery>,
) -> Response {
    let fetched = async {
        Ok::<_, brasa_rae_net::DaemonError>((
            handle.metrics().await?,
            handle.peers().await?,
            handle.routes(None, None).await?,
            handle.preferred().await?,
        ))
    }
    .await;
    let (metrics, peers, routes, preferred) = match fetched {
        Ok(all) => all,
        Err(err) => {
            return crate::common::mgmt::ApiError::internal(err.to_string()).into_response()
        }
    };
    let classes: BTreeSet<u32> = routes.iter().map(|r| r.cos).collect();
    let cos = query
        .cos
        .filter(|c| classes.contains(c))
        .or_else(|| classes.first().copied());
    let uri = match cos {
        Some(cos) => format!("{}?cos={cos}", NAV.href),
        None => NAV.href.to_owned(),
    };
    layout(&ctx, NAV.href, &format!("RAE of AS {}", metrics.local_as), &Flash::default(), live(&uri, html! {
        section {
            h2 { "Domains and links" }
            (graph(metrics.local_as, &peers, &routes))
        }
        section {
            h2 { "Peers" }
            (json_table(&serde_json::to_value(&peers).unwrap_or_default(), "No peer is configured."))
        }
        section {
            h2 { "RIB" }
            nav.tabs {
                @for class in &classes {
                    a href={ (NAV.href) "?cos=" (class) } class=[(Some(*class) == cos).then_some("active")] { "class " (class) }
                }
            }
            (route_table(routes.iter().filter(|r| Some(r.cos) == cos), false))
        }
        section {
            h2 { "Preferred paths" }
            (route_table(preferred.iter(), true))
        }
    }))
    .into_response()
}

fn route_table<'a>(routes: impl Iterator<Item = &'a RouteView>, preferred_only: bool) -> Markup {
    let rows: Vec<(&RouteView, &brasa_rae::engine::PathView)> = routes
        .flat_map(|r| r.paths.iter().map(move |p| (r, p)))
        .filter(|(_, p)| !preferred_only || p.preferred)
        .collect();
    html! {
        @if rows.is_empty() {
            p.empty { "No route." }
        } @else {
            table {
                thead { tr {
                    th { "prefix" } th.num { "class" } th.num { "rank" } th { "preferred" } th { "via AS" }
                    th { "AS path" } th.num { "delay s" } th.num { "loss" } th.num { "bandwidth bit/s" } th.num { "achievement" }
                } }
                tbody {
                    @for (route, path) in rows {
                        tr class=[path.preferred.then_some("preferred")] {
                            td { (json_cell(&serde_json::to_value(route.prefix).unwrap_or_default())) }
                            td.num { (route.cos) } td.num { (path.rank) }
                            td { (if path.preferred { "yes" } else { "" }) }
                            td { (path.via_as.map(|a| a.to_string()).unwrap_or_else(|| "local".into())) }
                            td { (path.as_path.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")) }
                            td.num { (format!("{:.4}", path.metric.delay)) }
                            td.num { (format!("{:.4}", path.metric.loss)) }
                            td.num { (if path.metric.bandwidth.is_finite() { format!("{:.0}", path.metric.bandwidth) } else { "∞".into() }) }
                            td.num { (format!("{:.3}", path.achievement)) }
                        }
                    }
                }
            }
        }
    }
}

/// The ASes this RAE knows (itself in the middle, its peers around it, the ASes further along
/// the RIB's AS paths on an outer ring) and the links between them: a peering is green when
/// its session is established, red otherwise; links along AS paths are grey.
fn graph(local: u32, peers: &[PeerView], routes: &[RouteView]) -> Markup {
    const WIDTH: f64 = 640.0;
    const HEIGHT: f64 = 400.0;
    let centre = (WIDTH / 2.0, HEIGHT / 2.0);
    let peer_ases: BTreeSet<u32> = peers.iter().map(|p| p.as_number).collect();
    let mut links: BTreeSet<(u32, u32)> = BTreeSet::new();
    let mut far: BTreeSet<u32> = BTreeSet::new();
    for path in routes.iter().flat_map(|r| &r.paths) {
        let mut previous = local;
        for &hop in &path.as_path {
            if hop != previous {
                links.insert((previous.min(hop), previous.max(hop)));
            }
            if hop != local && !peer_ases.contains(&hop) {
                far.insert(hop);
            }
            previous = hop;
        }
    }
    let ring = |set: &BTreeSet<u32>, radius: f64, out: &mut BTreeMap<u32, (f64, f64)>| {
        let n = set.len().max(1) as f64;
        for (i, asn) in set.iter().enumerate() {
            let angle = std::f64::consts::TAU * i as f64 / n - std::f64::consts::FRAC_PI_2;
            out.insert(
                *asn,
                (
                    centre.0 + radius * angle.cos(),
                    centre.1 + radius * angle.sin(),
                ),
            );
        }
    };
    let mut position = BTreeMap::from([(local, centre)]);
    ring(&peer_ases, 110.0, &mut position);
    ring(&far, 180.0, &mut position);
    let up = |asn: u32| {
        peers
            .iter()
            .any(|p| p.as_number == asn && p.state == SessionState::Established)
    };
    html! {
        svg.graph viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label="ASes and links" {
            @for (a, b) in &links {
                @if let (Some(pa), Some(pb)) = (position.get(a), position.get(b)) {
                    line.path x1=(pa.0) y1=(pa.1) x2=(pb.0) y2=(pb.1) {}
                }
            }
            @for asn in &peer_ases {
                @if let Some(p) = position.get(asn) {
                    line class={ "peering " (if up(*asn) { "up" } else { "down" }) } x1=(centre.0) y1=(centre.1) x2=(p.0) y2=(p.1) {}
                }
            }
            @for (asn, p) in &position {
                g class={ "as " (if *asn == local { "local" } else if peer_ases.contains(asn) { "peer" } else { "far" }) } {
                    circle cx=(p.0) cy=(p.1) r="22" {}
                    text x=(p.0) y=(p.1 + 5.0) text-anchor="middle" { "AS " (asn) }
                }
            }
        }
    }
}

/// The shell of `brasa rae`'s console.
pub fn shell(access: std::sync::Arc<crate::common::access::Access>, tls: bool) -> Shell {
    Shell {
        daemon: "brasa rae",
        nav: nav(),
        access,
        series: std::sync::Arc::new(super::series::Series::new(series_names())),
        started: std::time::Instant::now(),
        tls,
    }
}
