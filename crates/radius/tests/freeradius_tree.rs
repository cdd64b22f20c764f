//! The real FreeRADIUS 3.2 dictionary tree loads completely.

use std::path::Path;

use brasa_radius::{AttrId, Dictionary, Encrypt, ValueType};

const TREE: &str = "/usr/share/freeradius/dictionary";

#[test]
fn loads_the_system_freeradius_tree() {
    assert!(
        Path::new(TREE).exists(),
        "{TREE} missing: install freeradius-common (apt-get install -y freeradius)"
    );
    let dict = Dictionary::load_file(Path::new(TREE)).unwrap();
    let user_password = dict.attribute("user-password").unwrap();
    assert_eq!(user_password.id, AttrId::Standard(2));
    assert_eq!(user_password.encrypt, Encrypt::UserPassword);
    let tunnel_password = dict.attribute("Tunnel-Password").unwrap();
    assert!(tunnel_password.has_tag);
    assert_eq!(tunnel_password.encrypt, Encrypt::TunnelPassword);
    let subsc = dict.attribute("Alc-Subsc-ID-Str").unwrap();
    assert_eq!(
        subsc.id,
        AttrId::Vendor {
            vendor: 6527,
            typ: 11
        }
    );
    assert_eq!(dict.vendor("USR").unwrap().format.type_size, 4);
    assert!(dict.vendor("WiMAX").unwrap().format.continuation);
    let frag = dict.attribute("Frag-Status").unwrap();
    assert_eq!(frag.id, AttrId::Extended { base: 241, typ: 1 });
    assert_eq!(dict.value_by_name(frag, "Fragmentation-Supported"), Some(1));
    let service_type = dict.attribute("Service-Type").unwrap();
    assert_eq!(dict.value_name(service_type, 2), Some("Framed-User"));
    assert_eq!(
        dict.attribute("EAP-Message").map(|d| (d.kind, d.concat)),
        Some((ValueType::Octets, true))
    );
    // FreeRADIUS's own EVS attributes under `BEGIN-VENDOR FreeRADIUS format=Extended-Vendor-Specific-5`.
    assert!(matches!(
        dict.attribute("FreeRADIUS-802.1X-Anonce").map(|d| &d.id),
        Some(AttrId::ExtendedVendor {
            base: 245,
            vendor: 11344,
            typ: 1
        })
    ));
    // Nested TLV numbers inside a vendor.
    assert!(matches!(
        dict.attribute("WiMAX-Release").map(|d| &d.id),
        Some(AttrId::Tlv { .. })
    ));
    assert!(dict.attributes().count() > 5000);
}
