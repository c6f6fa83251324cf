//! Named points where a test can make the engine stop as if the process had died there.
//!
//! Crash tests kill real processes at random moments; failpoints add the moments that random
//! timing rarely hits (between the two renames of a compaction swap, say). A failpoint is armed
//! for one partition directory, so tests running side by side do not see each other's.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

static ARMED: Mutex<Option<HashSet<(String, PathBuf)>>> = Mutex::new(None);

/// Arms `name` for the partition directory `dir`: the next time the engine reaches that point for
/// that partition, it stops with an error and leaves its files as they are.
#[doc(hidden)]
pub fn arm(name: &str, dir: &Path) {
    ARMED.lock().expect("failpoints").get_or_insert_with(HashSet::new).insert((name.to_owned(), dir.to_owned()));
}

pub(crate) fn check(name: &str, dir: &Path) -> Result<()> {
    let mut armed = ARMED.lock().expect("failpoints");
    let hit = armed.as_mut().is_some_and(|set| set.remove(&(name.to_owned(), dir.to_owned())));
    if hit {
        return Err(Error::Internal(format!("failpoint {name} hit in {}", dir.display())));
    }
    Ok(())
}
