//! The range of every number and the length of every string in the service model, in one place:
//! the text parser, the TOML converter and the transaction validator all check against these.
//! The ranges are SR OS's where it gives one.

use std::ops::RangeInclusive;

/// Service ids (`epipe 1000`).
pub const SERVICE_ID: RangeInclusive<u32> = 1..=2_147_483_647;
/// Customer ids (`customer 1`).
pub const CUSTOMER_ID: RangeInclusive<u32> = 1..=2_147_483_647;
/// IP, IPv6 and MAC filter ids.
pub const FILTER_ID: RangeInclusive<u32> = 1..=65_535;
/// Filter entry ids.
pub const ENTRY_ID: RangeInclusive<u32> = 1..=2_097_151;
/// sap-ingress and sap-egress QoS policy ids.
pub const QOS_POLICY_ID: RangeInclusive<u32> = 1..=65_535;
/// Policer ids within a QoS policy.
pub const POLICER_ID: RangeInclusive<u32> = 1..=63;
/// VLAN tags in SAP ids (`0` = untagged).
pub const VLAN_TAG: RangeInclusive<u16> = 0..=4094;
/// Policer rates in kbps (`max` is separate).
pub const RATE_KBPS: RangeInclusive<u32> = 0..=2_000_000_000;
/// Burst sizes (`mbs`, `cbs`) in bytes.
pub const BURST_BYTES: RangeInclusive<u32> = 0..=2_147_483_647;
/// `packet-byte-offset add N`.
pub const BYTE_OFFSET_ADD: RangeInclusive<i32> = 0..=31;
/// `packet-byte-offset subtract N`.
pub const BYTE_OFFSET_SUBTRACT: RangeInclusive<i32> = 0..=64;
/// `max-nbr-mac-addr`.
pub const MAC_LIMIT: RangeInclusive<u32> = 1..=511_999;
/// `fdb-table-size`.
pub const FDB_TABLE_SIZE: RangeInclusive<u32> = 1..=511_999;
/// `local-age` seconds.
pub const LOCAL_AGE_SECONDS: RangeInclusive<u32> = 60..=86_400;
/// GRE keys.
pub const GRE_KEY: RangeInclusive<u32> = 0..=u32::MAX;
/// Ethertypes in MAC filter matches (`etype 0x0800`).
pub const ETHERTYPE: RangeInclusive<u32> = 0x0600..=0xffff;
/// IP protocol / IPv6 next-header numbers.
pub const IP_PROTOCOL: RangeInclusive<u32> = 0..=255;
/// ICMP types and codes.
pub const ICMP_VALUE: RangeInclusive<u32> = 0..=255;
/// TCP/UDP ports in filter matches.
pub const L4_PORT: RangeInclusive<u32> = 0..=65_535;
/// Tag values and masks in MAC filter `outer-tag` / `inner-tag`.
pub const TAG_MATCH: RangeInclusive<u32> = 0..=4095;
/// Longest `description`.
pub const DESCRIPTION_LEN: usize = 80;
/// Longest name (interface, split-horizon group, dynamic-services policy).
pub const NAME_LEN: usize = 32;

/// Checks a description string: at most [`DESCRIPTION_LEN`] characters, no control characters.
pub fn check_description(text: &str) -> Result<(), String> {
    if text.chars().count() > DESCRIPTION_LEN {
        return Err(format!(
            "a description of at most {DESCRIPTION_LEN} characters"
        ));
    }
    if text.chars().any(char::is_control) {
        return Err("a description without control characters".into());
    }
    Ok(())
}

/// Checks a name: 1..=[`NAME_LEN`] characters, no control characters.
pub fn check_name(text: &str) -> Result<(), String> {
    let len = text.chars().count();
    if len == 0 || len > NAME_LEN || text.chars().any(char::is_control) {
        return Err(format!(
            "a name of 1 to {NAME_LEN} characters without control characters"
        ));
    }
    Ok(())
}

/// Checks `value` against `range`, with a message naming `what` and the range.
pub fn check<T: PartialOrd + std::fmt::Display>(
    what: &str,
    value: T,
    range: &RangeInclusive<T>,
) -> Result<(), String> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{what} in {}..={}, found {value}",
            range.start(),
            range.end()
        ))
    }
}
