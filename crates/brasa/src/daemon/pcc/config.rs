//! `[dataplane.subscribers]`: the data plane of `brasa run` as an enforcement point of the
//! Subscriber Manager, enforcing its subscribers' services (PCC rules) and accounting them.
//!
//! ```toml
//! [dataplane.subscribers]
//! sm = ["127.0.0.1:7790"]        # the SM nodes' gRPC addresses (active and standby)
//! ep_id = "bng1"                 # this enforcement point as the SM knows it
//! domain = "subscribers"         # optional: the SM domain it serves
//! unknown = "forward"            # traffic of addresses no subscriber owns
//! no_services = "forward"        # traffic of subscribers without services
//!
//! [dataplane.subscribers.vpns]     # SM VPN name = the VPRN service holding it
//! corp-a = 100                     # mappings `…@corp-a` are enforced on VPRN 100's interfaces
//!
//! [dataplane.subscribers.accounting]
//! radius_pool = "acct"           # a [[radius.pool]] with acct_servers
//! nas_identifier = "bng1"
//! interim_interval = "15m"       # for services that give no acct-interval
//! min_interim_interval = "5m"    # shorter intervals are raised to it (SR OS: 300 s)
//! ```

use crate::common::config::{ConfigDuration, ConfigError, Source};
use brasa_aaa::PoolConfig;
use brasa_dataplane::acl::Disposition;
use brasa_dataplane::pcc::PccDefaults;
use brasa_services::model::ServiceKind;
use brasa_subsvc::{MAX_ACCT_INTERVAL, MIN_ACCT_INTERVAL};
use serde::Deserialize;
use serde_spanned::Spanned;
use std::collections::BTreeMap;

/// `[dataplane.subscribers]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribersSection {
    /// Enforce (default); `false` keeps the section but starts nothing.
    #[serde(default = "enabled")]
    pub enable: bool,
    /// The SM nodes' gRPC addresses (`"127.0.0.1:7790"` or `"http://…"`), tried in order.
    pub sm: Spanned<Vec<Spanned<String>>>,
    /// This enforcement point's id (configured in the SM).
    pub ep_id: Spanned<String>,
    /// The SM domain it asks for; absent: the one the SM configured for the EP.
    pub domain: Option<Spanned<String>>,
    /// Traffic whose addresses belong to no subscriber: `forward` (default) or `drop`.
    #[serde(default)]
    pub unknown: DispositionName,
    /// Traffic of subscribers without services: `forward` (default) or `drop`.
    #[serde(default)]
    pub no_services: DispositionName,
    /// RADIUS accounting of the service instances; absent: none is sent.
    pub accounting: Option<AccountingSection>,
    /// Each Subscriber Manager VPN whose subscribers are enforced, and the VPRN service (its
    /// id) whose IP interfaces carry that VPN's traffic. Mappings in other VPNs are not
    /// enforced (shown as such).
    #[serde(default)]
    pub vpns: BTreeMap<String, Spanned<i64>>,
}

fn enabled() -> bool {
    true
}

/// `forward` or `drop`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DispositionName {
    /// Forward.
    #[default]
    Forward,
    /// Drop.
    Drop,
}

impl From<DispositionName> for Disposition {
    fn from(name: DispositionName) -> Self {
        match name {
            DispositionName::Forward => Disposition::Forward,
            DispositionName::Drop => Disposition::Drop,
        }
    }
}

/// `[dataplane.subscribers.accounting]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountingSection {
    /// The `[[radius.pool]]` whose `acct_server`s get the records.
    pub radius_pool: Spanned<String>,
    /// NAS-Identifier of the records.
    #[serde(default = "default_nas_identifier")]
    pub nas_identifier: String,
    /// Interim-Update interval of services that give none (SR OS: the accounting policy's
    /// update-interval); absent or 0: none. Raised to `min_interim_interval`.
    pub interim_interval: Option<Spanned<ConfigDuration>>,
    /// The shortest Interim-Update interval: shorter ones (a service's acct-interval,
    /// Alc-Sub-Serv-Acct-Interim-Ivl, `interim_interval`) are raised to it. Default SR OS's
    /// 300 s; whole seconds from 1 s (a lab's) to 180 days.
    pub min_interim_interval: Option<Spanned<ConfigDuration>>,
}

fn default_nas_identifier() -> String {
    "brasa".into()
}

/// A checked `[dataplane.subscribers]`.
#[derive(Debug, Clone)]
pub struct SubscribersResolved {
    /// gRPC endpoints of the SM nodes (`http://…`).
    pub endpoints: Vec<String>,
    /// The EP id.
    pub ep_id: String,
    /// The domain asked for (empty: the SM's choice).
    pub domain: String,
    /// Default actions.
    pub defaults: PccDefaults,
    /// Accounting, if configured.
    pub accounting: Option<AccountingResolved>,
    /// The VPRN holding each SM VPN.
    pub vpns: super::compile::VpnInstances,
}

/// A checked `[dataplane.subscribers.accounting]`.
#[derive(Debug, Clone)]
pub struct AccountingResolved {
    /// The pool (its `acct_servers`).
    pub pool: PoolConfig,
    /// NAS-Identifier.
    pub nas_identifier: String,
    /// Default interim interval, seconds (`None`: none).
    pub default_interval: Option<u32>,
    /// Shortest interim interval, seconds.
    pub min_interval: u32,
}

/// Checks the section against the RADIUS pools and the static services (`static_kinds`: the
/// kind of each service id the config's `[[service.*]]` tables name); `Ok(None)` when it is
/// disabled.
pub fn resolve(
    source: &Source,
    section: SubscribersSection,
    pools: &[PoolConfig],
    static_kinds: &BTreeMap<u32, ServiceKind>,
) -> Result<Option<SubscribersResolved>, ConfigError> {
    if !section.enable {
        return Ok(None);
    }
    if section.sm.get_ref().is_empty() {
        return Err(source.error_at(
            section.sm.span(),
            "expected at least one SM gRPC address, e.g. [\"127.0.0.1:7790\"]",
        ));
    }
    let mut endpoints = Vec::new();
    for address in section.sm.get_ref() {
        let text = address.get_ref().trim();
        let endpoint = if text.starts_with("http://") || text.starts_with("https://") {
            text.to_string()
        } else {
            format!("http://{text}")
        };
        let authority = endpoint
            .split_once("://")
            .map_or("", |(_, rest)| rest.trim_end_matches('/'));
        let valid = authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(source.error_at(
                address.span(),
                format!("{text:?} is not a gRPC address: expected HOST:PORT or http://HOST:PORT"),
            ));
        }
        endpoints.push(endpoint);
    }
    if section.ep_id.get_ref().trim().is_empty() {
        return Err(source.error_at(section.ep_id.span(), "expected a non-empty EP id"));
    }
    let accounting = match section.accounting {
        None => None,
        Some(acct) => {
            let pool = super::super::dynsvc::config::pool_named(source, pools, &acct.radius_pool)?;
            if pool.acct_servers.is_empty() {
                return Err(source.error_at(
                    acct.radius_pool.span(),
                    format!(
                        "[[radius.pool]] {:?} has no acct_server",
                        acct.radius_pool.get_ref()
                    ),
                ));
            }
            let default_interval = acct
                .interim_interval
                .map(|interval| {
                    whole_seconds(
                        source,
                        &interval,
                        0..=MAX_ACCT_INTERVAL,
                        "expected whole seconds up to 180 days (0: no Interim-Update)",
                    )
                })
                .transpose()?;
            let min_interval = acct
                .min_interim_interval
                .map(|interval| {
                    whole_seconds(
                        source,
                        &interval,
                        1..=MAX_ACCT_INTERVAL,
                        "expected whole seconds from 1s to 180 days (SR OS: 300s)",
                    )
                })
                .transpose()?
                .unwrap_or(MIN_ACCT_INTERVAL);
            Some(AccountingResolved {
                pool,
                nas_identifier: acct.nas_identifier,
                default_interval,
                min_interval,
            })
        }
    };
    let mut vpns = super::compile::VpnInstances::new();
    for (name, id) in section.vpns {
        let vprn = u32::try_from(*id.get_ref())
            .ok()
            .filter(|&id| id >= 1)
            .ok_or_else(|| {
                source.error_at(
                    id.span(),
                    format!("VPN {name:?}: expected a VPRN service id from 1 to 4294967295"),
                )
            })?;
        // A VPRN may come later (`brasa service apply`), but a static service of another kind
        // under that id would take the VPN's subscribers out of enforcement without a word.
        if let Some(kind) = static_kinds
            .get(&vprn)
            .filter(|&&kind| kind != ServiceKind::Vprn)
        {
            return Err(source.error_at(
                id.span(),
                format!(
                    "VPN {name:?}: service {vprn} is a static {}, expected the id of a VPRN",
                    kind.keyword()
                ),
            ));
        }
        vpns.insert(name, vprn);
    }
    Ok(Some(SubscribersResolved {
        endpoints,
        ep_id: section.ep_id.into_inner(),
        domain: section.domain.map(Spanned::into_inner).unwrap_or_default(),
        defaults: PccDefaults {
            unknown: section.unknown.into(),
            no_services: section.no_services.into(),
        },
        accounting,
        vpns,
    }))
}

/// `interval` in whole seconds within `range`; else `expected`, at the value.
fn whole_seconds(
    source: &Source,
    interval: &Spanned<ConfigDuration>,
    range: std::ops::RangeInclusive<u32>,
    expected: &str,
) -> Result<u32, ConfigError> {
    let duration = interval.get_ref().0;
    u32::try_from(duration.as_secs())
        .ok()
        .filter(|secs| range.contains(secs) && duration.subsec_nanos() == 0)
        .ok_or_else(|| source.error_at(interval.span(), expected))
}

#[cfg(test)]
mod tests {
    /// The error of loading `text` as `brasa.toml` (`Ok` text when it loads).
    fn load(text: &str) -> Result<String, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("brasa.toml");
        std::fs::write(&path, text).unwrap();
        crate::daemon::config::load(Some(&path))
            .map(|resolved| format!("{:?}", resolved.subscribers))
            .map_err(|err| {
                let text = err.to_string();
                text[text.find("brasa.toml").unwrap_or(0)..].to_string()
            })
    }

    const BASE: &str = "[dataplane]\n[[dataplane.interface]]\nname = \"eth1\"\nencap = \"dot1q\"\n\
                        [dataplane.subscribers]\n";

    #[test]
    fn a_section_with_accounting_resolves_with_its_defaults() {
        let text = format!(
            "[radius]\n[[radius.pool]]\nname = \"acct\"\n[[radius.pool.acct_server]]\n\
             address = \"127.0.0.1:1813\"\nsecret = \"s\"\n{BASE}sm = [\"127.0.0.1:7790\", \"http://[::1]:7790\"]\n\
             ep_id = \"bng1\"\nunknown = \"drop\"\n[dataplane.subscribers.accounting]\n\
             radius_pool = \"acct\"\ninterim_interval = \"15m\"\n"
        );
        let resolved = load(&text).unwrap();
        for part in [
            "\"http://127.0.0.1:7790\"",
            "\"http://[::1]:7790\"",
            "unknown: Drop",
            "no_services: Forward",
            "default_interval: Some(900)",
            "min_interval: 300",
            "nas_identifier: \"brasa\"",
        ] {
            assert!(resolved.contains(part), "{part} in {resolved}");
        }
    }

    #[test]
    fn errors_name_file_line_and_column() {
        for (body, expected) in [
            (
                "sm = []\nep_id = \"a\"\n",
                "brasa.toml:6:6: expected at least one SM gRPC address",
            ),
            (
                "sm = [\"nowhere\"]\nep_id = \"a\"\n",
                "brasa.toml:6:7: \"nowhere\" is not a gRPC address",
            ),
            (
                "sm = [\"127.0.0.1:7790\"]\nep_id = \"\"\n",
                "brasa.toml:7:9: expected a non-empty EP id",
            ),
            (
                "sm = [\"127.0.0.1:7790\"]\nep_id = \"a\"\nunknown = \"reject\"\n",
                "brasa.toml:8:11: unknown variant `reject`, expected `forward` or `drop`",
            ),
            (
                "sm = [\"127.0.0.1:7790\"]\nep_id = \"a\"\n[dataplane.subscribers.accounting]\nradius_pool = \"acct\"\n",
                "brasa.toml:9:15: no [[radius.pool]] named \"acct\": this config has no [[radius.pool]]",
            ),
            (
                "sm = [\"127.0.0.1:7790\"]\nep_id = \"a\"\n[dataplane.subscribers.vpns]\ncorp = 0\n",
                "brasa.toml:9:8: VPN \"corp\": expected a VPRN service id from 1 to 4294967295",
            ),
            (
                "sm = [\"127.0.0.1:7790\"]\nep_id = \"a\"\n[dataplane.subscribers.vpns]\ncorp = \"100\"\n",
                "brasa.toml:9:8: invalid type: string \"100\", expected i64",
            ),
        ] {
            let error = load(&format!("{BASE}{body}")).unwrap_err();
            assert!(error.starts_with(expected), "{error}\nexpected: {expected}");
        }
    }

    #[test]
    fn vpns_name_their_vprn_services() {
        let resolved = load(&format!(
            "{BASE}sm = [\"127.0.0.1:7790\"]\nep_id = \"a\"\n[dataplane.subscribers.vpns]\n\
             corp-a = 100\n\"corp b\" = 4294967295\n"
        ))
        .unwrap();
        assert!(
            resolved.contains("vpns: {\"corp b\": 4294967295, \"corp-a\": 100}"),
            "{resolved}"
        );
    }

    #[test]
    fn a_vpn_may_not_name_a_static_service_of_another_kind() {
        let with_static = |kind: &str| {
            format!(
                "{BASE}sm = [\"127.0.0.1:7790\"]\nep_id = \"a\"\n[dataplane.subscribers.vpns]\n\
                 corp-a = 100\ncorp-b = 300\n[[service.{kind}]]\nid = 100\ncustomer = 1\n"
            )
        };
        let error = load(&with_static("ies")).unwrap_err();
        assert!(
            error.starts_with(
                "brasa.toml:9:10: VPN \"corp-a\": service 100 is a static ies, expected the id of a VPRN"
            ),
            "{error}"
        );
        // A static VPRN, or an id no static service has (a VPRN applied later), is accepted.
        let resolved = load(&with_static("vprn")).unwrap();
        assert!(
            resolved.contains("vpns: {\"corp-a\": 100, \"corp-b\": 300}"),
            "{resolved}"
        );
    }

    #[test]
    fn the_interim_intervals_are_whole_seconds_up_to_180_days() {
        let head = "[radius]\n[[radius.pool]]\nname = \"acct\"\n[[radius.pool.acct_server]]\n\
                    address = \"127.0.0.1:1813\"\nsecret = \"s\"\n";
        let with_key = |key: &str, value: &str| {
            format!(
                "{head}{BASE}sm = [\"127.0.0.1:7790\"]\nep_id = \"a\"\n\
                 [dataplane.subscribers.accounting]\nradius_pool = \"acct\"\n\
                 {key} = \"{value}\"\n"
            )
        };
        let resolved = load(&with_key("interim_interval", "0s")).unwrap();
        assert!(resolved.contains("default_interval: Some(0)"), "{resolved}");
        let resolved = load(&with_key("interim_interval", "180d")).unwrap();
        assert!(
            resolved.contains("default_interval: Some(15552000)"),
            "{resolved}"
        );
        for wrong in ["1500ms", "181d"] {
            let error = load(&with_key("interim_interval", wrong)).unwrap_err();
            assert!(
                error.starts_with(
                    "brasa.toml:16:20: expected whole seconds up to 180 days (0: no Interim-Update)"
                ),
                "{wrong}: {error}"
            );
        }
        let with = |minimum: &str| with_key("min_interim_interval", minimum);
        let resolved = load(&with("2s")).unwrap();
        assert!(resolved.contains("min_interval: 2 "), "{resolved}");
        for wrong in ["0s", "1500ms", "181d"] {
            let error = load(&with(wrong)).unwrap_err();
            assert!(
                error.starts_with(
                    "brasa.toml:16:24: expected whole seconds from 1s to 180 days (SR OS: 300s)"
                ),
                "{wrong}: {error}"
            );
        }
    }

    #[test]
    fn brasa_dataplane_refuses_the_section() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dp.toml");
        std::fs::write(
            &path,
            "[dataplane]\n[[dataplane.interface]]\nname = \"eth1\"\n[dataplane.subscribers]\n\
             sm = [\"127.0.0.1:7790\"]\nep_id = \"a\"\n",
        )
        .unwrap();
        let error = crate::daemon::dataplane::load(&path)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("dp.toml:4:1:"), "{error}");
        assert!(
            error.contains("`brasa dataplane` runs CAFE only"),
            "{error}"
        );
    }
}
