//! Where an optimistic handle keeps its queued mutations, so that edits made while
//! the server was away survive a restart of the host process. Each is replayed with
//! its original request id: one the server already applied is answered from its
//! record (kept `sessions.request_id_ttl_secs`, a day by default), never applied twice.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};

use crate::domain::SessionOp;

/// One mutation waiting for the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedMutation {
    pub session_id: i64,
    /// Kept from the first attempt: a resend after a restart applies at most once.
    pub request_id: String,
    pub ops: Vec<SessionOp>,
}

/// Storage for a handle's queue: the whole queue is saved after every change.
pub trait QueueStore: Send + Sync {
    /// The queue as last saved (oldest first); empty if nothing was saved.
    fn load(&self) -> io::Result<Vec<QueuedMutation>>;
    /// Replaces the saved queue.
    fn save(&self, queue: &[QueuedMutation]) -> io::Result<()>;
}

/// The default: kept in memory, gone with the process.
#[derive(Debug, Default)]
pub struct MemoryQueue(Mutex<Vec<QueuedMutation>>);

impl QueueStore for MemoryQueue {
    fn load(&self) -> io::Result<Vec<QueuedMutation>> {
        Ok(self.0.lock().expect("queue lock").clone())
    }

    fn save(&self, queue: &[QueuedMutation]) -> io::Result<()> {
        *self.0.lock().expect("queue lock") = queue.to_vec();
        Ok(())
    }
}

/// A JSON file, replaced atomically (written beside it, then renamed), so a crash
/// mid-save leaves the previous queue, never half of one.
#[derive(Debug, Clone)]
pub struct FileQueue {
    path: PathBuf,
}

impl FileQueue {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl QueueStore for FileQueue {
    fn load(&self) -> io::Result<Vec<QueuedMutation>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn save(&self, queue: &[QueuedMutation]) -> io::Result<()> {
        let partial = self.path.with_extension("partial");
        std::fs::write(&partial, serde_json::to_vec(queue).map_err(io::Error::other)?)?;
        std::fs::rename(&partial, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ops;

    fn queued(n: i64) -> QueuedMutation {
        QueuedMutation {
            session_id: 7,
            request_id: format!("r{n}"),
            ops: vec![
                ops::increment_quest_steps("q", n),
                ops::set_flag("a.b", Some(serde_json::json!(n))),
            ],
        }
    }

    #[test]
    fn a_file_queue_survives_a_new_instance_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.json");
        assert!(FileQueue::new(&path).load().unwrap().is_empty());
        FileQueue::new(&path).save(&[queued(1), queued(2)]).unwrap();
        assert_eq!(FileQueue::new(&path).load().unwrap(), vec![queued(1), queued(2)]);
        FileQueue::new(&path).save(&[]).unwrap();
        assert!(FileQueue::new(&path).load().unwrap().is_empty());
    }

    #[test]
    fn the_memory_queue_keeps_the_last_save() {
        let q = MemoryQueue::default();
        q.save(&[queued(3)]).unwrap();
        assert_eq!(q.load().unwrap(), vec![queued(3)]);
    }
}
