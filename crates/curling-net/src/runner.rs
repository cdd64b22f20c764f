//! The scenario runner: executes a parsed [`Scenario`] with every entity a real UDP endpoint on
//! loopback, at the times its lines give.

use crate::shell::{Core, Entity, LogSink, ShellOptions, Snapshot};
use brasa_curling::cafe::Cafe;
use brasa_curling::client::ContentClient;
use brasa_curling::crme::Crme;
use brasa_curling::naming::Naming;
use brasa_curling::scenario::{Scenario, Step, SyntaxError};
use brasa_curling::server::ContentServer;
use serde::{Deserialize, Serialize};
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a scenario could not be run to its end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario file does not follow the grammar.
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    /// The scenario file or a published file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// An entity could not start or a command failed while running.
    #[error("line {line}: {message}")]
    Step {
        /// The scenario line.
        line: usize,
        /// What failed.
        message: String,
    },
}

/// Why a scenario run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndedBy {
    /// An `END` line.
    End,
    /// No `END` line, and every download and stream finished.
    Idle,
    /// The run's time limit passed first.
    Timeout,
}

impl std::fmt::Display for EndedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EndedBy::End => "end",
            EndedBy::Idle => "idle",
            EndedBy::Timeout => "timeout",
        })
    }
}

/// How to run a scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Router naming.
    pub naming: Naming,
    /// Where relative `publish` files are found.
    pub file_dir: PathBuf,
    /// Where clients save content.
    pub content_dir: PathBuf,
    /// Longest run when the scenario has no END and downloads do not finish.
    pub timeout: Duration,
    /// Print log lines and tables to stdout as they happen.
    pub echo: bool,
}

/// What a scenario run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Log lines in order (§6.4.2 style).
    pub log: Vec<String>,
    /// Every entity's final state, in scenario order.
    pub entities: Vec<Snapshot>,
    /// Why the run ended.
    pub ended_by: EndedBy,
}

/// Executes `scenario`: starts entities, publishes and consumes at their times, and stops at
/// `END`, when every download and stream is finished (after the last step), or at the timeout.
pub async fn run(scenario: &Scenario, options: &RunOptions) -> Result<Report, RunError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let log_lines = Arc::new(Mutex::new(Vec::new()));
    let sink: LogSink = {
        let log_lines = log_lines.clone();
        let echo = options.echo;
        Arc::new(move |line: String| {
            if echo {
                println!("{line}");
            }
            tracing::debug!(%line, "curling");
            log_lines
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(line);
        })
    };
    let shell = ShellOptions {
        naming: options.naming,
        content_dir: options.content_dir.clone(),
        stop: stop_rx,
        drop_every: None,
    };
    let mut entities: Vec<Entity> = Vec::new();
    let start = tokio::time::Instant::now();
    let deadline = start + options.timeout;
    let find =
        |entities: &[Entity], addr: SocketAddrV4| entities.iter().position(|e| e.addr() == addr);
    let mut ended_by = EndedBy::Idle;
    let result: Result<(), RunError> = async {
        for step in &scenario.steps {
            if start + step.at > deadline {
                ended_by = EndedBy::Timeout;
                return Ok(());
            }
            tokio::time::sleep_until(start + step.at).await;
            let fail = |message: String| RunError::Step {
                line: step.line,
                message,
            };
            let core = match &step.step {
                Step::Cafe(config, _) => Some(Core::Cafe(Cafe::new(config.clone()))),
                Step::Crme(config) => Some(Core::Crme(Crme::new(config.clone()))),
                Step::Server(config) => Some(Core::Server(ContentServer::new(config.clone()))),
                Step::Client(config) => Some(Core::Client(ContentClient::new(config.clone()))),
                Step::Publish {
                    server,
                    content_id,
                    file,
                } => {
                    let path = options.file_dir.join(file);
                    let data = std::fs::read(&path).map_err(|source| RunError::Io {
                        path: path.clone(),
                        source,
                    })?;
                    let index = find(&entities, *server)
                        .ok_or_else(|| fail(format!("no content server at {server}")))?;
                    entities[index].with_core(|core| match core {
                        Core::Server(s) => s
                            .publish(content_id, Arc::from(data))
                            .map_err(|err| fail(err.to_string())),
                        _ => Err(fail(format!("{server} is not a content server"))),
                    })?;
                    None
                }
                Step::Consume { client, content_id } => {
                    let index = find(&entities, *client)
                        .ok_or_else(|| fail(format!("no content client at {client}")))?;
                    entities[index].with_core(|core| match core {
                        Core::Client(c) => c
                            .consume(Instant::now(), content_id)
                            .map_err(|err| fail(err.to_string())),
                        _ => Err(fail(format!("{client} is not a content client"))),
                    })?;
                    None
                }
                Step::Display => {
                    for entity in &entities {
                        let table = entity
                            .snapshot()
                            .display_content_state_table(&options.naming);
                        if !table.is_empty() {
                            sink(table.trim_end().to_string());
                        }
                    }
                    None
                }
                Step::End => {
                    ended_by = EndedBy::End;
                    return Ok(());
                }
            };
            if let Some(core) = core {
                let mut shell = shell.clone();
                if let Step::Cafe(_, drop_every) = &step.step {
                    shell.drop_every = *drop_every;
                }
                let entity = Entity::spawn(core, shell, sink.clone())
                    .map_err(|err| fail(err.to_string()))?;
                entities.push(entity);
            }
        }
        // No END: wait until nothing is in progress (checked a few times so that a Consume
        // still travelling is not mistaken for idleness), or the timeout.
        let mut quiet = 0;
        while quiet < 5 {
            if tokio::time::Instant::now() >= deadline {
                ended_by = EndedBy::Timeout;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if entities.iter().any(Entity::is_busy) {
                quiet = 0;
            } else {
                quiet += 1;
            }
        }
        Ok(())
    }
    .await;
    let snapshots: Vec<Snapshot> = entities.iter().map(Entity::snapshot).collect();
    let _ = stop_tx.send(true);
    for entity in entities {
        entity.join().await;
    }
    result?;
    let log = std::mem::take(&mut *log_lines.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Report {
        log,
        entities: snapshots,
        ended_by,
    })
}

/// Reads and parses a scenario file.
pub fn load(path: &Path, naming: Naming) -> Result<Scenario, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Scenario::parse(&text, &path.display().to_string(), naming)?)
}
