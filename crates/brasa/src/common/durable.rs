//! Files that must survive a crash whole.

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes`: written beside it (`<path>.new`), synced, renamed over it,
/// then the folder synced, so that a crash leaves the old file or the new one, never a part
/// of either.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let fresh = path.with_extension("new");
    let mut file = std::fs::File::create(&fresh)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    std::fs::rename(&fresh, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
