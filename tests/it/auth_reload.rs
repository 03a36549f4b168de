//! The binary under systemd-style socket activation: SIGHUP under load
//! loses no request, the reload takes effect, and no password or SASL
//! payload reaches the log.

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use mailwarrant::testkit::dovecot_client::{Answer, DovecotClient};
use mailwarrant::testkit::slapd::Slapd;
use mailwarrant::testkit::{free_port, require_package, wait_until, ChildGuard};

const CLIENTS: usize = 8;

fn config(slapd: &Slapd, failed_text: &str) -> String {
    format!(
        "{}\n[store]\npath = \"state.sqlite\"\n[auth]\nfailure_delay = \"100ms\"\n[auth.texts]\nfailed = \"{failed_text}\"\n",
        // Each reload empties the caches, so every client binds again at
        // once; on a loaded CI machine that must not hit the operation
        // deadline (a timeout is a temporary failure, not a lost request).
        slapd.config_toml().replace("operation_timeout = \"3s\"", "operation_timeout = \"30s\"")
    )
}

#[test]
fn sighup_under_load_loses_no_request() {
    require_package("systemd").unwrap();
    let slapd = Slapd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mailwarrant.toml");
    std::fs::write(&file, config(&slapd, "Refused before reload")).unwrap();
    let port = free_port();
    let log = dir.path().join("mailwarrant.log");
    // systemd-socket-activate binds the socket and passes it with
    // LISTEN_FDS / LISTEN_FDNAMES, like the shipped mailwarrant.socket.
    let server = ChildGuard::spawn(
        "mailwarrant",
        Command::new("systemd-socket-activate")
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg("--fdname=dovecot-auth")
            .arg(env!("CARGO_BIN_EXE_mailwarrant"))
            .args(["--log-format", "json", "serve", "--config"])
            .arg(&file)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap()),
    )
    .unwrap();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    mailwarrant::testkit::wait_for_port(address, Duration::from_secs(10)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    rt.block_on(async {
        // The first connection starts the service; it must be answered.
        let ready = tokio::time::timeout(Duration::from_secs(60), DovecotClient::connect(address)).await;
        assert!(
            matches!(ready, Ok(Ok(_))),
            "no handshake through the activated socket: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut clients = Vec::new();
        for i in 0..CLIENTS {
            let (stop, ok, bad) = (stop.clone(), ok.clone(), bad.clone());
            clients.push(tokio::spawn(async move {
                let mut c = DovecotClient::connect(address).await.expect("handshake");
                let rip = IpAddr::from([127, 2, 0, i as u8 + 1]);
                let (user, password) =
                    if i % 2 == 0 { ("alice", "Alice-Demo-2026!") } else { ("bob", "Bob-Demo-2026!") };
                while !stop.load(Ordering::Relaxed) {
                    match c.plain(user, password, rip).await {
                        Ok(Answer::Ok { user: u }) if u == user => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            eprintln!("client {i}: {other:?}");
                            bad.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }));
        }
        let pid = server.id().unwrap().to_string();
        for round in 0..5 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            if round == 2 {
                std::fs::write(&file, config(&slapd, "Refused after reload")).unwrap();
            }
            assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.await.unwrap();
        }
        assert_eq!(bad.load(Ordering::Relaxed), 0, "requests lost across SIGHUP");
        assert!(ok.load(Ordering::Relaxed) > CLIENTS, "clients made progress");

        let mut c = DovecotClient::connect(address).await.unwrap();
        let refused = c.plain("alice", "wrong-one", "127.2.9.9".parse().unwrap()).await.unwrap();
        assert!(
            matches!(&refused, Answer::Fail { line } if line.ends_with("reason=Refused after reload")),
            "{refused:?}"
        );
    });

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("configuration reloaded")),
        "{text}"
    );
    assert!(text.contains("using a TCP socket from systemd"), "the inherited socket was used: {text}");
    assert!(text.contains("\"outcome\":\"accepted\""), "audit lines are written");
    // Sentinel: no password and no SASL PLAIN blob in any log line.
    let blob = base64::engine::general_purpose::STANDARD.encode("\0alice\0Alice-Demo-2026!");
    for secret in ["Alice-Demo-2026!", "Bob-Demo-2026!", "wrong-one", &blob] {
        assert!(!text.contains(secret), "{secret} leaked into the log");
    }
}
