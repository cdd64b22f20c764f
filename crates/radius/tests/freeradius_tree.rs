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

#[test]
fn builtin_plus_system_tree_keeps_the_nokia_additions() {
    let mut dict = Dictionary::builtin();
    dict.merge_file(Path::new(TREE)).unwrap();
    // FreeRADIUS lacks these; merging its tree must not lose them.
    for (name, typ) in [
        ("Alc-Sub-Serv-Activate", 151),
        ("Alc-Dyn-Serv-Script-Action", 166),
    ] {
        let def = dict.attribute(name).unwrap();
        assert_eq!(def.id, AttrId::Vendor { vendor: 6527, typ });
        assert!(def.has_tag);
        assert_eq!(dict.attribute_by_id(&def.id).unwrap().name, name);
    }
    // And everything FreeRADIUS defines is there too.
    assert!(dict.attribute("WiMAX-Capability").is_some());
    assert!(dict.attribute("Cisco-AVPair").is_some());
}

#[test]
fn missing_include_names_the_including_line() {
    let dir = std::env::temp_dir().join(format!("brasa-dict-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let top = dir.join("dictionary");
    std::fs::write(
        &top,
        "ATTRIBUTE A 1 string\n$INCLUDE- dictionary.optional\n$INCLUDE dictionary.missing\n",
    )
    .unwrap();
    let err = Dictionary::load_file(&top).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        err.starts_with(&format!("{}:3: $INCLUDE ", top.display())),
        "{err}"
    );
    assert!(err.contains("dictionary.missing"), "{err}");
}
