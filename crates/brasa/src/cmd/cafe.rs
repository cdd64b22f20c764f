//! `brasa cafe`: the CAFE forwarding table and intercept filters of a running data plane — the
//! document's `cf_tool` and `ci_tool` (COMET D4.3 §5.3.3), with the same argument order.

use crate::common::api::Client;
use crate::common::output::{print_json, table};
use crate::common::GlobalArgs;
use crate::daemon::dataplane::DEFAULT_API;
use anyhow::Context;
use brasa_dataplane::cafe::intercept::{parse_any_addr, parse_keys_hex, ExpiredStream};
use brasa_dataplane::control::{FilterRequest, FilterView, ForwardRule, ForwardView, Stats};
use std::net::IpAddr;

/// Subcommands of `brasa cafe`.
#[derive(clap::Subcommand, Debug)]
pub enum CafeCommand {
    /// The forwarding table (cf_tool): key → egress towards the next CAFE.
    #[command(subcommand)]
    Forward(ForwardCommand),
    /// Intercept filters (ci_tool): IP 5-tuples to encapsulate at the ingress edge.
    #[command(subcommand)]
    Intercept(InterceptCommand),
    /// Counters per interface and drops by reason.
    Stats,
}

/// `brasa cafe forward …`.
#[derive(clap::Subcommand, Debug)]
pub enum ForwardCommand {
    /// Forward KEY as an Ethernet frame to MAC out of DEVICE (`cf_tool add_ethernet a7 eth1 aa:11:b0:00:00:01`).
    AddEthernet {
        /// Forwarding key, one byte in hex (e.g. a7).
        key: String,
        /// Egress interface.
        device: String,
        /// Destination MAC address of the next CAFE.
        mac: String,
    },
    /// Forward KEY in an 802.1Q frame on VLAN VID to MAC out of DEVICE.
    AddVlan {
        /// Forwarding key, one byte in hex.
        key: String,
        /// Egress interface.
        device: String,
        /// Destination MAC address of the next CAFE.
        mac: String,
        /// VLAN id (1-4094).
        vid: u16,
    },
    /// Forward KEY through a layer-3 DEVICE such as a GRE tunnel (`cf_tool add_device 05 gre1`).
    AddDevice {
        /// Forwarding key, one byte in hex.
        key: String,
        /// Egress device.
        device: String,
    },
    /// Remove the rule for KEY.
    Remove {
        /// Forwarding key, one byte in hex.
        key: String,
    },
    /// Show the rule for KEY, or every rule, with packet and byte counters.
    Get {
        /// Forwarding key, one byte in hex.
        key: Option<String>,
    },
}

/// `brasa cafe intercept …`.
#[derive(clap::Subcommand, Debug)]
pub enum InterceptCommand {
    /// Add a filter (`ci_tool add 123 60 1.1.1.2 2.2.2.1 17 0 80 1234567890abcdef`); 0 = any.
    Add {
        /// Stream id.
        id: u32,
        /// Idle timeout in seconds (0 = never expires).
        timeout: u32,
        /// Source IP address (0 = any).
        src: String,
        /// Destination IP address (0 = any).
        dst: String,
        /// IP protocol number (0 = any).
        proto: u8,
        /// Source port (0 = any).
        sport: u16,
        /// Destination port (0 = any).
        dport: u16,
        /// Forwarding keys of the path in hex, one byte per CAFE (e.g. 1234567890abcdef).
        keys_hex: String,
    },
    /// Remove the filter ID.
    Remove {
        /// Stream id.
        id: u32,
    },
    /// List filters with their counters.
    List,
    /// Collect (and clear) the records of expired streams.
    Collect,
}

fn key_arg(text: &str) -> anyhow::Result<u8> {
    u8::from_str_radix(text.trim_start_matches("0x"), 16)
        .with_context(|| format!("invalid key {text:?}: expected one byte in hex (00 to ff)"))
}

fn addr_arg(text: &str) -> anyhow::Result<Option<IpAddr>> {
    parse_any_addr(text).map_err(|err| anyhow::anyhow!(err))
}

fn show_addr(addr: &Option<IpAddr>) -> String {
    addr.map(|a| a.to_string()).unwrap_or_else(|| "any".into())
}

/// Runs a `brasa cafe` command against the data plane's management API.
pub async fn run(global: &GlobalArgs, command: CafeCommand) -> anyhow::Result<()> {
    let client = Client::new(global.api_url(DEFAULT_API));
    let json = global.json;
    tokio::task::spawn_blocking(move || execute(&client, json, command)).await?
}

fn done(json: bool, message: String) -> anyhow::Result<()> {
    if json {
        print_json(&serde_json::json!({"result": "ok", "message": message}))
    } else {
        println!("{message}");
        Ok(())
    }
}

fn execute(client: &Client, json: bool, command: CafeCommand) -> anyhow::Result<()> {
    match command {
        CafeCommand::Forward(ForwardCommand::AddEthernet { key, device, mac }) => {
            let key = key_arg(&key)?;
            let _: serde_json::Value = client.post(
                "/api/v1/cafe/forward",
                &ForwardRule::Ethernet { key, device, mac },
            )?;
            done(json, format!("key {key:02x}: rule added"))
        }
        CafeCommand::Forward(ForwardCommand::AddVlan {
            key,
            device,
            mac,
            vid,
        }) => {
            let key = key_arg(&key)?;
            let _: serde_json::Value = client.post(
                "/api/v1/cafe/forward",
                &ForwardRule::Vlan {
                    key,
                    device,
                    mac,
                    vid,
                },
            )?;
            done(json, format!("key {key:02x}: rule added"))
        }
        CafeCommand::Forward(ForwardCommand::AddDevice { key, device }) => {
            let key = key_arg(&key)?;
            let _: serde_json::Value =
                client.post("/api/v1/cafe/forward", &ForwardRule::Device { key, device })?;
            done(json, format!("key {key:02x}: rule added"))
        }
        CafeCommand::Forward(ForwardCommand::Remove { key }) => {
            let key = key_arg(&key)?;
            let _: serde_json::Value = client.delete(&format!("/api/v1/cafe/forward/{key:02x}"))?;
            done(json, format!("key {key:02x}: rule removed"))
        }
        CafeCommand::Forward(ForwardCommand::Get { key }) => {
            let rules: Vec<ForwardView> = match key {
                Some(key) => client.get(&format!("/api/v1/cafe/forward/{:02x}", key_arg(&key)?))?,
                None => client.get("/api/v1/cafe/forward")?,
            };
            if json {
                return print_json(&rules);
            }
            let rows: Vec<Vec<String>> = rules
                .iter()
                .map(|r| {
                    vec![
                        format!("{:02x}", r.key),
                        r.kind.to_string(),
                        r.device.clone(),
                        r.mac.clone().unwrap_or_else(|| "-".into()),
                        r.vid.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                        r.packets.to_string(),
                        r.bytes.to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["Key", "Type", "Device", "Dst MAC", "VLAN", "Packets", "Bytes"],
                    &rows
                )
            );
            Ok(())
        }
        CafeCommand::Intercept(InterceptCommand::Add {
            id,
            timeout,
            src,
            dst,
            proto,
            sport,
            dport,
            keys_hex,
        }) => {
            parse_keys_hex(&keys_hex).map_err(|err| anyhow::anyhow!(err))?;
            let request = FilterRequest {
                id,
                timeout,
                src: addr_arg(&src)?,
                dst: addr_arg(&dst)?,
                protocol: proto,
                src_port: sport,
                dst_port: dport,
                keys: keys_hex,
                bandwidth: 0,
                cos: String::new(),
                as_path: Vec::new(),
            };
            let _: serde_json::Value = client.post("/api/v1/cafe/intercept", &request)?;
            done(json, format!("filter {id} added"))
        }
        CafeCommand::Intercept(InterceptCommand::Remove { id }) => {
            let _: serde_json::Value = client.delete(&format!("/api/v1/cafe/intercept/{id}"))?;
            done(json, format!("filter {id} removed"))
        }
        CafeCommand::Intercept(InterceptCommand::List) => {
            let filters: Vec<FilterView> = client.get("/api/v1/cafe/intercept")?;
            if json {
                return print_json(&filters);
            }
            let rows: Vec<Vec<String>> = filters
                .iter()
                .map(|f| {
                    vec![
                        f.id.to_string(),
                        f.timeout.to_string(),
                        show_addr(&f.src),
                        show_addr(&f.dst),
                        f.protocol.to_string(),
                        f.src_port.to_string(),
                        f.dst_port.to_string(),
                        f.keys.clone(),
                        f.packets.to_string(),
                        f.bytes.to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "Id",
                        "Timeout",
                        "Source",
                        "Destination",
                        "Proto",
                        "SPort",
                        "DPort",
                        "Keys",
                        "Packets",
                        "Bytes"
                    ],
                    &rows
                )
            );
            Ok(())
        }
        CafeCommand::Intercept(InterceptCommand::Collect) => {
            let records: Vec<ExpiredStream> =
                client.post("/api/v1/cafe/intercept/collect", &serde_json::json!({}))?;
            if json {
                return print_json(&records);
            }
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        show_addr(&r.src),
                        show_addr(&r.dst),
                        r.protocol.to_string(),
                        r.src_port.to_string(),
                        r.dst_port.to_string(),
                        r.bandwidth.to_string(),
                        if r.cos.is_empty() {
                            "-".into()
                        } else {
                            r.cos.clone()
                        },
                        r.as_path
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(" "),
                        r.transferred_bytes.to_string(),
                        format!("{:.3}s", r.duration_ms as f64 / 1000.0),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "Id",
                        "Source",
                        "Destination",
                        "Proto",
                        "SPort",
                        "DPort",
                        "Bandwidth",
                        "CoS",
                        "AS path",
                        "Bytes",
                        "Duration"
                    ],
                    &rows
                )
            );
            Ok(())
        }
        CafeCommand::Stats => {
            let stats: Stats = client.get("/api/v1/dataplane/stats")?;
            if json {
                return print_json(&stats);
            }
            let rows: Vec<Vec<String>> = stats
                .interfaces
                .iter()
                .map(|i| {
                    let c = &i.counters;
                    vec![
                        i.name.clone(),
                        c.rx_packets.to_string(),
                        c.tx_packets.to_string(),
                        c.to_kernel.to_string(),
                        c.ignored.to_string(),
                        c.dropped.to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &["Interface", "RX", "TX", "To kernel", "Ignored", "Dropped"],
                    &rows
                )
            );
            let drops: Vec<Vec<String>> = stats
                .drops
                .iter()
                .map(|(r, c)| vec![r.clone(), c.to_string()])
                .collect();
            println!();
            print!("{}", table(&["Drop reason", "Packets"], &drops));
            println!(
                "\nfilters: {}  decapsulated: {}  expired streams: {} ({} waiting for collect)",
                stats.filters, stats.decapsulated, stats.expired_total, stats.expired_pending
            );
            Ok(())
        }
    }
}
