//! The text form end to end: SR OS snippets as dynamic-services scripts write them, parse errors
//! with line:col, transactions that refuse bad batches and leave the running state untouched.

mod common;

use brasa_services::cli::{self, ParseErrorKind};
use brasa_services::model::*;
use brasa_services::{Delta, Edit, Origin, SapId, SapOp, ServiceConfig, ValidationError};
use common::{apply, env, port_map, refuse};

const POLICIES: &str = r#"
configure
    filter
        ip-filter 10 create
            description "web only"
            default-action drop
            entry 10 create
                match protocol tcp
                    dst-ip 192.0.2.0/24
                    dst-port range 80 443
                    dscp af41
                exit
                action forward
            exit
        exit
        mac-filter 20 create
            type vid
            default-action forward
            entry 10 create
                match frame-type ethernet_II
                    outer-tag 20 4095
                exit
                action drop
            exit
        exit
    exit
    qos
        sap-ingress 10 create
            policer 1 create
                rate 10000 cir 2000
                mbs 64 kilobytes
                cbs 16000 bytes
                stat-mode offered-profile-cir
                packet-byte-offset subtract 4
            exit
        exit
    exit
exit all
"#;

#[test]
fn a_dynamic_services_epipe_snippet_creates_and_tears_down() {
    let mut config = ServiceConfig::new();
    apply(&mut config, POLICIES);
    // The setup snippet of a typical dynamic-services script, SR OS port names and all.
    let setup = r#"
configure service epipe 1000 customer 1 create
    description "dynsvc epipe"
    sap 1/1/4:1214.101 create
        ingress qos 10 filter ip 10 exit
        ingress
            policer-override
                policer 1 create
                    rate 5000 cir 1000
                exit
            exit
        exit
    exit
    sap 1/1/2:300 create
    exit
    no shutdown
exit all
"#;
    let changes = cli::parse(setup, &port_map()).unwrap();
    assert_eq!(changes[0].origin, Origin::Text { line: 2, col: 19 });
    let txn = config.prepare(&changes, &env()).unwrap();
    let sap = SapId::parse("eth3:1214.101").unwrap();
    assert!(txn.diff().saps.contains(&(sap.clone(), Delta::Added)));
    assert_eq!(txn.diff().services, vec![(1000, Delta::Added)]);
    assert!(txn.kernel_plan().is_empty(), "L2 services need no kernel");
    config.commit(txn).unwrap();
    assert!(config.is_operational(1000));
    let stored = config.sap(&sap).unwrap();
    assert_eq!(stored.ingress.qos, Some(10));
    assert_eq!(stored.ingress.ip_filter, Some(10));
    let (policer, effective) = config.sap_policer(stored, Direction::Ingress).unwrap();
    assert_eq!(policer, 1);
    assert_eq!(effective.rate.pir, Rate::Kbps(5000));
    assert_eq!(effective.mbs, 64 * 1024);
    assert_eq!(effective.packet_byte_offset, -4);

    // The filter is in use: deleting it is refused and changes nothing.
    let error = refuse(&config, "configure filter no ip-filter 10");
    assert!(matches!(
        error.error,
        ValidationError::InUse { users: 1, .. }
    ));

    // Teardown as scripts write it.
    let teardown = r#"
configure service epipe 1000
    no sap 1/1/4:1214.101
    no sap 1/1/2:300
    shutdown
exit
no epipe 1000
exit all
configure filter no ip-filter 10
"#;
    let before = config.clone();
    let txn = config
        .prepare(&cli::parse(teardown, &port_map()).unwrap(), &env())
        .unwrap();
    assert_eq!(txn.diff().services, vec![(1000, Delta::Removed)]);
    assert_eq!(txn.diff().saps.len(), 2);
    assert!(txn.diff().filters.contains(&(
        FilterRef {
            kind: FilterKind::Ip,
            id: 10
        },
        Delta::Removed
    )));
    assert_eq!(config, before, "prepare leaves the running state alone");
    config.commit(txn).unwrap();
    assert!(config.service(1000).is_none());
    assert_eq!(config.sap_count(), 0);
}

#[test]
fn a_capture_sap_takes_only_a_vid_filter_and_keeps_its_dynamic_services_policy() {
    let mut config = ServiceConfig::new();
    apply(&mut config, POLICIES);
    apply(
        &mut config,
        r#"
configure service
        vpls 10 customer 1 create
            sap 1/1/4:1214.* capture-sap create
                description "Dynamic Services Data Trigger capture-sap"
                ingress
                    filter mac 20
                exit
                dynamic-services
                    dynamic-services-policy "dyn-svc-1"
                    no shutdown
                exit
                no shutdown
            exit
            no shutdown
        exit
"#,
    );
    let sap = config.sap(&SapId::parse("eth3:1214.*").unwrap()).unwrap();
    assert!(sap.capture);
    assert_eq!(sap.dynamic_services.policy.as_deref(), Some("dyn-svc-1"));
    assert_eq!(sap.dynamic_services.admin, AdminState::Up);
    let error = refuse(
        &config,
        "configure service vpls 10 sap eth3:1214.* ingress filter ip 10",
    );
    assert!(
        matches!(error.error, ValidationError::CaptureSap { .. }),
        "{error}"
    );
    let error = refuse(
        &config,
        "configure service vpls 10 sap eth3:1214.* ingress qos 10",
    );
    assert!(matches!(error.error, ValidationError::CaptureSap { .. }));
    let error = refuse(
        &config,
        "configure service vpls 10 sap eth3:7.7 capture-sap create",
    );
    assert!(matches!(error.error, ValidationError::CaptureSap { .. }));
}

#[test]
fn saps_are_unique_across_services_and_fit_their_ports() {
    let mut config = ServiceConfig::new();
    apply(
        &mut config,
        "configure service vpls 1 customer 1 create sap eth1:100 create exit all",
    );
    let error = refuse(
        &config,
        "configure service epipe 2 customer 1 create sap eth1:100 create",
    );
    assert_eq!(
        error.error,
        ValidationError::SapExists {
            sap: SapId::parse("eth1:100").unwrap(),
            service: 1
        }
    );
    assert_eq!(error.origin, Origin::Text { line: 1, col: 45 });
    for bad in ["eth1:1.2", "eth2:5", "eth0:5", "eth9:5"] {
        let error = refuse(
            &config,
            &format!("configure service vpls 1 sap {bad} create"),
        );
        assert!(
            matches!(error.error, ValidationError::SapPort(_)),
            "{bad}: {error}"
        );
    }
    // An Epipe holds two endpoints at most.
    let error = refuse(
        &config,
        "configure service epipe 3 customer 1 create
            sap eth1:1 create exit
            sap eth1:2 create exit
            gre-tunnel local 192.0.2.1 remote 198.51.100.1 key 7",
    );
    assert_eq!(error.error, ValidationError::TooManyEndpoints(3));
    assert_eq!(error.origin, Origin::Text { line: 4, col: 13 });
}

#[test]
fn a_gre_tunnel_belongs_to_one_epipe_and_moves_when_released_first() {
    let mut config = ServiceConfig::new();
    apply(
        &mut config,
        "configure service
            epipe 1 customer 1 create exit
            epipe 2 customer 1 create
                gre-tunnel local 192.0.2.1 remote 198.51.100.1 key 7
            exit all",
    );
    // The far end tells services apart by (local, remote, key) alone.
    let error = refuse(
        &config,
        "configure service epipe 1 gre-tunnel local 192.0.2.1 remote 198.51.100.1 key 7",
    );
    assert_eq!(
        error.error,
        ValidationError::GreTunnelInUse {
            tunnel: GreTunnel {
                local: "192.0.2.1".parse().unwrap(),
                remote: "198.51.100.1".parse().unwrap(),
                key: Some(7),
            },
            service: 2,
        }
    );
    assert_eq!(
        error.error.to_string(),
        "epipe 2 already uses gre-tunnel local 192.0.2.1 remote 198.51.100.1 key 7"
    );
    assert_eq!(error.origin, Origin::Text { line: 1, col: 27 });
    // Another key is another tunnel; setting its own tunnel again is no conflict.
    for ok in [
        "configure service epipe 1 gre-tunnel local 192.0.2.1 remote 198.51.100.1 key 8",
        "configure service epipe 2 gre-tunnel local 192.0.2.1 remote 198.51.100.1 key 7",
    ] {
        config
            .prepare(&cli::parse(ok, &port_map()).unwrap(), &env())
            .unwrap();
    }
    // Released and taken in one transaction: the order of the commands decides.
    apply(
        &mut config,
        "configure service
            epipe 2 no gre-tunnel exit
            epipe 1 gre-tunnel local 192.0.2.1 remote 198.51.100.1 key 7 exit
            epipe 2 gre-tunnel local 192.0.2.1 remote 198.51.100.2 exit all",
    );
    // A deleted Epipe releases its tunnel.
    apply(
        &mut config,
        "configure service
            epipe 1 shutdown exit
            no epipe 1
            epipe 3 customer 1 create gre-tunnel local 192.0.2.1 remote 198.51.100.1 key 7 exit all",
    );
    assert_eq!(
        refuse(
            &config,
            "configure service epipe 4 customer 1 create gre-tunnel local 192.0.2.1 remote 198.51.100.2"
        )
        .error,
        ValidationError::GreTunnelInUse {
            tunnel: GreTunnel {
                local: "192.0.2.1".parse().unwrap(),
                remote: "198.51.100.2".parse().unwrap(),
                key: None,
            },
            service: 2,
        }
    );
}

#[test]
fn a_failed_batch_changes_nothing() {
    let mut config = ServiceConfig::new();
    apply(
        &mut config,
        "configure service vpls 1 customer 1 create exit all",
    );
    let before = config.clone();
    let error = refuse(
        &config,
        "configure service
            vpls 1
                sap eth1:10 create exit
                sap eth1:11 create exit
            exit
            vpls 2 customer 1 create
                sap eth1:10 create",
    );
    assert_eq!(error.origin, Origin::Text { line: 7, col: 17 });
    assert_eq!(config, before);
    assert_eq!(config.sap_count(), 0);
}

#[test]
fn entering_without_create_requires_the_object() {
    let config = ServiceConfig::new();
    let error = refuse(&config, "configure service epipe 5\n");
    assert_eq!(error.error, ValidationError::NoSuchService(5));
    let mut config = ServiceConfig::new();
    apply(&mut config, "configure service epipe 5 customer 2 create");
    apply(&mut config, "configure service epipe 5 description \"x\"");
    let error = refuse(&config, "configure service vpls 5");
    assert!(matches!(error.error, ValidationError::WrongKind { .. }));
    let error = refuse(&config, "configure service epipe 5 customer 3");
    assert!(matches!(error.error, ValidationError::WrongCustomer { .. }));
    let error = refuse(&config, "configure service epipe 5 customer 2 create");
    assert_eq!(error.error, ValidationError::ServiceExists(5));
    apply(&mut config, "configure service epipe 5 no shutdown");
    let error = refuse(&config, "configure service no epipe 5");
    assert_eq!(error.error, ValidationError::ServiceNotShutdown(5));
}

#[test]
fn parse_errors_name_the_context_and_what_was_expected() {
    let map = port_map();
    let error = cli::parse(
        "configure service\n  epipe 1 customer 1 create\n    interface \"x\" create\n",
        &map,
    )
    .unwrap_err();
    assert_eq!((error.line, error.col), (3, 5));
    match &error.kind {
        ParseErrorKind::UnknownCommand {
            context,
            found,
            expected,
        } => {
            assert_eq!(context, "config>service>epipe");
            assert_eq!(found, "interface");
            assert!(expected.contains(&"sap") && expected.contains(&"gre-tunnel"));
        }
        other => panic!("{other:?}"),
    }
    // No implicit popping: `vpls` is not a command of the sap context.
    let error = cli::parse(
        "configure service vpls 1 customer 1 create\nsap eth1:1 create\nvpls 2 customer 1 create",
        &map,
    )
    .unwrap_err();
    assert_eq!((error.line, error.col), (3, 1));
    assert!(
        error.to_string().contains("config>service>vpls>sap"),
        "{error}"
    );

    let error = cli::parse("configure service epipe 0 customer 1 create", &map).unwrap_err();
    assert_eq!((error.line, error.col), (1, 25));
    assert!(matches!(error.kind, ParseErrorKind::BadArgument { .. }));
    let error = cli::parse("configure service epipe 1 create", &map).unwrap_err();
    assert!(
        error.to_string().contains("'customer N' before 'create'"),
        "{error}"
    );
    let error = cli::parse("configure service vpls 1 sap 1/1/9:1 create", &map).unwrap_err();
    assert_eq!((error.line, error.col), (1, 30));
    assert!(matches!(error.kind, ParseErrorKind::Sap(_)));
    let error = cli::parse("exit", &map).unwrap_err();
    assert_eq!(error.kind, ParseErrorKind::NothingToExit);
    let error = cli::parse("configure service vpls 1 description \"open", &map).unwrap_err();
    assert_eq!((error.line, error.col), (1, 38));
    let error = cli::parse("configure qos sap-ingress 1 policer 1 rate", &map).unwrap_err();
    assert!(
        matches!(&error.kind, ParseErrorKind::BadArgument { found: None, .. }),
        "{error}"
    );
    assert_eq!(error.col, 43);
}

#[test]
fn comments_quotes_and_exit_all() {
    let changes = cli::parse(
        "# a comment\nconfigure service vpls 9 customer 1 create # trailing\n    description \"a \\\"quoted\\\" # not a comment\"\nexit all\nconfigure service vpls 9 no description",
        &port_map(),
    )
    .unwrap();
    assert_eq!(
        changes.len(),
        4,
        "create, description, enter, no description"
    );
    let mut config = ServiceConfig::new();
    config.apply_changes(&changes, &env()).unwrap();
    assert_eq!(config.service(9).unwrap().description, None);
}

#[test]
fn routed_services_check_addresses_per_vrf_and_next_hops() {
    let mut config = ServiceConfig::new();
    let vprn = |id: u32, sap: &str| {
        format!(
            r#"configure service vprn {id} customer 1 create
                route-distinguisher 65000:{id}
                interface "to-cust" create
                    address 192.0.2.1/24
                    ipv6
                        address 2001:db8::1/64
                    exit
                    sap {sap} create exit
                exit
                static-route-entry 10.0.0.0/8
                    next-hop 192.0.2.2
                    exit
                exit
                static-route-entry 0.0.0.0/0
                    black-hole
                    exit
                exit
                no shutdown
            exit all"#
        )
    };
    apply(&mut config, &vprn(100, "eth1:100"));
    // The same addresses in another VPRN are fine.
    apply(&mut config, &vprn(200, "eth2:7.8"));
    // ... but not twice in one VRF.
    let error = refuse(
        &config,
        r#"configure service vprn 100 interface "second" create address 192.0.2.1/25 sap eth1:101 create"#,
    );
    assert!(
        matches!(error.error, ValidationError::DuplicateAddress { .. }),
        "{error}"
    );
    let error = refuse(
        &config,
        r#"configure service ies 300 customer 1 create interface "x" create address 198.51.100.1/24"#,
    );
    assert!(
        matches!(error.error, ValidationError::InterfaceWithoutSap { .. }),
        "{error}"
    );
    let error = refuse(
        &config,
        r#"configure service vprn 100 static-route-entry 172.16.0.0/12 next-hop 203.0.113.1"#,
    );
    assert!(
        matches!(error.error, ValidationError::NextHopUnreachable { .. }),
        "{error}"
    );
    let error = refuse(
        &config,
        r#"configure service vprn 100 static-route-entry 10.0.0.0/8 next-hop 192.0.2.3"#,
    );
    assert!(
        matches!(error.error, ValidationError::RouteTargetTaken { .. }),
        "{error}"
    );
    let error = refuse(
        &config,
        r#"configure service vprn 100 interface "to-cust" no sap eth1:100 exit no interface "to-cust""#,
    );
    assert!(
        matches!(error.error, ValidationError::NextHopUnreachable { .. }),
        "{error}"
    );
}

#[test]
fn free_ids_skip_what_the_configuration_uses() {
    use brasa_services::alloc::{free_filter_id, free_service_id};
    let mut config = ServiceConfig::new();
    apply(
        &mut config,
        "configure service epipe 100 customer 1 create exit epipe 101 customer 1 create exit vpls 103 customer 1 create exit all
         configure filter ip-filter 1 create exit mac-filter 2 create exit all",
    );
    assert_eq!(free_service_id(&config, 100..=200), Some(102));
    assert_eq!(free_service_id(&config, 100..=101), None);
    assert_eq!(free_service_id(&config, 1..=50), Some(1));
    assert_eq!(free_filter_id(&config, FilterKind::Ip, 1..=10), Some(2));
    assert_eq!(free_filter_id(&config, FilterKind::Mac, 1..=10), Some(1));
    assert_eq!(free_filter_id(&config, FilterKind::Ipv6, 1..=10), Some(1));
}

/// One snippet per object, each a whole `configure service …` block closed the SR OS way: one
/// `exit` per line that opened contexts, so each block ends inside `config`.
const BLOCKS: &str = r#"
configure service
    vpls 1 customer 1 create
        description "per-object blocks"
        no shutdown
    exit
exit
configure service
    vpls 1
        sap 1/1/2:100 create
            ingress qos 10 exit
            no shutdown
        exit
    exit
exit
configure service vpls 1 sap 1/1/2:101 create
    no shutdown
exit
configure service epipe 2 customer 1 create
    sap 1/1/2:200 create exit
    no shutdown
exit
"#;

/// The same services as one block, every level closed by its own `exit`.
const ONE_BLOCK: &str = r#"
configure
    service
        vpls 1 customer 1 create
            description "per-object blocks"
            no shutdown
            sap eth1:100 create
                ingress qos 10 exit
                no shutdown
            exit
            sap eth1:101 create
                no shutdown
            exit
        exit
        epipe 2 customer 1 create
            sap eth1:200 create
            exit
            no shutdown
        exit
    exit
exit
"#;

#[test]
fn configure_starts_a_new_block_wherever_the_last_one_ended() {
    let mut blocks = ServiceConfig::new();
    apply(&mut blocks, POLICIES);
    let before = blocks.clone();
    apply(&mut blocks, BLOCKS);
    let mut single = ServiceConfig::new();
    apply(&mut single, POLICIES);
    apply(&mut single, ONE_BLOCK);
    assert_eq!(blocks, single);
    assert_eq!(blocks.sap_count(), 3);
    assert_ne!(blocks, before);

    // Each block's changes keep their own line:col in the joined text.
    let changes = cli::parse(BLOCKS, &port_map()).unwrap();
    let origins: Vec<_> = changes.iter().map(|c| c.origin.clone()).collect();
    assert_eq!(origins.first(), Some(&Origin::Text { line: 3, col: 5 }));
    assert!(
        origins.contains(&Origin::Text { line: 16, col: 26 }),
        "{origins:?}"
    );
    assert_eq!(origins.last(), Some(&Origin::Text { line: 21, col: 5 }));
}

#[test]
fn configure_after_nested_exits_open_contexts_or_exit_all() {
    let map = port_map();
    // Closed level by level, left open deep inside a SAP, and closed with `exit all`: the next
    // `configure` starts from the top in each case.
    let text = "configure service vpls 1 customer 1 create\n\
                sap eth1:1 create ingress qos 10 exit exit\n\
                exit exit exit\n\
                configure service vpls 1 sap eth1:2 create egress\n\
                configure service vpls 1 sap eth1:3 create exit all\n\
                configure filter\n\
                configure\n\
                configure qos";
    let changes = cli::parse(text, &map).unwrap();
    let saps = changes
        .iter()
        .filter(|c| {
            matches!(
                &c.edit,
                Edit::Sap {
                    op: SapOp::Create { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(saps, 3, "{changes:?}");
    // Nothing but `configure` is accepted at the top level, and `exit` still counts levels.
    let error = cli::parse("configure exit exit", &map).unwrap_err();
    assert_eq!(
        (error.line, error.col, error.kind),
        (1, 16, ParseErrorKind::NothingToExit)
    );
    let error = cli::parse("configure exit service", &map).unwrap_err();
    assert_eq!((error.line, error.col), (1, 16));
    assert!(
        matches!(&error.kind, ParseErrorKind::UnknownCommand { expected, .. } if expected == &["configure"]),
        "{error}"
    );
    // A quoted "configure" is a name, never the command.
    let error = cli::parse(
        "configure service vpls 1 customer 1 create \"configure\"",
        &map,
    )
    .unwrap_err();
    assert_eq!((error.line, error.col), (1, 44));
}

#[test]
fn an_error_in_the_second_block_points_there_and_applies_nothing() {
    let mut config = ServiceConfig::new();
    apply(
        &mut config,
        "configure service vpls 1 customer 1 create exit all",
    );
    let before = config.clone();

    // A parse error: nothing reaches the configuration, and the position is in block two.
    let text = "configure service\n    vpls 1\n        sap eth1:10 create exit\n    exit\nexit\n\
                configure service\n    vpls 1\n        sap eth1:11 create\n            mtu 1500\n";
    let error = cli::parse(text, &port_map()).unwrap_err();
    assert_eq!((error.line, error.col), (9, 13));
    assert!(
        error.to_string().contains("config>service>vpls>sap"),
        "{error}"
    );

    // A validation error in block two refuses block one's changes too.
    let text = "configure service\n    vpls 1\n        sap eth1:10 create exit\n    exit\nexit\n\
                configure service\n    epipe 2 customer 1 create\n        sap eth1:10 create\n";
    let error = refuse(&config, text);
    assert_eq!(error.origin, Origin::Text { line: 8, col: 9 });
    assert_eq!(
        error.error,
        ValidationError::SapExists {
            sap: SapId::parse("eth1:10").unwrap(),
            service: 1
        }
    );
    let changes = cli::parse(text, &port_map()).unwrap();
    assert!(config.apply_changes(&changes, &env()).is_err());
    assert_eq!(config, before);
    assert_eq!(config.sap_count(), 0);
}
