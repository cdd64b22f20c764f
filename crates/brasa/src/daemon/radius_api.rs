//! Management API routes of the RADIUS component and its Prometheus metrics.

use super::ApiState;
use crate::common::mgmt::ApiError;
use crate::common::prom::{Kind, PromWriter};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use brasa_aaa::StatsSnapshot;

/// `/api/v1/radius/...`
pub fn routes() -> Router<ApiState> {
    Router::new().route("/statistics", get(statistics))
}

pub(crate) async fn statistics(
    State(state): State<ApiState>,
) -> Result<Json<StatsSnapshot>, ApiError> {
    let radius = state.radius.as_ref().ok_or_else(|| {
        ApiError::not_found("the RADIUS component is not enabled in this daemon's config")
    })?;
    Ok(Json(radius.stats()))
}

/// Numeric fields of a serialised stats row, in declaration order.
fn numeric_fields(row: &impl serde::Serialize) -> Vec<(String, f64)> {
    match serde_json::to_value(row) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter_map(|(key, value)| value.as_f64().map(|v| (key, v)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Writes every RADIUS counter as Prometheus families.
pub fn write_metrics(stats: &StatsSnapshot, writer: &mut PromWriter) {
    writer
        .family(
            "brasa_radius_unknown_client_total",
            "Datagrams from addresses that are no configured client.",
            Kind::Counter,
        )
        .sample(
            "brasa_radius_unknown_client_total",
            &[],
            stats.unknown_client as f64,
        );
    writer
        .family(
            "brasa_radius_coa_unroutable_total",
            "CoA/Disconnect requests that named no known session or NAS.",
            Kind::Counter,
        )
        .sample(
            "brasa_radius_coa_unroutable_total",
            &[],
            stats.coa_unroutable as f64,
        );
    writer
        .family(
            "brasa_radius_sessions",
            "Sessions known for CoA routing.",
            Kind::Gauge,
        )
        .sample("brasa_radius_sessions", &[], stats.sessions as f64);

    let client_rows: Vec<_> = stats
        .clients
        .iter()
        .map(|c| (c.name.as_str(), numeric_fields(c)))
        .collect();
    if let Some((_, fields)) = client_rows.first() {
        for (index, (field, _)) in fields.iter().enumerate() {
            let name = format!("brasa_radius_client_{field}_total");
            writer.family(
                &name,
                &format!("Per NAS client: {}.", field.replace('_', " ")),
                Kind::Counter,
            );
            for (client, fields) in &client_rows {
                if let Some((_, value)) = fields.get(index) {
                    writer.sample(&name, &[("client", client)], *value);
                }
            }
        }
    }

    let upstream_rows: Vec<_> = stats
        .upstreams
        .iter()
        .map(|u| (u, numeric_fields(u)))
        .collect();
    if let Some((_, fields)) = upstream_rows.first() {
        for (index, (field, _)) in fields.iter().enumerate() {
            let gauge = matches!(field.as_str(), "in_flight" | "rtt_us");
            let name = if gauge {
                format!("brasa_radius_upstream_{field}")
            } else {
                format!("brasa_radius_upstream_{field}_total")
            };
            let kind = if gauge { Kind::Gauge } else { Kind::Counter };
            writer.family(
                &name,
                &format!("Per upstream server: {}.", field.replace('_', " ")),
                kind,
            );
            for (upstream, fields) in &upstream_rows {
                if let Some((_, value)) = fields.get(index) {
                    writer.sample(
                        &name,
                        &[
                            ("pool", &upstream.pool),
                            ("server", &upstream.name),
                            ("address", &upstream.address),
                        ],
                        *value,
                    );
                }
            }
        }
        writer.family(
            "brasa_radius_upstream_alive",
            "1 if the upstream server is alive.",
            Kind::Gauge,
        );
        for (upstream, _) in &upstream_rows {
            writer.sample(
                "brasa_radius_upstream_alive",
                &[
                    ("pool", &upstream.pool),
                    ("server", &upstream.name),
                    ("address", &upstream.address),
                ],
                if upstream.state == "alive" { 1.0 } else { 0.0 },
            );
        }
    }
}
