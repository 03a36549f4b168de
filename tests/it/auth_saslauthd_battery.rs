//! docs/testing.md S4 for the saslauthd socket: a battery of bad input sent to
//! a real `mailwarrant serve` process, beside good requests, and the
//! process's memory afterwards. Every bad request gets `NO` or a close,
//! never a hang or a crash, and repeating the battery does not grow the
//! resident set.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailwarrant::protocols::saslauthd::codec::encode_request;
use mailwarrant::testkit::wait_until;

use crate::auth_stack::demo_ldif_directory;

/// A `mailwarrant serve` child; killed when dropped.
struct Server {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("mux");
        let config = dir.path().join("mailwarrant.toml");
        std::fs::write(
            &config,
            format!(
                "{}\n[store]\npath = \"state.sqlite\"\n[auth]\nfailure_delay = \"10ms\"\n\
                 [auth.throttle]\nper_login = 1000000\nper_client = 1000000\n\
                 [auth.dovecot]\nlisten = []\n[auth.saslauthd]\nunix_socket = {socket:?}\n",
                demo_ldif_directory()
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mailwarrant"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(wait_until(Duration::from_secs(20), || UnixStream::connect(&socket).is_ok()), "socket never ready");
        Server { child, socket, _dir: dir }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `input`, half-closes, and reads until the server closes.
/// `Ok(reply)`: what came back (possibly nothing); `Err`: no close in time.
fn exchange(socket: &Path, input: &[u8]) -> Result<Vec<u8>, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may close before reading everything (a field over the
    // limit): a broken pipe here is an answer, not a failure.
    let _ = s.write_all(input);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut reply = Vec::new();
    match s.read_to_end(&mut reply) {
        Ok(_) => Ok(reply),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(reply),
        Err(e) => Err(format!(
            "no close within 10 s ({e}) after {:?}",
            String::from_utf8_lossy(&input[..input.len().min(60)])
        )),
    }
}

fn good(socket: &Path) -> Vec<u8> {
    exchange(socket, &encode_request(&[b"alice", b"Alice-Demo-2026!", b"smtp", b""])).unwrap()
}

fn battery() -> Vec<Vec<u8>> {
    let long = vec![b'a'; 1025];
    let max = vec![b'a'; 1024];
    let mut inputs = vec![
        Vec::new(),
        vec![0],
        vec![0xff, 0xff],
        vec![0xff, 0xff, b'x', b'y'],
        encode_request(&[b"alice"]),
        encode_request(&[b"alice", b"Alice-Demo-2026!"]),
        encode_request(&[b"alice", b"Alice-Demo-2026!", b"smtp"]),
        encode_request(&[b"", b"x", b"smtp", b""]),
        encode_request(&[b"alice", b"", b"smtp", b""]),
        encode_request(&[&long, b"x", b"smtp", b""]),
        encode_request(&[b"alice", &long, b"smtp", b""]),
        encode_request(&[&max, &max, &max, &max]),
        encode_request(&[&max, &max, &max, &max, &max]),
        encode_request(&[b"al\0ice", b"Alice-Demo-2026!", b"smtp", b""]),
        encode_request(&[b"\xff\xfe\xc3\x28", b"x", b"smtp", b""]),
        encode_request(&[b"alice", b"\xff\xfe", b"smtp", b"\xc3"]),
        encode_request(&[b"alice\r\nX: y", b"x", b"smtp", b""]),
        encode_request(&[b"*)(uid=*", b"x", b"smtp", b""]),
        encode_request(&[b"alice", b"Alice-Demo-2026!", b"smtp", b"", b"127.0.0.1", b"extra"]),
        (0..10_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect(),
    ];
    // A good request followed by garbage on the same connection.
    let mut trailing = encode_request(&[b"alice", b"Alice-Demo-2026!", b"smtp", b""]);
    trailing.extend_from_slice(&[0xde; 3000]);
    inputs.push(trailing);
    inputs
}

/// A counted `NO…` reply, or nothing at all (the connection closed).
fn refused_or_closed(reply: &[u8]) -> bool {
    reply.is_empty() || (reply.len() >= 4 && reply[2..].starts_with(b"NO"))
}

#[test]
fn bad_input_gets_no_or_a_close_and_memory_stays_flat() {
    let server = Server::start();
    assert_eq!(&good(&server.socket)[2..], b"OK");
    // Idle half-open clients must not block the others.
    let idle: Vec<UnixStream> = (0..200)
        .map(|_| {
            let mut s = UnixStream::connect(&server.socket).unwrap();
            s.write_all(&[0, 5, b'a']).unwrap();
            s
        })
        .collect();
    for (i, input) in battery().iter().enumerate() {
        let reply = exchange(&server.socket, input).unwrap_or_else(|e| panic!("input {i}: {e}"));
        let allowed = refused_or_closed(&reply) || (i == 18 || i == 20) && reply.get(2..4) == Some(b"OK");
        assert!(allowed, "input {i}: {:?}", String::from_utf8_lossy(&reply));
        assert_eq!(&good(&server.socket)[2..], b"OK", "a good request after input {i}");
    }
    let before = server.rss_kib();
    let started = Instant::now();
    for _ in 0..20 {
        for input in battery() {
            exchange(&server.socket, &input).unwrap();
        }
        for _ in 0..25 {
            assert_eq!(&good(&server.socket)[2..], b"OK");
        }
    }
    let after = server.rss_kib();
    drop(idle);
    assert!(
        after <= before + 8 * 1024,
        "RSS grew from {before} KiB to {after} KiB over 20 rounds of the battery ({:?})",
        started.elapsed()
    );
    assert_eq!(&good(&server.socket)[2..], b"OK");
}
