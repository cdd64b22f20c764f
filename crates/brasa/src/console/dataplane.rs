//! The console of `brasa dataplane` (COMET D4.3 §5, the stateless CAFE): the overview, and the
//! data plane page with its ports, drops by reason, and the forward and intercept tables with
//! their counters.

use super::overview::{self, Component, Overview};
use super::{count, json_table, layout, live, Ctx, Flash, NavItem, Shell};
use crate::common::access::Access;
use crate::daemon::dataplane::{self as daemon, Ctl};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use maud::html;
use std::sync::Arc;

/// The navigation entry.
pub const NAV: NavItem = NavItem {
    href: "/ui/dataplane",
    title: "Data plane",
};

/// `/ui/overview` and `/ui/dataplane`.
pub fn routes() -> Router<Ctl> {
    Router::new()
        .route(overview::NAV.href, get(overview_page))
        .route(NAV.href, get(page))
}

/// The shell of `brasa dataplane`'s console.
pub fn shell(access: Arc<Access>, tls: bool) -> Shell {
    Shell {
        daemon: "brasa dataplane",
        nav: vec![overview::NAV, NAV],
        access,
        series: Arc::new(super::series::Series::new(
            ["Frames received", "Frames sent", "Drops"]
                .map(String::from)
                .to_vec(),
        )),
        started: std::time::Instant::now(),
        tls,
    }
}

/// The counters the sparklines sample.
pub async fn counters(ctl: &Ctl) -> Option<Vec<f64>> {
    let Json(stats) = daemon::stats(State(ctl.clone())).await.ok()?;
    let sum = |field: fn(&brasa_dataplane::control::PortCountersView) -> u64| {
        stats
            .interfaces
            .iter()
            .map(|i| field(&i.counters))
            .sum::<u64>() as f64
    };
    Some(vec![
        sum(|c| c.rx_packets),
        sum(|c| c.tx_packets),
        sum(|c| c.dropped),
    ])
}

async fn overview_page(ctx: Ctx, State(ctl): State<Ctl>, Query(flash): Query<Flash>) -> Response {
    let stats = match daemon::stats(State(ctl)).await {
        Ok(Json(stats)) => stats,
        Err(err) => return err.into_response(),
    };
    let overview = Overview {
        components: vec![Component {
            name: "Data plane and CAFE",
            href: Some(NAV.href),
            detail: format!(
                "{} ports, {} intercept filters, {} streams expired",
                stats.interfaces.len(),
                stats.filters,
                stats.expired_total
            ),
        }],
        problems: stats
            .drops
            .iter()
            .map(|(reason, n)| (format!("Dropped: {reason}"), *n))
            .collect(),
    };
    overview::render(&ctx, &flash, &overview).into_response()
}

async fn page(ctx: Ctx, State(ctl): State<Ctl>, Query(flash): Query<Flash>) -> Response {
    let fetched = async {
        Ok::<_, crate::common::mgmt::ApiError>((
            daemon::stats(State(ctl.clone())).await?.0,
            daemon::forward_list(State(ctl.clone())).await?.0,
            daemon::intercept_list(State(ctl)).await?.0,
        ))
    }
    .await;
    let (stats, forward, intercept) = match fetched {
        Ok(all) => all,
        Err(err) => return err.into_response(),
    };
    layout(&ctx, NAV.href, "Data plane", &flash, live(NAV.href, html! {
        section {
            h2 { "Ports" }
            (json_table(&value(&stats.interfaces), "No port."))
            p.note { (count(stats.decapsulated)) " packets (" (count(stats.decapsulated_bytes)) " bytes) decapsulated; "
                     (count(stats.expired_pending as u64)) " expired stream records wait for collection" }
        }
        section {
            h2 { "Drops by reason" }
            table.problems {
                thead { tr { th { "reason" } th.num { "packets" } } }
                tbody {
                    @for (reason, n) in &stats.drops {
                        tr class=[(*n > 0).then_some("nonzero")] { td { (reason) } td.num { (count(*n)) } }
                    }
                }
            }
        }
        section {
            h2 { "Forward table" }
            (json_table(&value(&forward), "No forwarding key."))
        }
        section {
            h2 { "Intercept table" }
            (json_table(&value(&intercept), "No intercept filter."))
        }
    }))
    .into_response()
}

fn value(rows: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(rows).unwrap_or_default()
}
