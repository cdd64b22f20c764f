//! The JSON-lines accounting logs of the local databases: one file per database, opened in
//! append mode at start, one line per Accounting-Request with the time added.

use brasa_aaa::Engine;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Open accounting logs by local database index.
#[derive(Debug, Default)]
pub(crate) struct AccountingLogs {
    files: HashMap<usize, File>,
}

impl AccountingLogs {
    /// Opens (creating file and folders) the log of every local database of `engine`.
    pub fn open(engine: &Engine) -> Result<Self, (String, std::io::Error)> {
        let mut files = HashMap::new();
        let mut index = 0;
        while let Some(database) = engine.local_database(index) {
            let path = &database.accounting_log;
            let failed = |err| (path.display().to_string(), err);
            files.insert(index, open_append(path).map_err(failed)?);
            index += 1;
        }
        Ok(AccountingLogs { files })
    }

    /// Appends `record`, with the wall-clock `time` in seconds since the Unix epoch, to the
    /// log of `database`.
    pub fn append(
        &mut self,
        database: usize,
        mut record: serde_json::Map<String, serde_json::Value>,
    ) {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        record.insert("time".into(), time.into());
        let mut line = serde_json::Value::Object(record).to_string();
        line.push('\n');
        if let Some(file) = self.files.get_mut(&database) {
            if let Err(err) = file.write_all(line.as_bytes()) {
                tracing::error!(%err, "cannot append to the accounting log");
            }
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}
