//! `alc.sub_svc`: the guide's example script, the API's errors, and services built from the
//! Alc-Sub-Serv-* parameters of the packet.

mod common;

use std::path::Path;

use brasa_radius::{Code, Dictionary, Message};
use brasa_script::{FailureKind, Outcome, SubSvcReport};
use brasa_subsvc::*;
use common::{host, options, script};

fn run(name: &str, source: &str, message: &mut Message) -> SubSvcReport {
    let dir = tempfile::tempdir().unwrap();
    let script = script(dir.path(), name, source);
    host().run_sub_svc(&script, message, &Dictionary::builtin(), None, &options())
}

fn failure(report: &SubSvcReport) -> (FailureKind, &str) {
    match &report.run.outcome {
        Outcome::Failed(f) => (f.kind, f.message.as_str()),
        Outcome::Ok => panic!("the run succeeded: {:?}", report.services),
    }
}

fn accept() -> Message {
    Message::new(Code::AccessAccept, 1)
}

#[test]
fn the_guides_example_builds_what_it_says() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python/sub_svc/pcc_rules.py");
    let script = brasa_script::Script::load("pcc_rules", path).unwrap();
    let mut message = accept();
    let report = host().run_sub_svc(
        &script,
        &mut message,
        &Dictionary::builtin(),
        None,
        &options(),
    );
    assert_eq!(report.run.outcome, Outcome::Ok);
    let [ServiceRequest::Add(service)] = &report.services[..] else {
        panic!("one service added: {:?}", report.services);
    };
    assert_eq!(service.name, "subsvc-pccrule-1");
    assert_eq!(service.service_type.as_deref(), Some("pccrule"));
    assert_eq!(service.type_conflict_action, TypeConflictAction::None);
    assert_eq!(service.acct_stats_type, AcctStatsType::VolumeTime);
    assert_eq!(service.acct_interval, Some(3600));
    let [ingress, egress] = &service.rules[..] else {
        panic!("two rules: {:?}", service.rules);
    };
    assert_eq!(
        (ingress.name.as_str(), ingress.direction, ingress.precedence),
        ("pcc-rule-1-i", Direction::Ingress, Some(10))
    );
    assert_eq!(
        ingress.flows,
        [Flow {
            dst_ip: Some("10.1.1.0/24".parse().unwrap()),
            ..Flow::default()
        }]
    );
    assert_eq!(
        ingress.actions.rate_limit,
        Some(RateLimit {
            pir_kbps: 1000,
            cir_kbps: None
        })
    );
    assert_eq!(
        (egress.name.as_str(), egress.direction, egress.precedence),
        ("pcc-rule-1-e", Direction::Egress, Some(10))
    );
    assert_eq!(
        egress.flows,
        [Flow {
            src_ip: Some("10.1.1.0/24".parse().unwrap()),
            ..Flow::default()
        }]
    );
    assert_eq!(
        egress.actions.rate_limit,
        Some(RateLimit {
            pir_kbps: 5000,
            cir_kbps: None
        })
    );
    // The script's second qos_action_account goes to rule_i, as written: only the ingress
    // rule is accounted, so the counter rule sums its policer alone.
    assert!(ingress.actions.account);
    assert!(!egress.actions.account);
    assert_eq!(CounterRule::of(service), CounterRule::AccountedRules);
    // Nothing of the packet was touched.
    assert_eq!(message, accept());
}

#[test]
fn services_come_from_the_alc_sub_serv_parameters_of_the_packet() {
    let dict = Dictionary::builtin();
    let mut message = Message::new(Code::CoaRequest, 3);
    for pair in dict
        .parse_pairs(
            "Alc-Sub-Serv-Activate:1 = \"video;2000\", Alc-Sub-Serv-Deactivate:2 = \"old\", \
             Alc-Sub-Serv-Acct-Stats-Type:1 = time",
        )
        .unwrap()
    {
        dict.add_pair(&mut message, &pair, b"s", &[0; 16]).unwrap();
    }
    let source = r#"
from alc import radius, sub_svc
for tag, op, value in [(v[0], sub_svc.operation_add, v[1:]) for v in radius.attributes.getVSATuple(6527, 151)] + \
        [(v[0], sub_svc.operation_delete, v[1:]) for v in radius.attributes.getVSATuple(6527, 152)]:
    name = value.decode()
    service = []
    sub_svc.add_to_service(service, sub_svc.operation, op)
    sub_svc.add_to_service(service, sub_svc.name, name)
    if op == sub_svc.operation_add:
        kind, pir = name.split(';')
        rule = []
        flow = []
        sub_svc.flow.add_to_flow(flow, sub_svc.flow.protocol, 'udp')
        sub_svc.flow.add_to_flow(flow, sub_svc.flow.dst_port_range, (5000, 5100))
        sub_svc.flow.add_to_flow(flow, sub_svc.flow.dst_ip, '2001:db8::/32')
        sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.name, kind)
        sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.direction, sub_svc.pccrule.direction_egress)
        sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.flow, flow)
        sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.qos_action_rate_limit_pir, int(pir))
        policer = []
        sub_svc.pccrule.policer.add_to_policer(policer, sub_svc.pccrule.policer.mbs, 'default')
        sub_svc.pccrule.policer.add_to_policer(policer, sub_svc.pccrule.policer.parent_arbiter, 'root')
        sub_svc.pccrule.policer.add_to_policer(policer, sub_svc.pccrule.policer.parent_level, 2)
        sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.policer, policer)
        sub_svc.add_to_service(service, sub_svc.pccrule, rule)
        sub_svc.add_to_service(service, sub_svc.acct_stats_type, sub_svc.acct_stats_type_time)
    sub_svc.commit_service(service)
"#;
    let report = run("from_vsas", source, &mut message);
    assert_eq!(report.run.outcome, Outcome::Ok, "{}", report.run.output);
    assert_eq!(report.services.len(), 2);
    let ServiceRequest::Add(video) = &report.services[0] else {
        panic!("{:?}", report.services);
    };
    assert_eq!(video.name, "video;2000");
    assert_eq!(video.acct_stats_type, AcctStatsType::Time);
    let rule = &video.rules[0];
    assert_eq!(
        rule.flows[0],
        Flow {
            dst_ip: Some("2001:db8::/32".parse().unwrap()),
            protocol: Some(17),
            dst_port: Some(PortRange {
                first: 5000,
                last: 5100
            }),
            ..Flow::default()
        }
    );
    let policer = rule.policer.as_ref().unwrap();
    assert_eq!(policer.mbs, Some(BurstSize::Default));
    assert_eq!(policer.parent_arbiter.as_deref(), Some("root"));
    assert_eq!(policer.parent_level, Some(2));
    assert_eq!(
        report.services[1],
        ServiceRequest::Delete { name: "old".into() }
    );
}

const HEAD: &str = "from alc import sub_svc\n\
service = []\n\
sub_svc.add_to_service(service, sub_svc.operation, sub_svc.operation_add)\n\
sub_svc.add_to_service(service, sub_svc.name, 's')\n\
rule = []\n\
flow = []\n\
sub_svc.flow.add_to_flow(flow, sub_svc.flow.dst_ip, '10.0.0.0/8')\n\
sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.name, 'r')\n\
sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.direction, sub_svc.pccrule.direction_ingress)\n\
sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.flow, flow)\n";

fn invalid(tail: &str) -> String {
    let source = format!("{HEAD}{tail}\nsub_svc.add_to_service(service, sub_svc.pccrule, rule)\nsub_svc.commit_service(service)\n");
    let report = run("invalid", &source, &mut accept());
    let (kind, message) = failure(&report);
    assert_eq!(kind, FailureKind::Exception);
    assert!(report.services.is_empty());
    message.to_string()
}

#[test]
fn invalid_services_raise_invalid_service_naming_what_is_wrong() {
    assert_eq!(
        invalid("sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.qos_action_rate_limit_pir, 'fast')"),
        "alc.sub_svc.InvalidService: sub_svc.commit_service: PCC rule \"r\": qos_action_rate_limit_pir = 'fast': expected kb/s, an integer 0..=4294967295"
    );
    assert_eq!(
        invalid("sub_svc.flow.add_to_flow(flow, sub_svc.flow.src_ip, '2001:db8::/32')"),
        "alc.sub_svc.InvalidService: sub_svc.commit_service: PCC rule \"r\": flow 1: source 2001:db8::/32 and destination 10.0.0.0/8 are of different address families"
    );
    assert_eq!(
        invalid("sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.precedence, 1)\nsub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.precedence, 2)"),
        "alc.sub_svc.InvalidService: sub_svc.commit_service: PCC rule 1: precedence is given twice, as 1 and as 2"
    );
    assert_eq!(
        invalid("sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.qos_action_rate_limit_pir, 100)\nsub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.qos_action_rate_limit_cir, 200)"),
        "alc.sub_svc.InvalidService: sub_svc.commit_service: PCC rule \"r\": rate-limit CIR 200 kb/s is above the PIR 100 kb/s"
    );
    let policer = "p = []\nsub_svc.pccrule.policer.add_to_policer(p, sub_svc.pccrule.policer.cbs, 1000)\nsub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.policer, p)";
    assert_eq!(
        invalid(policer),
        "alc.sub_svc.InvalidService: sub_svc.commit_service: PCC rule \"r\": policer parameters need a rate-limit or account action (only those create a dynamic policer)"
    );
    assert_eq!(
        invalid(&format!("{policer}\nsub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.qos_action_account, True)\nsub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.policer, [])")),
        "alc.sub_svc.InvalidService: sub_svc.commit_service: PCC rule 1: policer is given twice, as [(305, 1000)] and as []"
    );
}

#[test]
fn api_misuse_is_reported_where_it_happens() {
    let report = run(
        "bad_tlv",
        "from alc import sub_svc\nsub_svc.add_to_service([], sub_svc.pccrule.direction, 1)\n",
        &mut accept(),
    );
    assert_eq!(
        failure(&report).1,
        "ValueError: sub_svc.add_to_service: 103 is not a service TLV"
    );
    let report = run(
        "not_a_list",
        "from alc import sub_svc\nsub_svc.flow.add_to_flow((), sub_svc.flow.dscp, 'ef')\n",
        &mut accept(),
    );
    assert_eq!(
        failure(&report).1,
        "TypeError: sub_svc.add_to_flow: the flow must be a list, not tuple"
    );
    let report = run(
        "no_operation",
        "from alc import sub_svc\nsub_svc.commit_service([(sub_svc.name, 'x')])\n",
        &mut accept(),
    );
    assert_eq!(
        failure(&report).1,
        "alc.sub_svc.InvalidService: sub_svc.commit_service: operation is missing"
    );
    // A script may catch the error and commit something else.
    let report = run(
        "caught",
        "from alc import sub_svc\ntry:\n    sub_svc.commit_service([(sub_svc.name, '')])\nexcept sub_svc.InvalidService as e:\n    print(e)\n    sub_svc.commit_service([(sub_svc.operation, sub_svc.operation_delete), (sub_svc.name, 'x')])\n",
        &mut accept(),
    );
    assert_eq!(report.run.outcome, Outcome::Ok);
    assert_eq!(
        report.services,
        [ServiceRequest::Delete { name: "x".into() }]
    );
}

#[test]
fn only_a_subscriber_services_run_commits() {
    let dir = tempfile::tempdir().unwrap();
    let script = script(
        dir.path(),
        "plain",
        "from alc import sub_svc\nsub_svc.commit_service([(sub_svc.operation, sub_svc.operation_delete), (sub_svc.name, 'x')])\n",
    );
    let report = host().run(
        &script,
        &mut accept(),
        &Dictionary::builtin(),
        None,
        &options(),
    );
    let Outcome::Failed(failure) = report.outcome else {
        panic!("a packet run committed a service");
    };
    assert_eq!(
        failure.message,
        "RuntimeError: alc.sub_svc.commit_service: only a subscriber-services script run commits services"
    );
}

#[test]
fn a_failed_run_commits_nothing() {
    let report = run(
        "fails_after_commit",
        "from alc import sub_svc\nsub_svc.commit_service([(sub_svc.operation, sub_svc.operation_delete), (sub_svc.name, 'x')])\nraise KeyError('late')\n",
        &mut accept(),
    );
    assert_eq!(failure(&report).0, FailureKind::Exception);
    assert!(report.services.is_empty());
}

/// What the daemon does with a CoA-Request about subscriber services: run the script on
/// it, apply what it committed to the subscriber's services all or nothing, and answer.
fn handle_coa(
    script: &brasa_script::Script,
    request: &mut Message,
    services: &mut SubscriberServices,
) -> Message {
    let report = host().run_sub_svc(script, request, &Dictionary::builtin(), None, &options());
    let outcome = match &report.run.outcome {
        Outcome::Failed(f) => Err(CoaRefusal::Script(f.message.clone())),
        Outcome::Ok => services
            .apply_all(report.services)
            .map(drop)
            .map_err(|(_, e)| CoaRefusal::Service(e)),
    };
    match outcome {
        Ok(()) => brasa_radius::coa::answer(request, None).unwrap(),
        Err(refusal) => refusal.answer(request).unwrap(),
    }
}

#[test]
fn a_coa_activating_an_invalid_rule_is_naked_and_changes_nothing() {
    use brasa_radius::attr::ERROR_CAUSE;
    use brasa_radius::ErrorCause;

    let dir = tempfile::tempdir().unwrap();
    // The PIR comes from the request: "rate;<pir>;<cir>".
    let script = script(
        dir.path(),
        "coa",
        r#"
from alc import radius, sub_svc
for value in radius.attributes.getVSATuple(6527, 151):
    name = value[1:].decode()
    _, pir, cir = name.split(';')
    flow = []
    sub_svc.flow.add_to_flow(flow, sub_svc.flow.dst_ip, '10.1.1.0/24')
    rule = []
    sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.name, 'up-' + name)
    sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.direction, sub_svc.pccrule.direction_ingress)
    sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.flow, flow)
    sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.qos_action_rate_limit_pir, int(pir))
    sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.qos_action_rate_limit_cir, int(cir))
    service = []
    sub_svc.add_to_service(service, sub_svc.operation, sub_svc.operation_add)
    sub_svc.add_to_service(service, sub_svc.name, name)
    sub_svc.add_to_service(service, sub_svc.type, 'rate')
    sub_svc.add_to_service(service, sub_svc.type_conflict_action, sub_svc.type_conflict_action_keep_new)
    sub_svc.add_to_service(service, sub_svc.pccrule, rule)
    sub_svc.commit_service(service)
"#,
    );
    let coa = |activate: &str| {
        let dict = Dictionary::builtin();
        let mut request = Message::new(Code::CoaRequest, 5);
        for pair in dict
            .parse_pairs(&format!("Alc-Sub-Serv-Activate:1 = \"{activate}\""))
            .unwrap()
        {
            dict.add_pair(&mut request, &pair, b"s", &[0; 16]).unwrap();
        }
        request
    };
    let mut services = SubscriberServices::new();
    let ack = handle_coa(&script, &mut coa("rate;1000;500"), &mut services);
    assert_eq!(ack.code, Code::CoaAck);
    assert_eq!(
        services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["rate;1000;500"]
    );
    let before = services.clone();
    // CIR above PIR: the script's commit raises, the run fails, the CoA is NAKed.
    let nak = handle_coa(&script, &mut coa("rate;1000;2000"), &mut services);
    assert_eq!(nak.code, Code::CoaNak);
    assert_eq!(
        ErrorCause::from_value(nak.get(ERROR_CAUSE).unwrap()),
        Some(ErrorCause::InvalidRequest)
    );
    assert_eq!(services, before);
    // A valid one of the same type replaces the first (keep-new).
    let ack = handle_coa(&script, &mut coa("rate;5000;0"), &mut services);
    assert_eq!(ack.code, Code::CoaAck);
    assert_eq!(
        services.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["rate;5000;0"]
    );
}
