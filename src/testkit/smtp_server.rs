//! A real SMTP server that keeps what it receives: Debian's
//! `python3-aiosmtpd` with its Maildir handler, on a free loopback port.
//!
//! Tests of mailwarrant's own mail (reminders, confirmations) read the
//! delivered messages back from the Maildir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{free_port, require_program, wait_for_port, ChildGuard};

pub struct SmtpServer {
    dir: tempfile::TempDir,
    pub port: u16,
    _server: ChildGuard,
}

impl SmtpServer {
    pub fn start() -> Result<SmtpServer, String> {
        require_program("/usr/lib/python3/dist-packages/aiosmtpd", "python3-aiosmtpd")?;
        let dir = tempfile::Builder::new().prefix("mailwarrant-smtp").tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let server = ChildGuard::spawn(
            "aiosmtpd",
            Command::new("/usr/bin/python3")
                .args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(dir.path().join("Maildir"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(15))?;
        Ok(SmtpServer { dir, port, _server: server })
    }

    /// Every message received so far, raw, oldest first.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(self.dir.path().join("Maildir").join(sub)).ok())
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| (e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), e.path()))
            .collect();
        files.sort();
        files.into_iter().filter_map(|(_, p)| std::fs::read_to_string(p).ok()).collect()
    }
}
