//! The lake's store: local files through `object_store`, made durable where they are committed,
//! and the commits file that says what a partition's committed files hold.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{ConnectError, Result};

/// The lake: the store and, for local files, the directory it is rooted at (to fsync in).
#[derive(Debug)]
pub(super) struct Lake {
    pub(super) store: Arc<dyn ObjectStore>,
    root: PathBuf,
}

impl Lake {
    pub(super) fn open(root: &std::path::Path) -> Result<Lake> {
        std::fs::create_dir_all(root)
            .map_err(|e| ConnectError::io(format!("making the lake {}", root.display()), e))?;
        let store = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| ConnectError::Task(format!("opening the lake {}: {e}", root.display())))?;
        let root =
            std::fs::canonicalize(root).map_err(|e| ConnectError::io(format!("the lake {}", root.display()), e))?;
        Ok(Lake { store: Arc::new(store), root })
    }

    fn local(&self, path: &Path) -> PathBuf {
        path.parts().fold(self.root.clone(), |p, part| p.join(part.as_ref()))
    }

    /// Makes a file and the directory entry naming it durable.
    pub(super) async fn sync(&self, path: &Path) -> Result<()> {
        let file = self.local(path);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            if let Some(dir) = file.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(|e| ConnectError::Task(format!("syncing {path}: {e}")))?
        .map_err(|e| ConnectError::io(format!("syncing {path}"), e))
    }

    /// Moves files into place, each made durable there; one already moved is left as it is.
    pub(super) async fn apply(&self, renames: &[Rename]) -> Result<()> {
        for Rename { from, to } in renames {
            let parse = |p: &str| {
                Path::parse(p).map_err(|e| ConnectError::Task(format!("the commits file names a bad path {p:?}: {e}")))
            };
            let (from, to) = (parse(from)?, parse(to)?);
            match self.store.rename(&from, &to).await {
                Ok(()) => self.sync(&to).await?,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(format!("committing {from} as {to}"), e)),
            }
        }
        Ok(())
    }

    /// Removes the files a partition's earlier task left half written (also the store's own
    /// staging files of them).
    pub(super) async fn clear_tmp(&self, dir: &str, prefix: &str) -> Result<()> {
        let dir = self.local(&Path::from(dir));
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    std::fs::remove_file(entry.path())?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| ConnectError::Task(format!("clearing {}: {e}", self.root.display())))?
        .map_err(|e| ConnectError::io("clearing the lake's unfinished files", e))
    }
}

pub(super) fn store_error(what: impl std::fmt::Display, e: impl std::fmt::Display) -> ConnectError {
    ConnectError::Task(format!("{what}: {e}"))
}

/// The commits file of a partition.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Commits {
    pub(super) topic: String,
    pub(super) partition: u32,
    /// Per directory, the last offset in a committed file.
    pub(super) committed: BTreeMap<String, i64>,
    /// The files of the last commit, from the temporary directory to their places: done after
    /// this is written, and again by the next task for any still in the temporary directory.
    #[serde(default)]
    pub(super) renames: Vec<Rename>,
}

/// A file moved into place (paths in the store).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Rename {
    pub(super) from: String,
    pub(super) to: String,
}
