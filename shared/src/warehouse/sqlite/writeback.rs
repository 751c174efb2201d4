//! Early writeback of a load's pages. A load appends hundreds of megabytes to the SQLite file,
//! which the kernel keeps as dirty pages (it starts writing them back only past
//! `dirty_background_ratio`, 10 % of memory, or after 30 s), so the commit's `fsync` had to write
//! all of them at once: 0.22 s of a 1.4 s load of the 1,000,000-row bench file, with both cores
//! idle meanwhile. A thread of its own calls `fdatasync` on the file each time it has grown by
//! [`STEP`] since the last call, so the writeback overlaps parsing and inserting and the commit
//! finds little left to write (0.03 s on the same file).
//!
//! Safe at any moment of the transaction: SQLite writes a page into the file only when the
//! rollback journal already holds what it needs for a rollback (or, in WAL mode, into the log),
//! so making those writes durable early changes nothing a crash or a rollback can see. The
//! commit's own `fsync` stays the durability point; a failed early sync is ignored (the commit's
//! would fail the same way, and report it).

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

/// Growth of a file between two early syncs: large enough that the syncs cost nothing
/// measurable, small enough that the commit's share stays a few tens of milliseconds.
pub(super) const STEP: u64 = 32 * 1024 * 1024;

/// The writeback thread of one load. Dropping it stops the thread (after an `fdatasync` in
/// progress, if any).
pub(super) struct EarlyWriteback {
    nudge: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EarlyWriteback {
    /// Starts the thread for the database file at `db` and its WAL (`{db}-wal`, opened once it
    /// exists). `None` when the thread cannot start: the load runs without it.
    pub(super) fn start(db: &str) -> Option<Self> {
        if db.is_empty() {
            // An in-memory or temporary database: nothing to write back.
            return None;
        }
        let paths = vec![PathBuf::from(db), PathBuf::from(format!("{db}-wal"))];
        Self::start_with(paths, STEP, |file: &File| file.sync_data())
    }

    /// The same for any files, growth step and sync (the tests count the syncs).
    fn start_with(
        paths: Vec<PathBuf>,
        step: u64,
        sync: impl FnMut(&File) -> io::Result<()> + Send + 'static,
    ) -> Option<Self> {
        // One pending nudge is enough: the thread looks at the sizes when it wakes.
        let (nudge, nudges) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("tapline-writeback".to_string())
            .spawn(move || run(paths, step, nudges, sync))
            .ok()?;
        Some(Self {
            nudge: Some(nudge),
            thread: Some(thread),
        })
    }

    /// Tells the thread the files may have grown (after each appended batch). Never blocks.
    pub(super) fn nudge(&self) {
        if let Some(nudge) = &self.nudge {
            match nudge.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
            }
        }
    }
}

impl Drop for EarlyWriteback {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has seen the last nudge.
        self.nudge.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    paths: Vec<PathBuf>,
    step: u64,
    nudges: Receiver<()>,
    mut sync: impl FnMut(&File) -> io::Result<()>,
) {
    let mut files: Vec<Option<File>> = paths.iter().map(|_| None).collect();
    let mut synced = vec![0u64; paths.len()];
    while nudges.recv().is_ok() {
        for ((path, file), synced) in paths.iter().zip(&mut files).zip(&mut synced) {
            if file.is_none() {
                // Read-only is enough: fdatasync writes back the file's pages whatever the
                // descriptor's mode.
                *file = File::open(path).ok();
            }
            let Some(f) = file.as_ref() else { continue };
            let Ok(len) = f.metadata().map(|m| m.len()) else {
                continue;
            };
            if len >= synced.saturating_add(step) && sync(f).is_ok() {
                *synced = len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    use super::*;

    /// Starts a writeback over `paths` with a 1 KiB step whose syncs report the synced file's
    /// length on the returned channel.
    fn counting(paths: Vec<PathBuf>) -> (EarlyWriteback, Receiver<u64>) {
        let (tx, rx) = channel();
        let w = EarlyWriteback::start_with(paths, 1024, move |f: &File| {
            tx.send(f.metadata()?.len()).expect("test alive");
            Ok(())
        })
        .expect("thread starts");
        (w, rx)
    }

    #[test]
    fn syncs_a_file_each_time_it_grew_by_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.sqlite");
        let mut file = File::create(&path).unwrap();
        let (w, synced) = counting(vec![path.clone()]);

        file.write_all(&[0; 3000]).unwrap();
        w.nudge();
        // The thread's answer is the synchronisation; the timeout only fails a stuck test.
        assert_eq!(synced.recv_timeout(Duration::from_secs(30)), Ok(3000));

        // 500 more bytes are less than a step: the nudge is seen, and no sync follows.
        file.write_all(&[0; 500]).unwrap();
        w.nudge();
        drop(w); // joins the thread after it has handled every nudge
        assert_eq!(
            synced.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Disconnected)
        );
    }

    #[test]
    fn a_file_that_appears_later_is_followed_too() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.sqlite");
        let wal = dir.path().join("w.sqlite-wal");
        File::create(&db).unwrap();
        let (w, synced) = counting(vec![db, wal.clone()]);
        w.nudge(); // the WAL does not exist yet: nothing to sync, nothing fails

        File::create(&wal).unwrap().write_all(&[0; 2048]).unwrap();
        w.nudge();
        assert_eq!(synced.recv_timeout(Duration::from_secs(30)), Ok(2048));
        drop(w);
        assert!(synced.try_recv().is_err());
    }

    #[test]
    fn no_thread_for_an_in_memory_database() {
        assert!(EarlyWriteback::start("").is_none());
    }
}
