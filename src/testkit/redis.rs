//! A real Redis on a free loopback port, in a temporary directory, with
//! no persistence: Debian's `redis-server`. Stop and start it again on the
//! same port to test an outage and the recovery after it.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{free_port, require_program, wait_for_port, ChildGuard};

const REDIS_SERVER: &str = "/usr/bin/redis-server";

pub struct RedisServer {
    dir: tempfile::TempDir,
    pub port: u16,
    server: Option<ChildGuard>,
}

impl RedisServer {
    pub fn start() -> Result<RedisServer, String> {
        require_program(REDIS_SERVER, "redis-server")?;
        let dir = tempfile::Builder::new().prefix("mailwarrant-redis").tempdir().map_err(|e| e.to_string())?;
        let mut redis = RedisServer { dir, port: free_port(), server: None };
        redis.restart()?;
        Ok(redis)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL, as a crash); its data is gone with it.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }

    /// Starts the server (again) on the same port; waits until it accepts.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let server = ChildGuard::spawn(
            "redis-server",
            Command::new(REDIS_SERVER)
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--daemonize", "no", "--protected-mode", "yes", "--logfile", ""])
                .arg("--dir")
                .arg(self.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        self.server = Some(server);
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], self.port)), Duration::from_secs(15))
    }

    /// `[store]` lines for a mailwarrant config using this server.
    pub fn store_toml(&self, prefix: &str) -> String {
        format!("[store]\nkind = \"redis\"\nurl = \"{}\"\nprefix = \"{prefix}\"\n", self.url())
    }
}
