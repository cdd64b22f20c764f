//! The RADIUS page of `brasa run`: NAS clients and upstream servers with their counters and
//! state, and the last Access-Rejects.

use super::{count, json_cell, layout, live, Ctx, Flash, NavItem};
use crate::daemon::{radius_api, ApiState};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;

/// The navigation entry.
pub const NAV: NavItem = NavItem {
    href: "/ui/radius",
    title: "RADIUS",
};

/// `/ui/radius`
pub fn routes() -> Router<ApiState> {
    Router::new().route(NAV.href, get(page))
}

async fn page(ctx: Ctx, State(state): State<ApiState>, Query(flash): Query<Flash>) -> Response {
    let stats = match radius_api::statistics(State(state.clone())).await {
        Ok(axum::Json(stats)) => stats,
        Err(err) => return err.into_response(),
    };
    let rejects = state.rejects.as_ref().map(|r| r.list()).unwrap_or_default();
    layout(&ctx, NAV.href, "RADIUS", &flash, live(NAV.href, html! {
        section {
            h2 { "Clients" }
            table {
                thead { tr {
                    th { "client" } th.num { "requests" } th.num { "accepts" } th.num { "rejects" }
                    th.num { "challenges" } th.num { "acct responses" } th.num { "retransmissions" }
                    th.num { "malformed" } th.num { "bad authenticator" } th.num { "dropped by policy" }
                    th.num { "unanswered" } th.num { "CoA relayed" }
                } }
                tbody {
                    @for c in &stats.clients {
                        tr {
                            td { (c.name) }
                            @for value in [c.requests, c.accepts, c.rejects, c.challenges, c.accounting_responses,
                                           c.retransmissions, c.malformed, c.bad_authenticator, c.dropped_by_policy,
                                           c.unanswered, c.coa_relayed] {
                                td.num { (count(value)) }
                            }
                        }
                    }
                }
            }
            p.note { (count(stats.unknown_client)) " datagrams from unknown clients; "
                     (count(stats.sessions)) " sessions known for CoA; "
                     (count(stats.hooks_pending)) " packets waiting for Python" }
        }
        section {
            h2 { "Upstream servers" }
            @if stats.upstreams.is_empty() {
                p.empty { "No upstream pool: this daemon answers from its local user databases." }
            } @else {
                table {
                    thead { tr {
                        th { "pool" } th { "server" } th { "address" } th { "state" } th.num { "requests" }
                        th.num { "retries" } th.num { "accepts" } th.num { "rejects" } th.num { "acct responses" }
                        th.num { "timeouts" } th.num { "malformed" } th.num { "bad authenticator" }
                        th.num { "in flight" } th.num { "RTT µs" }
                    } }
                    tbody {
                        @for u in &stats.upstreams {
                            tr {
                                td { (u.pool) } td { (u.name) } td { (u.address) }
                                td { span class={ "state " (if u.state == "alive" { "up" } else { "down" }) } { (u.state) } }
                                @for value in [u.requests, u.retransmissions, u.accepts, u.rejects, u.accounting_responses,
                                               u.timeouts, u.malformed, u.bad_authenticator, u.in_flight, u.rtt_us] {
                                    td.num { (count(value)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Recent Access-Rejects" }
            @if rejects.is_empty() {
                p.empty { "None relayed since start (rejects of local user databases are counted above, not listed)." }
            } @else {
                table {
                    thead { tr { th { "when (UTC)" } th { "client" } th { "server" } th { "User-Name" } th { "Reply-Message" } } }
                    tbody {
                        @for r in &rejects {
                            tr {
                                td { (utc(r.at_unix)) } td { (r.client) } td { (r.server) }
                                td { (json_cell(&r.user_name.clone().into())) }
                                td { (json_cell(&r.reply_message.clone().into())) }
                            }
                        }
                    }
                }
            }
        }
    }))
    .into_response()
}

/// `YYYY-MM-DD HH:MM:SS` of Unix seconds, UTC (civil-from-days, Howard Hinnant's algorithm).
pub fn utc(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_403_751_738), "2014-06-26 03:02:18");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00");
    }
}
