//! `brasa tools perform subscriber-service …`: what a CoA-Request with Alc-Sub-Serv-Activate or
//! -Deactivate does, from the operator's shell, against a running `brasa run`.
//!
//! ```text
//! brasa tools perform subscriber-service activate SUBSCRIBER --parameters STRING
//!     [--acct-stats-type 1|2|3] [--acct-interval SECONDS]
//! brasa tools perform subscriber-service deactivate SUBSCRIBER SERVICE
//! ```

use crate::common::api::Client;
use crate::common::output::print_json;
use crate::common::GlobalArgs;
use crate::daemon::subsvc::api::{ActivateBody, DeactivateBody, Outcome};

/// `brasa tools perform subscriber-service …`
#[derive(clap::Subcommand, Debug)]
pub enum PerformSubscriberService {
    /// Runs the subscriber-services script on these parameters (as the Alc-Sub-Serv-Activate
    /// of a CoA-Request) and activates what it commits, all or nothing.
    Activate {
        /// The subscriber (its Subscriber Manager name).
        subscriber: String,
        /// The Alc-Sub-Serv-Activate value the script reads.
        #[arg(long)]
        parameters: String,
        /// Alc-Sub-Serv-Acct-Stats-Type: 1 off, 2 volume-time, 3 time.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3))]
        acct_stats_type: Option<u32>,
        /// Alc-Sub-Serv-Acct-Interim-Ivl, seconds.
        #[arg(long)]
        acct_interval: Option<u32>,
    },
    /// Deactivates one service instance of the subscriber.
    Deactivate {
        /// The subscriber.
        subscriber: String,
        /// The service instance name.
        service: String,
    },
}

/// Runs the command and prints the subscriber's services after it.
pub fn perform(global: &GlobalArgs, command: PerformSubscriberService) -> anyhow::Result<()> {
    let client = Client::new(global.api_url(crate::cmd::show::DEFAULT_API));
    let outcome: Outcome = match command {
        PerformSubscriberService::Activate {
            subscriber,
            parameters,
            acct_stats_type,
            acct_interval,
        } => client.post(
            "/api/v1/subsvc/activate",
            &ActivateBody {
                subscriber,
                parameters,
                acct_stats_type,
                acct_interval,
            },
        )?,
        PerformSubscriberService::Deactivate {
            subscriber,
            service,
        } => client.post(
            "/api/v1/subsvc/deactivate",
            &DeactivateBody {
                subscriber,
                service,
            },
        )?,
    };
    if global.json {
        return print_json(&outcome);
    }
    println!("Subscriber {}:", outcome.subscriber);
    if outcome.services.is_empty() {
        println!("  no subscriber services");
    } else {
        print!("{}", crate::cmd::sm::render_services(&outcome.services));
    }
    Ok(())
}
