//! The TOML form: the example file gives the same configuration as the text-form example, unknown
//! keys are refused, and semantic errors point at the TOML value responsible.

mod common;

use brasa_services::toml::ServicesToml;
use brasa_services::{cli, Origin, ServiceConfig, ValidationError};
use common::env;

fn example(name: &str) -> String {
    let path = format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn from_toml(text: &str) -> Result<ServiceConfig, brasa_services::TxnError> {
    let form: ServicesToml = toml::from_str(text).unwrap();
    let changes = form.changes().unwrap();
    let mut config = ServiceConfig::new();
    config.apply_changes(&changes, &env())?;
    Ok(config)
}

#[test]
fn the_toml_and_text_examples_describe_the_same_services() {
    let text = example("services.toml");
    let from_toml = from_toml(&text).unwrap();
    let form: ServicesToml = toml::from_str(&text).unwrap();
    let changes = cli::parse(&example("services.cli"), &form.service.port_map).unwrap();
    let mut from_cli = ServiceConfig::new();
    from_cli.apply_changes(&changes, &env()).unwrap();
    assert_eq!(from_toml, from_cli);
    assert_eq!(from_toml.sap_count(), 4);
    assert!(from_toml.is_operational(1000));

    // And the export of either reads back the same.
    let exported = cli::export(&from_toml);
    let mut again = ServiceConfig::new();
    again
        .apply_changes(&cli::parse(&exported, &Default::default()).unwrap(), &env())
        .unwrap();
    assert_eq!(again, from_toml, "{exported}");
}

#[test]
fn unknown_keys_are_errors() {
    let error =
        toml::from_str::<ServicesToml>("[[service.epipe]]\nid = 1\ncustomer = 1\nbogus = 2\n")
            .unwrap_err();
    assert!(
        error.to_string().contains("unknown field `bogus`"),
        "{error}"
    );
    assert!(toml::from_str::<ServicesToml>("[service]\nvll = []\n").is_err());
}

#[test]
fn semantic_errors_point_at_the_toml_value() {
    let text = "[[service.vpls]]\nid = 5\ncustomer = 1\n[[service.vpls.sap]]\nid = \"eth1:7\"\ningress = { filter_ip = 99 }\n";
    let error = from_toml(text).unwrap_err();
    assert_eq!(
        error.error,
        ValidationError::NoSuchFilter(brasa_services::model::FilterRef {
            kind: brasa_services::model::FilterKind::Ip,
            id: 99
        })
    );
    let Origin::Toml(span) = error.origin else {
        panic!("{error:?}")
    };
    assert_eq!(&text[span], "99");

    let text = "[[service.vpls]]\nid = 5\ncustomer = 1\n[[service.vpls.sap]]\nid = \"1/1/9:7\"\n";
    let form: ServicesToml = toml::from_str(text).unwrap();
    let error = form.changes().unwrap_err();
    assert_eq!(&text[error.span], "\"1/1/9:7\"");
    assert!(error.message.contains("port map"), "{}", error.message);
}
