//! `brasa tools …` and `brasa clear …`: the SR OS operator tools of the Python cache guide for python-policy
//! caches and python-scripts, against a running `brasa run`.
//!
//! ```text
//! brasa tools dump python python-policy NAME cache
//! brasa tools perform python-policy NAME cache {--string-key S | --hex-key H} set-lifetime N
//! brasa tools perform python-script NAME reload | debug on|off
//! brasa tools perform subscriber-service activate|deactivate …
//! brasa clear python python-policy NAME cache {--string-key S | --hex-key H}
//! ```

use crate::cmd::show::DEFAULT_API;
use crate::common::api::{encode_component, Client};
use crate::common::output::print_json;
use crate::common::GlobalArgs;
use crate::daemon::python_api::{
    hex, parse_hex, printable, CacheDump, DebugRequest, Done, KeyRequest, SetLifetimeRequest,
};

/// `brasa tools …`
#[derive(clap::Subcommand, Debug)]
pub enum ToolsCommand {
    /// Dump state (`tools dump python python-policy NAME cache`).
    #[command(subcommand)]
    Dump(DumpCommand),
    /// Act on state (`tools perform python-policy NAME cache … set-lifetime N`).
    #[command(subcommand)]
    Perform(PerformCommand),
}

/// `brasa tools dump …`
#[derive(clap::Subcommand, Debug)]
pub enum DumpCommand {
    /// Python state.
    #[command(subcommand)]
    Python(DumpPython),
    /// Service state (`tools dump service dynamic-services command-list`).
    #[command(subcommand)]
    Service(DumpService),
}

/// `brasa tools dump service …`
#[derive(clap::Subcommand, Debug)]
pub enum DumpService {
    /// The dynamic data services.
    #[command(subcommand)]
    DynamicServices(crate::cmd::dynsvc::DumpDynamicServices),
}

/// `brasa tools dump python …`
#[derive(clap::Subcommand, Debug)]
pub enum DumpPython {
    /// One python-policy.
    PythonPolicy {
        /// The python-policy name.
        name: String,
        #[command(subcommand)]
        what: PolicyPart,
    },
}

/// What of a python-policy.
#[derive(clap::Subcommand, Debug, Clone, Copy)]
pub enum PolicyPart {
    /// Its cache: every live entry with Key, Value (hex), Time Left, DDP Key.
    Cache,
}

/// `brasa tools perform …`
#[derive(clap::Subcommand, Debug)]
pub enum PerformCommand {
    /// A python-policy's cache.
    PythonPolicy {
        /// The python-policy name.
        name: String,
        #[command(subcommand)]
        what: PerformPolicy,
    },
    /// A python-script.
    PythonScript {
        /// The python-script name.
        name: String,
        #[command(subcommand)]
        action: ScriptAction,
    },
    /// Service state (`tools perform service dynamic-services evaluate-script …`).
    #[command(subcommand)]
    Service(PerformService),
    /// A subscriber's services (PCC rules): activate or deactivate as a CoA-Request would.
    #[command(subcommand)]
    SubscriberService(crate::cmd::subsvc::PerformSubscriberService),
}

/// `brasa tools perform service …`
#[derive(clap::Subcommand, Debug)]
pub enum PerformService {
    /// The dynamic data services.
    #[command(subcommand)]
    DynamicServices(crate::cmd::dynsvc::PerformDynamicServices),
}

/// `brasa tools perform python-policy NAME …`
#[derive(clap::Subcommand, Debug)]
pub enum PerformPolicy {
    /// One cache entry.
    Cache {
        #[command(flatten)]
        key: KeyArgs,
        #[command(subcommand)]
        action: CacheAction,
    },
}

/// What to do to a cache entry.
#[derive(clap::Subcommand, Debug, Clone, Copy)]
pub enum CacheAction {
    /// Set the entry's remaining lifetime in seconds (capped by the policy's
    /// max-entry-lifetime). Use with caution: a script may need the entry.
    SetLifetime {
        /// New remaining lifetime, seconds.
        seconds: u64,
    },
}

/// `brasa tools perform python-script NAME …`
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ScriptAction {
    /// Recompile the script from its file without a restart; on an error the old code stays.
    Reload,
    /// Log every run's output and result trace ("Python Output", "Python Result") or stop.
    Debug {
        /// `on` or `off`.
        state: Switch,
    },
}

/// `on` or `off`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Turn it on.
    On,
    /// Turn it off.
    Off,
}

/// Names one cache entry.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct KeyArgs {
    /// The key as text (e.g. a MAC address `00:20:fc:1e:cd:53` or a User-Name; UTF-8).
    #[arg(long)]
    pub string_key: Option<String>,
    /// The key as hex digits (spaces or colons between bytes allowed).
    #[arg(long)]
    pub hex_key: Option<String>,
}

impl KeyArgs {
    /// The key in the hex form the API takes, validated here so typos fail before any request.
    fn to_hex(&self) -> anyhow::Result<String> {
        match (&self.string_key, &self.hex_key) {
            (Some(text), _) => Ok(hex(text.as_bytes())),
            (None, Some(digits)) => {
                let bytes = parse_hex(digits).map_err(anyhow::Error::msg)?;
                Ok(hex(&bytes))
            }
            (None, None) => Err(anyhow::anyhow!("give --string-key or --hex-key")),
        }
    }
}

/// `brasa clear …`
#[derive(clap::Subcommand, Debug)]
pub enum ClearCommand {
    /// Python state.
    #[command(subcommand)]
    Python(ClearPython),
    /// Service counters (`brasa clear service ID statistics`), data triggers and capture SAP
    /// statistics (`brasa clear service dynamic-services …`).
    Service(crate::cmd::service::ClearServiceArgs),
    /// Host lockout contexts of the dynamic data services.
    #[command(subcommand)]
    SubscriberMgmt(crate::cmd::dynsvc::SubscriberMgmt),
}

/// `brasa clear python …`
#[derive(clap::Subcommand, Debug)]
pub enum ClearPython {
    /// One python-policy.
    PythonPolicy {
        /// The python-policy name.
        name: String,
        #[command(subcommand)]
        what: ClearPolicy,
    },
}

/// `brasa clear python python-policy NAME …`
#[derive(clap::Subcommand, Debug)]
pub enum ClearPolicy {
    /// Remove one cache entry. Use with caution: a script may need the entry.
    Cache {
        #[command(flatten)]
        key: KeyArgs,
    },
}

fn policy_path(name: &str, rest: &str) -> String {
    format!(
        "/api/v1/python/policies/{}/cache{rest}",
        encode_component(name)
    )
}

pub async fn run_tools(global: &GlobalArgs, command: ToolsCommand) -> anyhow::Result<()> {
    let client = Client::new(global.api_url(DEFAULT_API));
    tokio::task::block_in_place(|| match command {
        ToolsCommand::Dump(DumpCommand::Service(DumpService::DynamicServices(command))) => {
            crate::cmd::dynsvc::dump(global, command)
        }
        ToolsCommand::Perform(PerformCommand::Service(PerformService::DynamicServices(
            command,
        ))) => crate::cmd::dynsvc::perform(global, command),
        ToolsCommand::Perform(PerformCommand::SubscriberService(command)) => {
            crate::cmd::subsvc::perform(global, command)
        }
        ToolsCommand::Dump(DumpCommand::Python(DumpPython::PythonPolicy {
            name,
            what: PolicyPart::Cache,
        })) => {
            let dump: CacheDump = client.get(&policy_path(&name, ""))?;
            if global.json {
                return print_json(&dump);
            }
            print!("{}", render_dump(&dump));
            Ok(())
        }
        ToolsCommand::Perform(PerformCommand::PythonPolicy {
            name,
            what:
                PerformPolicy::Cache {
                    key,
                    action: CacheAction::SetLifetime { seconds },
                },
        }) => {
            let request = SetLifetimeRequest {
                key_hex: key.to_hex()?,
                seconds,
            };
            let done: Done = client.post(&policy_path(&name, "/set-lifetime"), &request)?;
            report(global, &done)
        }
        ToolsCommand::Perform(PerformCommand::PythonScript { name, action }) => {
            let done: Done = match action {
                ScriptAction::Reload => client.post(
                    &format!("/api/v1/python/scripts/{}/reload", encode_component(&name)),
                    &serde_json::json!({}),
                )?,
                ScriptAction::Debug { state } => client.post(
                    &format!("/api/v1/python/scripts/{}/debug", encode_component(&name)),
                    &DebugRequest {
                        on: state == Switch::On,
                    },
                )?,
            };
            report(global, &done)
        }
    })
}

pub async fn run_clear(global: &GlobalArgs, command: ClearCommand) -> anyhow::Result<()> {
    let client = Client::new(global.api_url(DEFAULT_API));
    let (name, key) = match command {
        ClearCommand::Service(args) => return crate::cmd::service::clear(global, args).await,
        ClearCommand::SubscriberMgmt(command) => {
            return tokio::task::block_in_place(|| {
                crate::cmd::dynsvc::clear_subscriber_mgmt(global, command)
            })
        }
        ClearCommand::Python(ClearPython::PythonPolicy {
            name,
            what: ClearPolicy::Cache { key },
        }) => (name, key),
    };
    let request = KeyRequest {
        key_hex: key.to_hex()?,
    };
    let done: Done =
        tokio::task::block_in_place(|| client.post(&policy_path(&name, "/clear"), &request))?;
    report(global, &done)
}

fn report(global: &GlobalArgs, done: &Done) -> anyhow::Result<()> {
    if global.json {
        return print_json(done);
    }
    println!("{}", done.detail);
    Ok(())
}

const RULE: &str =
    "===============================================================================";

/// The SR OS layout: a banner, then `Key`, `Value (hex)` wrapped at 24 bytes, `Time Left`,
/// `DDP Key` per entry.
fn render_dump(dump: &CacheDump) -> String {
    let mut out = format!(
        "{RULE}\nPython policy cache \"{}\" entries\n{RULE}\n",
        dump.policy
    );
    for entry in &dump.entries {
        let key = match &entry.key {
            Some(text) if printable(text) => text.clone(),
            _ => format!("(hex) {}", entry.key_hex),
        };
        out.push_str(&format!("Key       : {key}\n"));
        let bytes: Vec<&str> = entry
            .value_hex
            .split(' ')
            .filter(|b| !b.is_empty())
            .collect();
        let mut lines = bytes.chunks(24).map(|chunk| chunk.join(" "));
        out.push_str(&format!(
            "Value     : (hex) {}\n",
            lines.next().unwrap_or_default()
        ));
        for line in lines {
            out.push_str(&format!("            {line}\n"));
        }
        out.push_str(&format!("Time Left : {}\n", entry.time_left));
        out.push_str(&format!("DDP Key   : {}\n", entry.ddp_key));
        out.push_str(&format!("{RULE}\n"));
    }
    if dump.entries.is_empty() {
        out.push_str(&format!("{RULE}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::python_api::CacheEntry;

    #[test]
    fn the_dump_looks_like_the_sr_os_one() {
        let dump = CacheDump {
            policy: "python-policy-1".into(),
            entries: vec![CacheEntry {
                key: Some("00:20:fc:1e:cd:53".into()),
                key_hex: hex(b"00:20:fc:1e:cd:53"),
                value_hex: hex(b"\x03\x07\x08\x09Class-1Class-22Class-333"),
                time_left: "0d 00:12:08".into(),
                remaining_ms: 728_000,
                ddp_key: "N/A".into(),
            }],
        };
        let text = render_dump(&dump);
        assert!(text.contains("Python policy cache \"python-policy-1\" entries"));
        assert!(text.contains("Key       : 00:20:fc:1e:cd:53\n"));
        assert!(text.contains(
            "Value     : (hex) 03 07 08 09 43 6c 61 73 73 2d 31 43 6c 61 73 73 2d 32 32 43 6c 61 73 73\n            2d 33 33 33\n"
        ));
        assert!(text.contains("Time Left : 0d 00:12:08\n"));
        assert!(text.contains("DDP Key   : N/A\n"));
    }

    #[test]
    fn utf8_keys_show_as_text_and_hidden_characters_as_hex() {
        let entry = |key: &[u8]| CacheEntry {
            key: String::from_utf8(key.to_vec()).ok(),
            key_hex: hex(key),
            value_hex: hex(b"v"),
            time_left: "0d 00:00:10".into(),
            remaining_ms: 10_000,
            ddp_key: "N/A".into(),
        };
        let dump = CacheDump {
            policy: "p".into(),
            entries: vec![
                entry("Zoë O'Brien+vlan/42@fibre.example".as_bytes()),
                entry(b"bell\x07"),
                entry(b"\xff\xfe"),
            ],
        };
        let text = render_dump(&dump);
        assert!(
            text.contains("Key       : Zoë O'Brien+vlan/42@fibre.example\n"),
            "{text}"
        );
        assert!(
            text.contains("Key       : (hex) 62 65 6c 6c 07\n"),
            "{text}"
        );
        assert!(text.contains("Key       : (hex) ff fe\n"), "{text}");
    }

    #[test]
    fn names_are_escaped_in_paths() {
        assert_eq!(
            policy_path("a b/c", "/clear"),
            "/api/v1/python/policies/a%20b%2Fc/cache/clear"
        );
    }
}
