//! The console of a `brasa curling` entity (COMET D4.3 §6): the overview, and the entity's
//! state tables (a CAFE's content state table, a CRME's locCafe, content table and
//! ActiveSessions, a server's streams, a client's downloads) with its counters.

use super::overview::{self, Component, Overview};
use super::{json_cell, json_table, layout, live, Ctx, Flash, NavItem, Shell};
use crate::common::access::Access;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::Router;
use brasa_curling_net::shell::Entity;
use maud::{html, Markup};
use std::sync::Arc;

/// The navigation entry.
pub const NAV: NavItem = NavItem {
    href: "/ui/curling",
    title: "CURLING",
};

/// `/ui/overview` and `/ui/curling`.
pub fn routes() -> Router<Arc<Entity>> {
    Router::new()
        .route(overview::NAV.href, get(overview_page))
        .route(NAV.href, get(page))
}

/// The entity's kind and its fields, from its snapshot's JSON (`{"entity": "cafe", ...}`).
fn fields(entity: &Entity) -> (String, serde_json::Map<String, serde_json::Value>) {
    match serde_json::to_value(entity.snapshot()) {
        Ok(serde_json::Value::Object(mut fields)) => {
            let kind = match fields.remove("entity") {
                Some(serde_json::Value::String(kind)) => kind.to_uppercase(),
                _ => String::new(),
            };
            (kind, fields)
        }
        _ => Default::default(),
    }
}

/// The counter names of this entity (its sparklines), in [`counters`] order.
pub fn series_names(entity: &Entity) -> Vec<String> {
    let (_, fields) = fields(entity);
    fields
        .get("counters")
        .and_then(|c| c.as_object())
        .map(|c| c.keys().map(|k| k.replace('_', " ")).collect())
        .unwrap_or_default()
}

/// The counters the sparklines sample.
pub fn counters(entity: &Entity) -> Vec<f64> {
    let (_, fields) = fields(entity);
    fields
        .get("counters")
        .and_then(|c| c.as_object())
        .map(|c| c.values().map(|v| v.as_f64().unwrap_or(0.0)).collect())
        .unwrap_or_default()
}

/// The shell of a `brasa curling` entity's console.
pub fn shell(access: Arc<Access>, tls: bool, entity: &Entity) -> Shell {
    Shell {
        daemon: "brasa curling",
        nav: vec![overview::NAV, NAV],
        access,
        series: Arc::new(super::series::Series::new(series_names(entity))),
        started: std::time::Instant::now(),
        tls,
    }
}

async fn overview_page(
    ctx: Ctx,
    State(entity): State<Arc<Entity>>,
    Query(flash): Query<Flash>,
) -> Markup {
    let (kind, fields) = fields(&entity);
    let name = fields.get("name").map(json_cell).unwrap_or_default();
    let tables: Vec<String> = fields
        .iter()
        .filter_map(|(key, value)| {
            let n = value.as_array().map(Vec::len).or_else(|| {
                value
                    .as_object()
                    .filter(|_| key != "counters")
                    .map(|o| o.len())
            })?;
            Some(format!("{n} {}", key.replace('_', " ")))
        })
        .collect();
    let overview = Overview {
        components: vec![Component {
            name: "CURLING entity",
            href: Some(NAV.href),
            detail: format!("{kind} {name} at {}: {}", entity.addr(), tables.join(", ")),
        }],
        problems: fields
            .get("counters")
            .and_then(|c| c.as_object())
            .map(|c| {
                c.iter()
                    .filter(|(k, _)| {
                        k.contains("drop")
                            || k.contains("malformed")
                            || k.contains("loss")
                            || k.contains("gap")
                    })
                    .map(|(k, v)| (k.replace('_', " "), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default(),
    };
    overview::render(&ctx, &flash, &overview)
}

async fn page(ctx: Ctx, State(entity): State<Arc<Entity>>, Query(flash): Query<Flash>) -> Markup {
    let (kind, fields) = fields(&entity);
    layout(
        &ctx,
        NAV.href,
        &format!("CURLING {kind}"),
        &flash,
        live(
            NAV.href,
            html! {
                table.record {
                    tbody {
                        @for (key, value) in &fields {
                            @if !value.is_array() && !value.is_object() {
                                tr { th { (key.replace('_', " ")) } td { (json_cell(value)) } }
                            }
                        }
                    }
                }
                @for (key, value) in &fields {
                    @if value.is_array() {
                        section { h2 { (key.replace('_', " ")) } (json_table(value, "Empty.")) }
                    } @else if let Some(object) = value.as_object() {
                        section {
                            h2 { (key.replace('_', " ")) }
                            @if object.is_empty() {
                                p.empty { "Empty." }
                            } @else {
                                table.record {
                                    tbody {
                                        @for (name, inner) in object {
                                            tr { th { (name.replace('_', " ")) } td class=[inner.is_number().then_some("num")] { (json_cell(inner)) } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            },
        ),
    )
}
