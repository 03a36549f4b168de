//! The policy delegation listener over real sockets (TCP and UNIX), fed
//! the requests a real Postfix 3.7 sent (recorded in
//! `tests/data/postfix-3.7-policy-requests.txt`: authenticated alice, bob
//! and an unknown eve), plus the malformed input a fuzzer would try.

use std::path::Path;
use std::time::Duration;

use mailwarrant::config::Config;
use mailwarrant::policy_service::PolicyService;
use mailwarrant::protocols::policy_delegation::listener::PolicyListeners;
use mailwarrant::serve::shutdown;
use mailwarrant::testkit::slapd::Slapd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

const RECORDED: &[u8] = include_bytes!("../data/postfix-3.7-policy-requests.txt");

struct Server {
    _slapd: Slapd,
    _dir: tempfile::TempDir,
    tcp: std::net::SocketAddr,
    unix: std::path::PathBuf,
    service: PolicyService,
    _stop: shutdown::ShutdownTrigger,
}

async fn server() -> Server {
    let slapd = tokio::task::spawn_blocking(Slapd::start).await.unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[auth.dovecot]\nlisten = []\n[store]\npath = \"s.sqlite\"\n[policy]\nlisten = \"127.0.0.1:0\"\nunix_socket = \"policy.sock\"\n\
         organisation_domains = [\"example.com\"]\ngroups = {{ sales = \"sales\" }}\n\
         [policy.profiles.default]\nrequire_sender_match = true\nmay_send_to_lists = false\n\
         rate_limits = [{{ rate = \"2/1d\" }}]\n[policy.profiles.sales]\npriority = 1\nmay_send_to_lists = true\n",
        slapd.config_toml()
    );
    let config = Config::from_toml(&text, dir.path(), Path::new("socket-test.toml")).unwrap_or_else(|e| panic!("{e}"));
    let app = mailwarrant::serve::App::build(config).await.unwrap();
    let service = app.policy.clone().unwrap();
    let settings = app.config.policy.clone().unwrap();
    let listeners = PolicyListeners::bind(&settings).await.unwrap();
    let tcp = listeners.local_addr().unwrap();
    let (stop, shutdown) = shutdown::channel();
    tokio::spawn(listeners.serve(service.clone(), shutdown));
    Server { _slapd: slapd, unix: dir.path().join("policy.sock"), _dir: dir, tcp, service, _stop: stop }
}

/// Reads replies (each `action=…\n\n`) until `n` are in or the peer closes.
async fn replies<S: AsyncRead + Unpin>(stream: &mut S, n: usize) -> Vec<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        let done: Vec<String> = text.split_terminator("\n\n").map(str::to_owned).collect();
        if text.ends_with("\n\n") && done.len() >= n {
            return done;
        }
        match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return text.split_terminator("\n\n").filter(|_| text.ends_with("\n\n")).map(str::to_owned).collect()
            }
            Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
            Err(_) => panic!("no reply within 20 s; got {text:?}"),
        }
    }
}

async fn recorded_session<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    // Postfix sends one request at a time; sending all 21 in one write
    // proves the reader keeps them apart.
    stream.write_all(RECORDED).await.unwrap();
    let got = replies(&mut stream, 21).await;
    let got: Vec<&str> = got.iter().map(|r| r.split(" (ref ").next().unwrap()).collect();
    assert_eq!(got.len(), 21, "{got:?}");
    assert!(got[..7].iter().all(|r| *r == "action=DUNNO"), "{got:?}");
    assert_eq!(got[7], "action=553 5.7.1 sender <alice@example.com> not owned by bob; rule sender_match");
    assert!(
        got[8..].iter().all(|r| r.starts_with("action=550 5.7.1 login \"eve\" is not in the directory")),
        "{got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_postfix_requests_over_tcp_and_unix_and_bad_input() {
    let s = server().await;
    recorded_session(TcpStream::connect(s.tcp).await.unwrap()).await;
    // The same instances again over the UNIX socket: already charged, so
    // the answers do not change (alice had 1 message, bob 1, limit 2).
    recorded_session(UnixStream::connect(&s.unix).await.unwrap()).await;

    // A persistent good connection survives bad neighbours.
    let mut good = TcpStream::connect(s.tcp).await.unwrap();
    let probe = b"request=smtpd_access_policy\nprotocol_state=RCPT\nsasl_username=alice\nsender=alice@example.com\nrecipient=all-staff@example.com\n\n";
    good.write_all(probe).await.unwrap();
    assert_eq!(replies(&mut good, 1).await, ["action=DUNNO"]);
    for bad in [
        &b"hello there\n\n"[..],                              // no '='
        &b"request=other\n\n"[..],                            // not a policy request
        &b"request=smtpd_access_policy\nsender=a\0b\n\n"[..], // NUL
        &vec![b'x'; 70_000][..],                              // oversized, no newline
    ] {
        let mut c = TcpStream::connect(s.tcp).await.unwrap();
        c.write_all(bad).await.unwrap();
        assert!(
            replies(&mut c, 1).await.is_empty(),
            "no reply, just a close, for {:?}",
            String::from_utf8_lossy(&bad[..bad.len().min(40)])
        );
    }
    good.write_all(probe).await.unwrap();
    assert_eq!(replies(&mut good, 1).await, ["action=DUNNO"]);

    // A request cut off by EOF decides nothing and counts nothing.
    let mut cut = TcpStream::connect(s.tcp).await.unwrap();
    cut.write_all(b"request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\nsasl_username=dave\nsender=dave@example.com\nrecipient_count=1\ninstance=cut.1\n").await.unwrap();
    cut.shutdown().await.unwrap();
    assert!(replies(&mut cut, 1).await.is_empty());
    let now = time::OffsetDateTime::now_utc();
    let report = mailwarrant::policy_service::explain::policy_report(&s.service, "dave", None, now).await.unwrap();
    assert_eq!(report.counters[0].used, 0);
    let report = mailwarrant::policy_service::explain::policy_report(&s.service, "bob", None, now).await.unwrap();
    assert_eq!(report.counters[0].used, 1, "bob's recorded message counted once across both sessions");
}
