//! A RADIUS datagram read as a CoA-Request or Disconnect-Request against a sapCreated data
//! trigger owning two services: keys and Alc-Dyn-Serv-* attributes decided per Table 5, and
//! the answer built; a decision or a refusal, never a panic.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use brasa_dynsvc::coa::{self, CoaOutcome, RequestKind};
use brasa_dynsvc::{
    Authentication, CaptureSapConfig, DynService, DynServicesPolicy, TriggerFrame, Triggers,
    TriggersConfig,
};
use brasa_radius::Message;
use brasa_services::{MacAddr, PortMap, SapId};
use libfuzzer_sys::fuzz_target;

fn triggers() -> Option<Triggers> {
    let now = Instant::now();
    let mut triggers = Triggers::new(TriggersConfig::default());
    triggers.set_policy(
        "default",
        DynServicesPolicy {
            authentication: Some(Authentication::Local { db: "db".into() }),
        },
    );
    let capture = SapId::parse("eth1:1214.*").ok()?;
    triggers
        .add_capture_sap(
            capture.clone(),
            CaptureSapConfig {
                policy: Some("default".into()),
                host_lockout_policy: None,
            },
        )
        .ok()?;
    let frame = TriggerFrame {
        capture_sap: capture,
        outer_vid: 1214,
        inner_vid: 101,
        mac: MacAddr([0, 0x51, 0, 0xdd, 1, 1]),
        ip: None,
        len: 64,
    };
    triggers.handle_frame(&frame, now);
    let trigger = SapId::parse("eth1:1214.101").ok()?;
    let other = SapId::parse("eth1:1214.102").ok()?;
    let service = |sap: &SapId| DynService {
        tag: 0,
        sap: sap.clone(),
        script_params: Some("p={}".into()),
        action: None,
        policy: None,
        accounting: Default::default(),
    };
    triggers
        .handle_authentication(&trigger, Ok(vec![service(&trigger), service(&other)]), now)
        .ok()?
        .ok()?;
    triggers.service_created(&trigger, trigger.clone()).ok()?;
    triggers.service_created(&trigger, other).ok()?;
    Some(triggers)
}

static TRIGGERS: OnceLock<Option<Triggers>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some(triggers) = TRIGGERS.get_or_init(triggers) else {
        return;
    };
    let Ok(request) = Message::decode(data) else {
        return;
    };
    let kind = RequestKind::of(request.code).unwrap_or(RequestKind::Coa);
    match coa::decide(kind, &request, triggers, &PortMap::new()) {
        Ok(decision) => {
            let _ = decision.answer(&request, CoaOutcome::ScriptFailed);
        }
        Err(refusal) => {
            let _ = refusal.answer(&request);
        }
    }
});
