//! A real Redis on a free loopback port, in a temporary directory, with
//! no persistence: Debian's `redis-server`. Stop and start it again on the
//! same port to test an outage and the recovery after it.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{free_port, require_package, wait_for_port, ChildGuard};

const REDIS_SERVER: &str = "/usr/bin/redis-server";

pub struct RedisServer {
    dir: tempfile::TempDir,
    pub port: u16,
    server: Option<ChildGuard>,
    /// Extra command-line options (`--replicaof …`).
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> Result<RedisServer, String> {
        require_package("redis-server")?;
        let dir = tempfile::Builder::new().prefix("mailwarrant-redis").tempdir().map_err(|e| e.to_string())?;
        let mut redis = RedisServer { dir, port: free_port(), server: None, extra: Vec::new() };
        redis.restart()?;
        Ok(redis)
    }

    /// A server that refuses clients without `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> Result<RedisServer, String> {
        require_package("redis-server")?;
        let dir = tempfile::Builder::new().prefix("mailwarrant-redis").tempdir().map_err(|e| e.to_string())?;
        let extra = vec!["--requirepass".into(), password.into()];
        let mut redis = RedisServer { dir, port: free_port(), server: None, extra };
        redis.restart()?;
        Ok(redis)
    }

    /// A replica of the server on `primary_port`, for Sentinel failovers.
    pub fn start_replica_of(primary_port: u16) -> Result<RedisServer, String> {
        require_package("redis-server")?;
        let dir = tempfile::Builder::new().prefix("mailwarrant-redis").tempdir().map_err(|e| e.to_string())?;
        let extra = vec!["--replicaof".into(), "127.0.0.1".into(), primary_port.to_string()];
        let mut redis = RedisServer { dir, port: free_port(), server: None, extra };
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
                .args(&self.extra)
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

/// One Redis Sentinel (`redis-server CONF --sentinel`) monitoring the
/// primary on `primary_port` as `name`, with a quorum of one and a short
/// down-after time, so a test sees a failover within seconds.
pub struct RedisSentinel {
    _dir: tempfile::TempDir,
    pub port: u16,
    _server: ChildGuard,
}

impl RedisSentinel {
    pub fn start(primary_port: u16, name: &str) -> Result<RedisSentinel, String> {
        Self::start_with_auth(primary_port, name, None)
    }

    /// The same for a primary that needs `primary_password`.
    pub fn start_with_auth(
        primary_port: u16,
        name: &str,
        primary_password: Option<&str>,
    ) -> Result<RedisSentinel, String> {
        require_package("redis-server")?;
        let dir = tempfile::Builder::new().prefix("mailwarrant-sentinel").tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        // Sentinel rewrites its own config file: it must be writable.
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\nlogfile \"\"\ndir {dir}\n\
                 sentinel monitor {name} 127.0.0.1 {primary_port} 1\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 5000\n\
                 sentinel parallel-syncs {name} 1\n{auth}",
                dir = dir.path().display(),
                auth = primary_password.map(|p| format!("sentinel auth-pass {name} {p}\n")).unwrap_or_default()
            ),
        )
        .map_err(|e| e.to_string())?;
        let server = ChildGuard::spawn(
            "redis-sentinel",
            Command::new(REDIS_SERVER).arg(&conf).arg("--sentinel").stdout(Stdio::null()).stderr(Stdio::null()),
        )?;
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(15))?;
        Ok(RedisSentinel { _dir: dir, port, _server: server })
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}
