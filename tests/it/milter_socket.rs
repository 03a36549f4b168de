//! The milter listener over real sockets (TCP and UNIX) against the test
//! slapd, driven byte for byte as Postfix drives it: negotiation, several
//! messages per connection, abort, quit; and the bad input a fuzzer would
//! send (garbage, an oversized frame) closing only that connection.

use std::path::Path;
use std::time::Duration;

use mailwarrant::config::Config;
use mailwarrant::protocols::milter::codec::{decode_reply, encode_command, Command, Reply};
use mailwarrant::protocols::milter::listener::MilterListeners;
use mailwarrant::serve::shutdown;
use mailwarrant::testkit::slapd::Slapd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

struct Server {
    _slapd: Slapd,
    dir: tempfile::TempDir,
    tcp: std::net::SocketAddr,
    stop: shutdown::ShutdownTrigger,
    served: tokio::task::JoinHandle<Result<(), mailwarrant::serve::ServeError>>,
}

async fn server() -> Server {
    server_with("", "").await
}

/// `policy_extra` goes into `[policy]`, `milter_extra` into `[milter]`.
async fn server_with(policy_extra: &str, milter_extra: &str) -> Server {
    let slapd = tokio::task::spawn_blocking(Slapd::start).await.unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[auth.dovecot]\nlisten = []\n[store]\npath = \"s.sqlite\"\n[policy]\nlisten = \"\"\nunix_socket = \"policy.sock\"\n\
         organisation_domains = [\"example.com\"]\ngroups = {{ interns = \"interns\" }}\n{policy_extra}\n\
         [policy.profiles.default]\nrequire_sender_match = true\nrequire_header_from_match = true\nmax_attachments = 2\n\
         rate_limits = [{{ rate = \"2/1d\" }}]\n\
         [policy.profiles.interns]\npriority = 1\nmay_send_attachments = false\n\
         [milter]\nlisten = \"127.0.0.1:0\"\nunix_socket = \"milter.sock\"\n{milter_extra}\n",
        slapd.config_toml()
    );
    let config = Config::from_toml(&text, dir.path(), Path::new("milter-test.toml")).unwrap_or_else(|e| panic!("{e}"));
    let app = mailwarrant::serve::App::build(config).await.unwrap();
    let listeners = MilterListeners::bind(app.config.milter.as_ref().unwrap()).await.unwrap();
    let tcp = listeners.local_addr().unwrap();
    let (stop, shutdown) = shutdown::channel();
    let served = tokio::spawn(listeners.serve(app.policy.clone().unwrap(), shutdown));
    Server { _slapd: slapd, dir, tcp, stop, served }
}

async fn reply<S: AsyncRead + Unpin>(s: &mut S) -> Option<Reply> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(r) = decode_reply(&mut buf).unwrap() {
            assert!(buf.is_empty(), "one reply expected, more bytes followed");
            return Some(r);
        }
        match tokio::time::timeout(Duration::from_secs(20), s.read(&mut chunk)).await.expect("reply in time") {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, commands: &[Command]) {
    let bytes: Vec<u8> = commands.iter().flat_map(encode_command).collect();
    s.write_all(&bytes).await.unwrap();
}

fn mail(login: &str, from_header: &str, body: &str) -> Vec<Command> {
    vec![
        Command::Macro { stage: b'M', pairs: vec![("{auth_authen}".into(), login.into())] },
        Command::Mail(vec![format!("<{login}@example.com>")]),
        Command::Rcpt(vec!["<bob@example.com>".into()]),
        Command::Header { name: "From".into(), value: from_header.into() },
        Command::Header { name: "Content-Type".into(), value: "multipart/mixed; boundary=b".into() },
        Command::Body(body.as_bytes().to_vec()),
    ]
}

const ONE_FILE: &str = "--b\r\n\r\ntext\r\n--b\r\nContent-Type: application/pdf\r\n\r\nPDF\r\n--b--\r\n";

async fn postfix_like_session<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    send(&mut s, &[Command::OptNeg { version: 6, actions: 0x1ff, protocol: 0x1f_ffff }]).await;
    let Some(Reply::OptNeg { version: 6, protocol, .. }) = reply(&mut s).await else { panic!("negotiation") };
    assert_ne!(protocol & 0x8_0000, 0, "no reply to body chunks");
    // Message 1: fine.
    send(&mut s, &mail("alice", "Alice <alice@example.com>", ONE_FILE)).await;
    send(&mut s, &[Command::EndOfBody(vec![])]).await;
    assert_eq!(reply(&mut s).await, Some(Reply::Continue));
    // Message 2: aborted half-way (its spoofed From must not leak).
    send(&mut s, &mail("alice", "bob@example.com", "x")).await;
    send(&mut s, &[Command::Abort]).await;
    // Message 3: carol (intern) with a file, same connection.
    send(&mut s, &mail("carol", "carol@example.com", ONE_FILE)).await;
    send(&mut s, &[Command::EndOfBody(vec![])]).await;
    let Some(Reply::ReplyCode(text)) = reply(&mut s).await else { panic!() };
    assert!(text.starts_with("550 5.7.1 carol may not send attachments (1 found); rule attachments (ref "), "{text}");
    // Message 4: a spoofed From.
    send(&mut s, &mail("alice", "bob@example.com", "hi\r\n")).await;
    send(&mut s, &[Command::EndOfBody(vec![])]).await;
    let Some(Reply::ReplyCode(text)) = reply(&mut s).await else { panic!() };
    assert!(text.contains("header sender <bob@example.com> not owned by alice"), "{text}");
    // Message 5, after an abort between messages: still fine (the rate
    // limit of 2/1d is not charged by the milter by default).
    send(&mut s, &[Command::Abort]).await;
    send(&mut s, &mail("alice", "alice@example.com", ONE_FILE)).await;
    send(&mut s, &[Command::EndOfBody(vec![])]).await;
    assert_eq!(reply(&mut s).await, Some(Reply::Continue));
    send(&mut s, &[Command::Quit]).await;
    assert_eq!(reply(&mut s).await, None, "quit closes");
}

#[tokio::test]
async fn messages_over_tcp_and_unix() {
    let srv = server().await;
    postfix_like_session(TcpStream::connect(srv.tcp).await.unwrap()).await;
    postfix_like_session(UnixStream::connect(srv.dir.path().join("milter.sock")).await.unwrap()).await;
}

#[tokio::test]
async fn bad_input_closes_that_connection_only() {
    let srv = server().await;
    let bad: Vec<Vec<u8>> = vec![
        vec![0x00, 0x10, 0x00, 0x01, b'B'],          // 1 MiB + 1 frame
        vec![0xff, 0xff, 0xff, 0xff, b'B', 1, 2, 3], // 4 GiB frame
        vec![0, 0, 0, 0],                            // empty frame
        vec![0, 0, 0, 1, b'Z'],                      // unknown command
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0, 0, 0, 4, b'O', 0, 0, 0], // short negotiation
    ];
    for bytes in bad {
        let mut s = TcpStream::connect(srv.tcp).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        assert_eq!(reply(&mut s).await, None, "{bytes:?} should close the connection");
    }
    // A client that sends a 2 MiB frame header then data: closed before
    // the data is read.
    let mut s = TcpStream::connect(srv.tcp).await.unwrap();
    s.write_all(&[0, 0x20, 0, 0, b'B']).await.unwrap();
    let _ = s.write_all(&vec![b'x'; 64 * 1024]).await;
    assert_eq!(reply(&mut s).await, None);
    // The listener still serves.
    postfix_like_session(TcpStream::connect(srv.tcp).await.unwrap()).await;
}

/// A client that writes as Postfix's milter client does — Nagle on (no
/// `TCP_NODELAY`), each command its own write, no wait between the
/// commands whose replies were waived — gets each verdict without waiting
/// on a delayed ACK (Linux: 20–40 ms). Before the listener acknowledged
/// every read at once, each end of message waited ~37 ms (issue 20).
#[tokio::test]
async fn nagle_on_the_mta_side_does_not_stall_the_verdict() {
    let srv = server().await;
    let mut s = TcpStream::connect(srv.tcp).await.unwrap();
    assert!(!s.nodelay().unwrap(), "the client keeps Nagle on, as Postfix does");
    send(&mut s, &[Command::OptNeg { version: 6, actions: 0x1ff, protocol: 0x1f_ffff }]).await;
    reply(&mut s).await.unwrap();
    let mut took = Vec::new();
    for _ in 0..9 {
        let began = std::time::Instant::now();
        for command in mail("alice", "Alice <alice@example.com>", "hi\r\n") {
            send(&mut s, &[command]).await;
        }
        send(&mut s, &[Command::EndOfBody(vec![])]).await;
        assert_eq!(reply(&mut s).await, Some(Reply::Continue));
        took.push(began.elapsed());
    }
    took.sort();
    // The median: one slow message on a loaded machine is not a stall.
    assert!(took[4] < Duration::from_millis(15), "verdicts waited on a timer: {took:?}");
}

async fn verdict<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, mut commands: Vec<Command>, queue_id: &str) -> Reply {
    commands.push(Command::Macro { stage: b'E', pairs: vec![("i".into(), queue_id.into())] });
    commands.push(Command::EndOfBody(vec![]));
    send(s, &commands).await;
    reply(s).await.expect("a verdict")
}

#[tokio::test]
async fn unauthenticated_mail_follows_the_policy_setting() {
    let srv = server().await;
    let mut s = TcpStream::connect(srv.tcp).await.unwrap();
    send(&mut s, &[Command::OptNeg { version: 6, actions: 0x1ff, protocol: 0x1f_ffff }]).await;
    reply(&mut s).await.unwrap();
    let mut anonymous = mail("alice", "alice@example.com", "hi\r\n");
    anonymous.remove(0);
    let Reply::ReplyCode(text) = verdict(&mut s, anonymous, "Q1").await else { panic!() };
    assert!(text.starts_with("530 5.7.0 authentication required"), "{text}");
}

/// With `charge_rate_limits = true` the milter charges once per queue id
/// (a retried end of message is not counted twice) and defers at the limit;
/// `[policy.unauthenticated_by_context] milter = "dunno"` lets
/// unauthenticated mail through the milter.
#[tokio::test]
async fn a_charging_milter_counts_each_message_once() {
    let srv = server_with("unauthenticated_by_context = { milter = \"dunno\" }", "charge_rate_limits = true").await;
    let mut s = TcpStream::connect(srv.tcp).await.unwrap();
    send(&mut s, &[Command::OptNeg { version: 6, actions: 0x1ff, protocol: 0x1f_ffff }]).await;
    reply(&mut s).await.unwrap();
    let ok = || mail("alice", "alice@example.com", "hi\r\n");
    assert_eq!(verdict(&mut s, ok(), "Q1").await, Reply::Continue);
    assert_eq!(verdict(&mut s, ok(), "Q1").await, Reply::Continue, "the same queue id again is not charged");
    assert_eq!(verdict(&mut s, ok(), "Q2").await, Reply::Continue);
    let Reply::ReplyCode(text) = verdict(&mut s, ok(), "Q3").await else { panic!() };
    assert!(text.starts_with("450 4.7.1 rate limit user_messages_1d: 2/2 messages today"), "{text}");
    let mut anonymous = ok();
    anonymous.remove(0);
    assert_eq!(verdict(&mut s, anonymous, "Q4").await, Reply::Continue);
}

/// Shutdown closes idle connections between messages and the listener
/// returns; the UNIX socket file is removed.
#[tokio::test]
async fn shutdown_closes_idle_connections_and_stops() {
    let srv = server().await;
    let mut s = TcpStream::connect(srv.tcp).await.unwrap();
    send(&mut s, &[Command::OptNeg { version: 6, actions: 0x1ff, protocol: 0x1f_ffff }]).await;
    reply(&mut s).await.unwrap();
    srv.stop.fire();
    assert_eq!(reply(&mut s).await, None, "closed at shutdown");
    tokio::time::timeout(Duration::from_secs(10), srv.served).await.expect("listener stops").unwrap().unwrap();
    assert!(!srv.dir.path().join("milter.sock").exists());
    assert!(TcpStream::connect(srv.tcp).await.is_err());
}
