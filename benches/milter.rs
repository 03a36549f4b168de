//! Milter load benchmark (issue 8).
//!
//! A Rust load client speaks the milter protocol (version 6, negotiated as
//! Postfix 3.x does) to mailwarrant's milter in-process, over persistent
//! connections (one per simulated smtpd session): per message the MAIL
//! macros, MAIL, one RCPT, the headers, the body in 64 KiB chunks and end
//! of body, then waits for the verdict. Messages are 20 KiB with two
//! base64 attachments; senders drawn from the test slapd's users; the
//! header From check and attachment limits are on (every message is
//! accepted). Prints messages/s, p50 and p99 per concurrency level, then
//! the memory per connection (VmRSS delta over N idle, then N mid-message
//! connections) and the resident-memory peak while one message grows from
//! 100 KiB to 50 MiB (the MIME walk streams).
//!
//! `cargo bench --bench milter -- [--concurrency 8,32] [--seconds 3]
//!  [--users 1000] [--connections 500]`

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailwarrant::protocols::milter::codec::{decode_reply, encode_command, Command, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    concurrency: Vec<usize>,
    seconds: f64,
    users: usize,
    connections: usize,
}

fn args() -> Args {
    let mut a = Args { concurrency: vec![8, 32], seconds: 3.0, users: 1000, connections: 500 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--concurrency" => a.concurrency = value().split(',').map(|c| c.parse().expect("--concurrency")).collect(),
            "--seconds" => a.seconds = value().parse().expect("--seconds N"),
            "--users" => a.users = value().parse().expect("--users N"),
            "--connections" => a.connections = value().parse().expect("--connections N"),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

const OPTNEG: Command = Command::OptNeg { version: 6, actions: 0x1ff, protocol: 0x1f_ffff };

/// A ~20 KiB body: text and two base64 attachments of ~9 KiB each.
fn body() -> Vec<u8> {
    let line = format!("{}\r\n", "QUJD".repeat(19));
    let file = line.repeat(128);
    let mut b = String::from("--b\r\nContent-Type: text/plain\r\n\r\nHello, please find the files attached.\r\n");
    for name in ["report.pdf", "figures.xlsx"] {
        b.push_str(&format!(
            "--b\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{file}"
        ));
    }
    b.push_str("--b--\r\n");
    b.into_bytes()
}

/// Everything up to (not including) the body of one message.
fn envelope(user: usize) -> Vec<u8> {
    let login = format!("user{user:05}");
    [
        Command::Macro {
            stage: b'M',
            pairs: vec![("{auth_authen}".into(), login.clone()), ("{client_addr}".into(), "127.0.0.1".into())],
        },
        Command::Mail(vec![format!("<{login}@example.com>")]),
        Command::Rcpt(vec!["<colleague@example.com>".into()]),
        Command::Header { name: "From".into(), value: format!("User {user} <{login}@example.com>") },
        Command::Header { name: "To".into(), value: "colleague@example.com".into() },
        Command::Header { name: "Subject".into(), value: "quarterly report".into() },
        Command::Header { name: "MIME-Version".into(), value: "1.0".into() },
        Command::Header { name: "Content-Type".into(), value: "multipart/mixed; boundary=\"b\"".into() },
    ]
    .iter()
    .flat_map(encode_command)
    .collect()
}

fn message(user: usize, body: &[u8]) -> Vec<u8> {
    let mut m = envelope(user);
    for chunk in body.chunks(65_535) {
        m.extend(encode_command(&Command::Body(chunk.to_vec())));
    }
    m.extend(encode_command(&Command::Macro { stage: b'E', pairs: vec![("i".into(), format!("Q{user}"))] }));
    m.extend(encode_command(&Command::EndOfBody(Vec::new())));
    m
}

async fn read_reply(s: &mut TcpStream, buf: &mut Vec<u8>) -> Reply {
    loop {
        if let Some(r) = decode_reply(buf).expect("valid reply") {
            return r;
        }
        let mut chunk = [0u8; 512];
        let n = s.read(&mut chunk).await.expect("read");
        assert!(n > 0, "server closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn worker(target: SocketAddr, id: usize, a: Arc<Args>, deadline: Instant, body: Arc<Vec<u8>>) -> Vec<f64> {
    let mut s = TcpStream::connect(target).await.expect("connect");
    s.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    s.write_all(&encode_command(&OPTNEG)).await.unwrap();
    assert!(matches!(read_reply(&mut s, &mut buf).await, Reply::OptNeg { .. }));
    let mut lat = Vec::new();
    let mut user = id * 7919;
    while Instant::now() < deadline {
        user = user % a.users + 1;
        let m = message(user, &body);
        let t = Instant::now();
        s.write_all(&m).await.unwrap();
        let r = read_reply(&mut s, &mut buf).await;
        assert_eq!(r, Reply::Continue, "user{user:05}");
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        user += 13;
    }
    lat
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads one milter reply (blocking).
fn read_reply_blocking(s: &mut std::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    while decode_reply(&mut buf).unwrap().is_none() {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "the server closed before replying");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Blocking client for the memory phases (costs the process almost no
/// user memory, so the RSS delta is the server's).
fn negotiate(target: SocketAddr) -> std::net::TcpStream {
    let mut s = std::net::TcpStream::connect(target).unwrap();
    s.write_all(&encode_command(&OPTNEG)).unwrap();
    read_reply_blocking(&mut s);
    s
}

fn main() {
    let a = Arc::new(args());
    eprintln!("starting slapd with {} users …", a.users);
    let slapd = mailwarrant::testkit::slapd::Slapd::start_with_users(a.users).expect("slapd starts");
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}\n[auth.dovecot]\nlisten = []\n[identity]\ncache_ttl = \"30m\"\nrefresh_after = \"25m\"\n[store]\npath = \"bench.sqlite\"\n\
         [policy]\nlisten = \"\"\nunix_socket = \"policy.sock\"\norganisation_domains = [\"example.com\"]\n\
         [policy.profiles.default]\nrequire_sender_match = true\nrequire_header_from_match = true\n\
         max_attachments = 10\nmax_attachment_size = \"10M\"\nmay_send_attachments = true\n\
         [milter]\nlisten = \"127.0.0.1:0\"\nmax_connections = 4096\n",
        slapd.config_toml()
    );
    let config = mailwarrant::config::Config::from_toml(&text, dir.path(), Path::new("bench.toml")).expect("config");
    let server_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (_stop, shutdown) = mailwarrant::serve::shutdown::channel();
    let target = server_rt.block_on(async {
        let app = mailwarrant::serve::App::build(config).await.expect("app");
        let l = mailwarrant::protocols::milter::listener::MilterListeners::bind(app.config.milter.as_ref().unwrap())
            .await
            .unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(l.serve(app.policy.clone().unwrap(), shutdown));
        addr
    });
    let client = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let body = Arc::new(body());
    eprintln!("message body {} bytes; warming the identity cache …", body.len());
    let users = a.users;
    client.block_on(async {
        let per = users.div_ceil(16);
        let tasks: Vec<_> = (0..16)
            .map(|w| {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut s = TcpStream::connect(target).await.unwrap();
                    let mut buf = Vec::new();
                    s.write_all(&encode_command(&OPTNEG)).await.unwrap();
                    read_reply(&mut s, &mut buf).await;
                    for user in (w * per + 1)..=((w + 1) * per).min(users) {
                        s.write_all(&message(user, &body)).await.unwrap();
                        assert_eq!(read_reply(&mut s, &mut buf).await, Reply::Continue);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });

    println!("load average before: {}", load_average());
    println!("| concurrency | messages/s | p50 ms | p99 ms | MiB/s of mail |");
    println!("|---:|---:|---:|---:|---:|");
    for &c in &a.concurrency {
        let deadline = Instant::now() + Duration::from_secs_f64(a.seconds);
        let start = Instant::now();
        let mut lat: Vec<f64> = client.block_on(async {
            let tasks: Vec<_> =
                (0..c).map(|id| tokio::spawn(worker(target, id, a.clone(), deadline, body.clone()))).collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        });
        let secs = start.elapsed().as_secs_f64();
        lat.sort_by(|x, y| x.total_cmp(y));
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0.0)
        };
        let mps = lat.len() as f64 / secs;
        println!(
            "| {c} | {mps:.0} | {:.3} | {:.3} | {:.1} |",
            pct(0.50),
            pct(0.99),
            mps * body.len() as f64 / (1 << 20) as f64
        );
    }
    println!("load average after: {}", load_average());
    drop(client);

    // Memory per connection: N idle (negotiated), then the same N each
    // holding a message mid-body (a 64 KiB chunk sent, no end of body).
    std::thread::sleep(Duration::from_millis(300));
    let base = rss_kib("VmRSS:");
    let mut conns: Vec<_> = (0..a.connections).map(|_| negotiate(target)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let idle = rss_kib("VmRSS:");
    let chunk = vec![b'x'; 65_535];
    for (i, s) in conns.iter_mut().enumerate() {
        let mut m = envelope(i % a.users + 1);
        m.extend(encode_command(&Command::Body(chunk.clone())));
        s.write_all(&m).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let active = rss_kib("VmRSS:");
    println!(
        "memory over {} connections: idle {:.1} KiB/connection, mid-message (64 KiB chunk in) {:.1} KiB/connection (VmRSS {} → {} → {} KiB)",
        a.connections,
        idle.saturating_sub(base) as f64 / a.connections as f64,
        active.saturating_sub(base) as f64 / a.connections as f64,
        base,
        idle,
        active
    );
    drop(conns);
    std::thread::sleep(Duration::from_millis(300));

    // One message growing from 100 KiB to 50 MiB: the peak RSS must not
    // follow it.
    let mut s = negotiate(target);
    for size in [100usize << 10, 5 << 20, 50 << 20] {
        let hwm_before = rss_kib("VmHWM:");
        let rss_before = rss_kib("VmRSS:");
        s.write_all(&envelope(1)).unwrap();
        s.write_all(&encode_command(&Command::Body(
            b"--b\r\nContent-Type: application/pdf; name=big.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec(),
        )))
        .unwrap();
        let line = format!("{}\r\n", "QUJD".repeat(19));
        let piece = encode_command(&Command::Body(line.repeat(65_000 / line.len()).into_bytes()));
        let mut sent = 0;
        let mut peak_rss = rss_before;
        while sent < size {
            s.write_all(&piece).unwrap();
            sent += piece.len();
            if sent % (4 << 20) < piece.len() {
                peak_rss = peak_rss.max(rss_kib("VmRSS:"));
            }
        }
        s.write_all(&encode_command(&Command::Body(b"--b--\r\n".to_vec()))).unwrap();
        s.write_all(&encode_command(&Command::EndOfBody(Vec::new()))).unwrap();
        read_reply_blocking(&mut s);
        peak_rss = peak_rss.max(rss_kib("VmRSS:"));
        println!(
            "message of {:>6} KiB: VmRSS {} → peak {} KiB (+{} KiB), VmHWM {} → {} KiB",
            size >> 10,
            rss_before,
            peak_rss,
            peak_rss.saturating_sub(rss_before),
            hwm_before,
            rss_kib("VmHWM:")
        );
    }
    drop(slapd);
}
