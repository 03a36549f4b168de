//! A real SMTP server that keeps what it receives: Debian's
//! `python3-aiosmtpd` with its Maildir handler, on a free loopback port.
//!
//! Tests of mailwarrant's own mail (reminders, confirmations) read the
//! delivered messages back from the Maildir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{free_port, require_package, wait_for_port, ChildGuard};

pub struct SmtpServer {
    dir: tempfile::TempDir,
    pub port: u16,
    _server: ChildGuard,
}

impl SmtpServer {
    /// A server without TLS.
    pub fn start() -> Result<SmtpServer, String> {
        Self::launch(false)
    }

    /// A server that requires STARTTLS, with a certificate for 127.0.0.1
    /// signed by a throwaway CA (see [`SmtpServer::ca_file`]).
    pub fn start_starttls() -> Result<SmtpServer, String> {
        Self::launch(true)
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn launch(tls: bool) -> Result<SmtpServer, String> {
        require_package("python3-aiosmtpd")?;
        let dir = tempfile::Builder::new().prefix("mailwarrant-smtp").tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let mut command = Command::new("/usr/bin/python3");
        command.args(["-m", "aiosmtpd", "-n", "-l"]).arg(format!("127.0.0.1:{port}"));
        if tls {
            make_certificates(dir.path())?;
            command.arg("--tlscert").arg(dir.path().join("server.pem"));
            command.arg("--tlskey").arg(dir.path().join("server.key"));
        }
        command.args(["-c", "aiosmtpd.handlers.Mailbox"]).arg(dir.path().join("Maildir"));
        let server = ChildGuard::spawn("aiosmtpd", command.stdout(Stdio::null()).stderr(Stdio::null()))?;
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

/// A CA and a server certificate for 127.0.0.1, with openssl(1).
fn make_certificates(dir: &Path) -> Result<(), String> {
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("openssl").args(args).current_dir(dir).output().map_err(|e| format!("openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
        }
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=mailwarrant test CA",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ])?;
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        .map_err(|e| e.to_string())?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ])
}
