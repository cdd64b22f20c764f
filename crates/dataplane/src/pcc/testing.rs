//! The PCC stage's harness: the one pipeline its unit tests, its fuzz target
//! (`fuzz/fuzz_targets/pcc_frames.rs`) and its benchmark (`examples/pcc_bench.rs`) run it in,
//! so that what the fuzzer checks and what the benchmark measures is the pipeline the tests
//! describe. The running data plane builds its pipelines with
//! [`crate::stages::subscriber_stages`], not with this.

use crate::pipeline::{IpHandoff, LinkKind, Pipeline, Port, Stage};
use crate::stages::{ClassifyStage, IpHandoffStage};
use crate::wire::MacAddr;

/// The MAC address of the harness's one port: IP frames sent to it are the host's, and so
/// pass `classify` to the PCC stage.
pub const PORT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

/// `classify → pcc → ip-handoff` on one Ethernet port `p0` ([`PORT_MAC`]) whose IP packets
/// are left to the kernel's copy, so that a packet the PCC stage forwards ends as
/// [`crate::pipeline::Verdict::Ignore`]. Without `pcc`, `classify → ip-handoff`: the
/// benchmark's baseline.
pub fn pipeline(pcc: Option<Box<dyn Stage>>) -> Pipeline {
    let port = Port {
        name: "p0".into(),
        link: LinkKind::Ethernet,
        mac: PORT_MAC,
        ip_handoff: IpHandoff::Kernel,
    };
    let mut stages: Vec<Box<dyn Stage>> = vec![Box::new(ClassifyStage)];
    stages.extend(pcc);
    stages.push(Box::new(IpHandoffStage));
    Pipeline::new(vec![port], stages)
}
