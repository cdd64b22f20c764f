//! Durable store round trip and CSV import/export.

use std::io::Cursor;

use brasa_subscriber::csv::{export, import, CsvError, ImportMode};
use brasa_subscriber::*;

#[path = "support/store_conformance.rs"]
mod store_conformance;

use store_conformance::config;

fn m(s: &str) -> Mapping {
    s.parse().unwrap()
}

#[test]
fn a_reopened_store_restores_every_subscriber_vpn_and_mapping() {
    let dir = tempfile::tempdir().unwrap();
    store_conformance::restores_every_subscriber_vpn_and_mapping(&mut || {
        Box::new(RedbStore::open(dir.path()).unwrap())
    });
}

#[test]
fn one_batch_keeps_the_last_write_of_each_key_whatever_its_size() {
    let dir = tempfile::tempdir().unwrap();
    store_conformance::one_batch_keeps_the_last_write_of_each_key_whatever_its_size(&mut || {
        Box::new(RedbStore::open(dir.path()).unwrap())
    });
}

#[test]
fn learnt_routes_are_stored_replaced_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    store_conformance::learnt_routes_are_stored_replaced_and_deleted(&mut || {
        Box::new(RedbStore::open(dir.path()).unwrap())
    });
}

const GOOD: &str = "name,domain,mappings,properties\n\
alice,,127.0.0.1;127.0.1.0/24,package=gold;quota=10\n\
\"bob, jr\",north,127.0.0.2@100,\n\
carol,,,\n";

#[test]
fn csv_import_export_round_trips() {
    let mut idx = SubscriberIndex::new(config()).unwrap();
    let mut seen = 0;
    let report = import(&mut idx, Cursor::new(GOOD), ImportMode::AllOrNothing, |n| {
        seen = n
    })
    .unwrap();
    assert_eq!(report.imported, 3);
    assert_eq!(seen, 3);
    assert_eq!(report.changes.vpns.len(), 1);
    let bob = idx.get("bob, jr").unwrap();
    assert_eq!(bob.domain, "north");
    assert_eq!(bob.mappings, [m("127.0.0.2@100")]);
    let alice = idx.get("alice").unwrap();
    assert_eq!(alice.properties[1], ("quota".to_string(), "10".to_string()));
    let mut out = Vec::new();
    assert_eq!(export(&idx, &mut out).unwrap().subscribers, 3);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with(
        "vpn,domain,vlan,mpls\n100,north,100,\n\nname,domain,mappings,properties,logged_in,auto_logout,state,services\n"
    ));
    assert!(
        text.contains("\"bob, jr\",north,127.0.0.2@100,,false,,,\n"),
        "{text}"
    );

    // The export imports into a fresh index with the same result.
    let mut again = SubscriberIndex::new(config()).unwrap();
    import(
        &mut again,
        Cursor::new(text),
        ImportMode::AllOrNothing,
        |_| {},
    )
    .unwrap();
    let mut a: Vec<Subscriber> = idx.iter().collect();
    let mut b: Vec<Subscriber> = again.iter().collect();
    a.sort_by(|x, y| x.name.cmp(&y.name));
    b.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(a, b);
}

const BAD: &str = "name,domain,mappings\n\
ok1,,127.0.0.1\n\
bad\"name,,127.0.0.2\n\
ok2,,127.0.0.3\n\
dup,,127.0.0.1\n\
nodomain,west,127.0.0.4\n\
badip,,127.0.0.300\n\
fields,,127.0.0.5,extra\n\
vlan-north,north,127.0.0.9@200\n\
vlan-default,,127.0.0.10@200\n\
ok1,,127.0.0.6\n";

#[test]
fn garbage_rows_are_reported_with_line_numbers() {
    let mut idx = SubscriberIndex::new(config()).unwrap();
    let Err(CsvError::Refused(errors)) =
        import(&mut idx, Cursor::new(BAD), ImportMode::AllOrNothing, |_| {})
    else {
        panic!("an all-or-nothing import of a bad file must be refused");
    };
    assert!(idx.is_empty(), "nothing imported");
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [3, 5, 6, 7, 8, 10, 11]);
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(text[0], "line 3: quote inside an unquoted field");
    assert_eq!(text[1], "line 5: mapping 127.0.0.1 is also given on line 2");
    assert_eq!(text[2], "line 6: domain \"west\" is not configured");
    assert_eq!(
        text[3],
        "line 7: mapping \"127.0.0.300\": \"127.0.0.300\" is not an IP address"
    );
    assert_eq!(text[4], "line 8: 4 fields, the header has 3");
    assert_eq!(
        text[5],
        "line 10: mapping 127.0.0.10@200: VLAN VPN 200 is created in domain \"north\" by an earlier row"
    );
    assert_eq!(
        text[6],
        "line 11: subscriber \"ok1\" already appears on line 2"
    );

    let report = import(&mut idx, Cursor::new(BAD), ImportMode::SkipInvalid, |_| {}).unwrap();
    assert_eq!(report.imported, 3);
    assert_eq!(report.skipped.len(), 7);
    let mut names = idx.names_with_prefix("", 10);
    names.sort();
    assert_eq!(names, ["ok1", "ok2", "vlan-north"]);
}

#[test]
fn a_bad_header_refuses_the_file() {
    let mut idx = SubscriberIndex::new(config()).unwrap();
    let e = import(
        &mut idx,
        Cursor::new("nom,domain\nx,y\n"),
        ImportMode::SkipInvalid,
        |_| {},
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 1: unknown column \"nom\" (known: name, domain, mappings, properties, logged_in, auto_logout, state, services)"
    );
    let e = import(
        &mut idx,
        Cursor::new("domain\nx\n"),
        ImportMode::SkipInvalid,
        |_| {},
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "line 1: the header has no \"name\" column");
}

/// VPNs of both kinds, a VPN name and property values holding `;`, `\` and `=`, EP state, a
/// subscriber service whose name holds `,` and `"`.
const WITH_VPNS: &str = "vpn,domain,vlan,mpls\n\
corp\\x,north,,65000:1@127.9.9.9 17=127.1.0.0/16 127.2.0.0/16 18=;65000:2@127.9.9.8\n\
\"west,east\",north,300,\n\
\n\
name,domain,mappings,properties,logged_in,auto_logout,state,services\n\
alice,north,\"127.0.0.1@corp\\\\x;127.0.0.2@west,east\",redirect=http://p/\\;sid=7;path=C:\\\\x=1,true,1700000000,00ff,\"[{\"\"name\"\":\"\"gold,\\\"\"vip\\\"\"\"\",\"\"type\"\":\"\"pccrule\"\",\"\"type-conflict-action\"\":\"\"none\"\",\"\"acct-stats-type\"\":\"\"volume-time\"\",\"\"acct-interval\"\":600,\"\"rules\"\":[{\"\"name\"\":\"\"r1\"\",\"\"direction\"\":\"\"ingress\"\",\"\"flows\"\":[{\"\"dst-ip\"\":\"\"10.1.1.0/24\"\"}],\"\"actions\"\":{\"\"gate\"\":\"\"forward\"\",\"\"rate-limit\"\":{\"\"pir-kbps\"\":1000},\"\"account\"\":true}}]}]\"\n";

#[test]
fn the_vpn_table_and_escapes_import_as_written() {
    let mut idx = SubscriberIndex::new(config()).unwrap();
    let report = import(
        &mut idx,
        Cursor::new(WITH_VPNS),
        ImportMode::AllOrNothing,
        |_| {},
    )
    .unwrap();
    assert_eq!((report.vpns, report.imported), (2, 1));
    let corp = idx.vpn("corp\\x").unwrap();
    let VpnKind::Mpls(entries) = &corp.kind else {
        panic!("corp is MPLS: {corp:?}");
    };
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].labels.len(), 2);
    assert_eq!(entries[0].labels[0].ranges.len(), 2);
    assert!(entries[0].labels[1].ranges.is_empty());
    assert_eq!(idx.vpn("west,east").unwrap().kind, VpnKind::Vlan(300));
    let alice = idx.get("alice").unwrap();
    assert_eq!(
        alice.mappings,
        [m("127.0.0.1@corp\\x"), m("127.0.0.2@west,east")]
    );
    assert_eq!(
        alice.properties,
        [
            ("redirect".to_owned(), "http://p/;sid=7".to_owned()),
            ("path".to_owned(), "C:\\x=1".to_owned())
        ]
    );
    assert_eq!(alice.state, [0x00, 0xff]);
    assert_eq!(alice.auto_logout, Some(1_700_000_000));
    let gold = alice.services.get("gold,\"vip\"").unwrap();
    assert_eq!(gold.rules[0].actions.rate_limit.unwrap().pir_kbps, 1000);

    // The export writes the same file back.
    let mut out = Vec::new();
    let counts = export(&idx, &mut out).unwrap();
    assert_eq!((counts.vpns, counts.subscribers), (2, 1));
    assert_eq!(String::from_utf8(out).unwrap(), WITH_VPNS);

    // Importing it again changes nothing: equal VPNs are left alone.
    let again = import(
        &mut idx,
        Cursor::new(WITH_VPNS),
        ImportMode::AllOrNothing,
        |_| {},
    )
    .unwrap();
    assert_eq!((again.vpns, again.imported), (0, 1));
}

#[test]
fn a_refused_file_leaves_no_vpn_behind_and_says_why() {
    let mut idx = SubscriberIndex::new(config()).unwrap();
    let bad = WITH_VPNS.replace("C:\\\\x=1", "C:\\x=1");
    let Err(CsvError::Refused(errors)) =
        import(&mut idx, Cursor::new(bad), ImportMode::AllOrNothing, |_| {})
    else {
        panic!("a lone backslash must refuse the file");
    };
    assert_eq!(
        errors[0].to_string(),
        "line 6: properties: \"\\x\" is not an escape (\\; is a semicolon, \\\\ a backslash)"
    );
    assert!(idx.vpns().next().is_none(), "the file's VPNs were removed");
    assert!(idx.is_empty());

    // A VPN that exists with another definition is not changed by an import.
    idx.add_vpn(Vpn {
        name: "west,east".into(),
        domain: "north".into(),
        kind: VpnKind::Vlan(301),
    })
    .unwrap();
    let Err(CsvError::Refused(errors)) = import(
        &mut idx,
        Cursor::new(WITH_VPNS),
        ImportMode::AllOrNothing,
        |_| {},
    ) else {
        panic!("a changed VPN must refuse the file");
    };
    assert_eq!(
        errors[0].to_string(),
        "line 3: VPN \"west,east\" exists with another definition; an import does not change VPNs"
    );
    assert!(idx.vpn("corp\\x").is_none());
    assert_eq!(idx.vpn("west,east").unwrap().kind, VpnKind::Vlan(301));
}
