//! Ethernet II and 802.1Q/QinQ views: checked constructors and accessors never panic; what
//! parses re-emits to the same bytes.
#![no_main]
use brasa_dataplane::wire::{EtherType, EthernetFrame, EthernetRepr, VlanHeader, VlanRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = EthernetFrame::new_checked(data) else {
        return;
    };
    let repr = EthernetRepr::parse(&frame).expect("checked frame parses");
    let mut out = [0u8; 14];
    repr.emit(&mut EthernetFrame::new_unchecked(&mut out[..]));
    assert_eq!(&out[..], &data[..14]);
    let mut ethertype = frame.ethertype();
    let mut rest = frame.payload();
    while ethertype == EtherType::VLAN || ethertype == EtherType::QINQ {
        let Ok(tag) = VlanHeader::new_checked(rest) else {
            return;
        };
        let repr = VlanRepr::parse(&tag).expect("checked tag parses");
        let mut out = [0u8; 4];
        repr.emit(&mut VlanHeader::new_unchecked(&mut out[..]));
        assert_eq!(&out[..], &rest[..4]);
        ethertype = tag.inner_ethertype();
        rest = &rest[4..];
    }
});
