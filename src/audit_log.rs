//! The structured audit log: one JSON object per line for every AUTH and
//! policy decision, from every front end, in the file `[audit] path`.
//!
//! Written by one dedicated thread fed through a bounded channel: a
//! request never waits for the disk, nor wakes the thread for each line
//! (it writes what came within 100 ms in one go, and sleeps while there
//! is nothing to write). When the disk falls that far behind,
//! lines are dropped and counted (`mailwarrant_audit_lines_dropped_total`)
//! rather than stalling mail. The two hooks are the AUTH core
//! (`Authenticator::authenticate`) and `PolicyService::check_as`, once
//! each; no front end writes here itself.
//!
//! A line holds time, front end, kind, login (the canonical one when
//! known, else what was typed, JSON-escaped), client, outcome, reason or
//! rule, and the policy reference. Never a password: the record types
//! below have no field that could hold one.
//!
//! SIGHUP reopens the file ([`AuditLog::reopen`]), so logrotate can move
//! it away and have the next line start a new one without losing lines.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::AuditSettings;

/// Longest login or address copied into a line.
const MAX_FIELD: usize = 256;

/// One decision, as written.
#[derive(Debug, Serialize)]
pub struct AuditLine<'a> {
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// `auth` or `policy`.
    pub kind: &'static str,
    /// `dovecot_auth`, `saslauthd`, `policy`, `milter`, `http`.
    pub front_end: &'static str,
    pub login: Option<&'a str>,
    pub client: Option<String>,
    /// AUTH: `accepted`, `refused`, …; policy: `accept`, `reject`, `defer`.
    pub outcome: &'static str,
    /// AUTH: the exact reason; policy: the rule (`accepted` when none).
    pub rule: String,
    /// The policy refusal reference (`(ref …)` in the reply).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<&'a str>,
    /// Observe-mode refusals held back (`would_reject rule`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub observed: Vec<String>,
    /// AUTH: from the request's arrival to the decision (the failure delay
    /// comes after and is not included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}

/// A cheap handle; disabled when `[audit]` is absent.
#[derive(Clone, Default)]
pub struct AuditLog {
    tx: Option<SyncSender<Vec<u8>>>,
    /// Set by [`AuditLog::reopen`]; the writer reopens the file before its
    /// next write. A flag rather than a queued message, so a reopen is
    /// never lost to a full queue.
    reopen: Arc<AtomicBool>,
}

/// Why the audit file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the audit log {path}: {source}")]
pub struct AuditError {
    path: String,
    source: std::io::Error,
}

impl AuditLog {
    /// A handle that writes nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Opens (appends to) the file and starts the writer thread.
    pub fn open(settings: &AuditSettings) -> Result<Self, AuditError> {
        let file = open_file(&settings.path)
            .map_err(|source| AuditError { path: settings.path.display().to_string(), source })?;
        let (tx, rx) = sync_channel::<Vec<u8>>(settings.queue);
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer { path: settings.path.clone(), out: BufWriter::new(file), reopen: reopen.clone() };
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| AuditError { path: settings.path.display().to_string(), source })?;
        Ok(Self { tx: Some(tx), reopen })
    }

    /// Closes the file and opens `[audit] path` again before the next
    /// line (SIGHUP, after logrotate moved it): lines queued before this
    /// call go to the old file, lines after it to the new one. When the
    /// path cannot be opened, the old file is kept and the error logged.
    pub fn reopen(&self) {
        let Some(tx) = &self.tx else { return };
        self.reopen.store(true, Ordering::Release);
        // The marker orders the reopen among the lines and wakes a
        // sleeping writer; with the queue full, the flag alone makes the
        // writer reopen after the batch.
        let _ = tx.try_send(Vec::new());
    }

    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one line; never blocks.
    pub fn write(&self, line: &AuditLine<'_>) {
        let Some(tx) = &self.tx else { return };
        let mut bytes = match serde_json::to_vec(line) {
            Ok(b) => b,
            Err(_) => return,
        };
        bytes.push(b'\n');
        match tx.try_send(bytes) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => crate::metrics::audit_line_dropped(),
            Err(TrySendError::Disconnected(_)) => crate::metrics::audit_line_dropped(),
        }
    }
}

/// Cuts a client-supplied value to [`MAX_FIELD`] bytes (on a char
/// boundary); JSON escaping handles control characters.
pub fn clip(s: &str) -> &str {
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn open_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().create(true).append(true).mode(0o640).open(path)
}

/// How long a line may wait in the queue. The writer is woken by the
/// first line after a quiet spell, then sleeps this long and takes
/// everything queued, instead of being woken for each line: a thread
/// wake-up costs a decision more than writing its line does.
const WRITE_EVERY: Duration = Duration::from_millis(100);

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    out: BufWriter<std::fs::File>,
    reopen: Arc<AtomicBool>,
}

impl Writer {
    /// Blocks while nothing is queued; after the first line, writes what
    /// came within [`WRITE_EVERY`] in one flush; ends (after writing the
    /// rest) when every handle is gone. An empty message is the place in
    /// the queue where [`AuditLog::reopen`] was asked: lines before it go
    /// to the old file, lines after it to the new one.
    fn run(mut self, rx: Receiver<Vec<u8>>) {
        while let Ok(first) = rx.recv() {
            if !first.is_empty() {
                std::thread::sleep(WRITE_EVERY);
            }
            let mut failed = self.take(&first);
            let mut gone = false;
            loop {
                match rx.try_recv() {
                    Ok(line) => failed |= self.take(&line),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        gone = true;
                        break;
                    }
                }
            }
            failed |= self.out.flush().is_err();
            if failed {
                tracing::error!("cannot write the audit log; lines are being lost");
            }
            if gone {
                return;
            }
            // A reopen whose marker did not fit in a full queue.
            self.reopen_if_asked();
        }
    }

    /// Writes one line, or reopens at a reopen marker; true on a failed write.
    fn take(&mut self, message: &[u8]) -> bool {
        if message.is_empty() {
            self.reopen_if_asked();
            false
        } else {
            self.out.write_all(message).is_err()
        }
    }

    /// Swaps in a fresh handle on the path when [`AuditLog::reopen`] asked.
    fn reopen_if_asked(&mut self) {
        if !self.reopen.swap(false, Ordering::AcqRel) {
            return;
        }
        if self.out.flush().is_err() {
            tracing::error!("cannot write the audit log; lines are being lost");
        }
        match open_file(&self.path) {
            Ok(file) => {
                self.out = BufWriter::new(file);
                tracing::info!(path = %self.path.display(), "audit log reopened");
            }
            Err(e) => tracing::error!(
                path = %self.path.display(), error = %e,
                "cannot reopen the audit log; still writing to the old file"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_and_hold_what_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let settings = AuditSettings { path: dir.path().join("audit.jsonl"), queue: 16 };
        let log = AuditLog::open(&settings).unwrap();
        let typed = "x\"\nfake";
        log.write(&AuditLine {
            time: OffsetDateTime::UNIX_EPOCH,
            kind: "auth",
            front_end: "http",
            login: Some(typed),
            client: Some("192.0.2.1".into()),
            outcome: "refused",
            rule: "invalid_credentials".into(),
            reference: None,
            stage: None,
            sender: None,
            recipient: None,
            observed: vec![],
            latency_ms: Some(1.5),
        });
        drop(log);
        let path = settings.path.clone();
        assert!(crate::testkit::wait_until(std::time::Duration::from_secs(5), || {
            std::fs::read_to_string(&path).is_ok_and(|t| t.ends_with('\n'))
        }));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "a newline in the login cannot forge a line");
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["login"], typed);
        assert_eq!(v["time"], "1970-01-01T00:00:00Z");
        assert_eq!(v["rule"], "invalid_credentials");
        assert_eq!(clip(&"é".repeat(200)).len(), 256);
    }

    #[test]
    fn reopen_starts_a_new_file_after_the_old_one_was_moved() {
        let dir = tempfile::tempdir().unwrap();
        let settings = AuditSettings { path: dir.path().join("audit.jsonl"), queue: 16 };
        let log = AuditLog::open(&settings).unwrap();
        let line = |outcome| AuditLine {
            time: OffsetDateTime::UNIX_EPOCH,
            kind: "auth",
            front_end: "http",
            login: Some("alice"),
            client: None,
            outcome,
            rule: "x".into(),
            reference: None,
            stage: None,
            sender: None,
            recipient: None,
            observed: vec![],
            latency_ms: None,
        };
        // All within one batch of the writer: the order in the queue
        // decides the file.
        log.write(&line("before"));
        let (path, moved) = (settings.path.clone(), dir.path().join("audit.jsonl.1"));
        std::fs::rename(&path, &moved).unwrap();
        log.reopen();
        log.write(&line("after"));
        assert!(
            crate::testkit::wait_until(Duration::from_secs(5), || {
                std::fs::read_to_string(&path).is_ok_and(|t| t.contains("after"))
            }),
            "the line after the reopen is in a new file at the path"
        );
        let (old, new) = (std::fs::read_to_string(&moved).unwrap(), std::fs::read_to_string(&path).unwrap());
        assert!(old.contains("before") && !old.contains("after"), "{old}");
        assert!(!new.contains("before"), "{new}");
    }
}
