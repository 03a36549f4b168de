//! The Dovecot auth front end over real sockets: a battery of bad input
//! while 100 good sessions keep authenticating (CVE-2025-59028 was one bad
//! request killing every concurrent session).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mailwarrant::testkit::dovecot_client::{Answer, DovecotClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::auth_stack::{demo_ldif_directory, Stack};

const GOOD_SESSIONS: usize = 100;

/// Bad inputs sent after a valid handshake (P1).
fn battery() -> Vec<Vec<u8>> {
    let mut b: Vec<Vec<u8>> = vec![
        vec![b'A'; 16384],
        [vec![b'A'; 16384], b"\n".to_vec()].concat(),
        vec![b'x'; 1 << 20],
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=!!!\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=AA==\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=AAA=\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=JXUAJXUA\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=ACV7bG9naW59AHg=\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=ACR7am5kaTpsZGFwOi8veH0AeA==\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=AGFsaWNlKikAeA==\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=AGFsaWNlCkFVVEgAeA==\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=AGFsaWNlAA==\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=AP7/AHg=\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=Ym9iAGFsaWNlAEFsaWNlLURlbW8tMjAyNiE=\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=sm\0tp\tresp=AA==\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\rresp=AA==\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=\xff\xfe\n".to_vec(),
        b"AUTH\t1\tCRAM-MD5\tservice=smtp\n".to_vec(),
        b"AUTH\t1\t\tservice=smtp\n".to_vec(),
        b"AUTH\t1\n".to_vec(),
        b"AUTH\n".to_vec(),
        b"AUTH\tx\tPLAIN\tservice=smtp\n".to_vec(),
        b"AUTH\t4294967296\tPLAIN\tservice=smtp\n".to_vec(),
        b"AUTH\t1\tPLAIN\n".to_vec(),
        b"AUTH\t1\tLOGIN\tservice=smtp\nCONT\t1\t!!!\n".to_vec(),
        b"AUTH\t1\tLOGIN\tservice=smtp\nCONT\t1\tYWxpY2U=\nCONT\t1\t\n".to_vec(),
        b"AUTH\t1\tLOGIN\tservice=smtp\nCONT\t2\tYWxpY2U=\n".to_vec(),
        b"CONT\t9\tAA==\n".to_vec(),
        b"CONT\n".to_vec(),
        b"VERSION\t1\t0\n".to_vec(),
        b"VERSION\t2\t0\n".to_vec(),
        b"CPID\n".to_vec(),
        b"HELLO\n".to_vec(),
        b"\n".to_vec(),
        b"\r\n".to_vec(),
        b"\r".to_vec(),
        b"\0\0\0\0\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\tunknown-flag\tfuture=1\tresp=AG5vYm9keQB4\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=AG5vYm9keQB4\nAUTH\t2\tPLAIN\tservice=smtp\tresp=AG5vYm9keQB5\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=AGFsaWNlAHg".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\trip=not-an-ip\tresp=AG5vYm9keQB4\n".to_vec(),
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=AG5vYm9keQB4\tuser=admin\n".to_vec(),
        // One wrong password for a real user: a full (argon2) check under load.
        b"AUTH\t1\tPLAIN\tservice=smtp\tresp=AGFsaWNlAHdyb25n\n".to_vec(),
    ];
    let many_params: String = (0..2000).map(|i| format!("\tp{i}=v")).collect();
    b.push(format!("AUTH\t1\tPLAIN\tservice=smtp{many_params}\n").into_bytes());
    b
}

/// Sends `input` on a fresh connection; the server must answer or close
/// within a deadline, never hang.
async fn probe(address: SocketAddr, input: &[u8]) -> Result<String, String> {
    let mut stream = tokio::net::TcpStream::connect(address).await.map_err(|e| e.to_string())?;
    stream.write_all(b"VERSION\t1\t0\nCPID\t1\n").await.map_err(|e| e.to_string())?;
    // A write can fail once the server closed on an oversized line: fine.
    let _ = stream.write_all(input).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(120), async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => {
                    got.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&got);
                    if text.split("DONE\n").nth(1).is_some_and(|after| after.contains('\n')) {
                        return true;
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got).into_owned();
    match read {
        Ok(_) => Ok(text),
        // Incomplete input may legitimately wait for more: then no reply.
        Err(_) if !input.ends_with(b"\n") => Ok(text),
        Err(_) => Err(format!(
            "no answer and no close for {:?}: {text}",
            String::from_utf8_lossy(&input[..input.len().min(80)])
        )),
    }
}

#[test]
fn bad_input_never_disturbs_good_sessions() {
    let stack = Stack::start(&demo_ldif_directory(), "[auth.throttle]\nper_client = 100000\nper_login = 100000\n");
    let address = SocketAddr::from(([127, 0, 0, 1], stack.dovecot_port));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let (done, errors) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut good = Vec::new();
        for i in 0..GOOD_SESSIONS {
            let (stop, done, errors) = (stop.clone(), done.clone(), errors.clone());
            good.push(tokio::spawn(async move {
                let mut client = DovecotClient::connect(address).await.expect("handshake");
                let rip = IpAddr::from([127, 1, (i / 250) as u8, (i % 250) as u8 + 1]);
                while !stop.load(Ordering::Relaxed) {
                    match client.plain("alice", "Alice-Demo-2026!", rip).await {
                        Ok(Answer::Ok { user }) if user == "alice" => done.fetch_add(1, Ordering::Relaxed),
                        other => {
                            eprintln!("good session {i}: {other:?}");
                            errors.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    // Concurrency is the point, not throughput (2 shared cores, debug build).
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }));
        }
        let mut failures = Vec::new();
        for input in battery() {
            if let Err(e) = probe(address, &input).await {
                failures.push(e);
            }
        }
        stop.store(true, Ordering::Relaxed);
        for g in good {
            g.await.unwrap();
        }
        assert!(failures.is_empty(), "{failures:#?}");
        assert_eq!(errors.load(Ordering::Relaxed), 0, "good sessions saw errors");
        assert!(done.load(Ordering::Relaxed) >= GOOD_SESSIONS, "good sessions made progress");
        // The service is still healthy.
        let mut client = DovecotClient::connect(address).await.unwrap();
        assert_eq!(
            client.plain("bob", "Bob-Demo-2026!", "127.9.9.9".parse().unwrap()).await.unwrap(),
            Answer::Ok { user: "bob".into() }
        );
    });
}

#[test]
fn answers_are_pinned_on_the_wire() {
    let stack = Stack::start(&demo_ldif_directory(), "");
    let address = SocketAddr::from(([127, 0, 0, 1], stack.dovecot_port));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = DovecotClient::connect(address).await.unwrap();
        let rip: IpAddr = "127.3.0.1".parse().unwrap();
        assert_eq!(c.plain("ALICE", "Alice-Demo-2026!", rip).await.unwrap(), Answer::Ok { user: "alice".into() });
        let fail = c.plain("alice", "nope", rip).await.unwrap();
        assert_eq!(fail, Answer::Fail { line: "FAIL\t2\tuser=alice\treason=Authentication failed".into() });
        let unknown = c.plain("nosuchuser", "nope", rip).await.unwrap();
        assert_eq!(unknown, Answer::Fail { line: "FAIL\t3\tuser=nosuchuser\treason=Authentication failed".into() });
        let expired = c.plain("erin", "Erin-Demo-2026!", rip).await.unwrap();
        assert_eq!(
            expired,
            Answer::Fail {
                line: "FAIL\t4\tuser=erin\tcode=pass_expired\treason=Password expired: change it at https://mail.example.com/password"
                    .into()
            }
        );
        let bad = c.raw(b"AUTH\t5\tPLAIN\tservice=smtp\tresp=!!!\n").await.unwrap();
        assert_eq!(bad, Answer::Fail { line: "FAIL\t5\tcode=invalid_base64\treason=Invalid base64 data in response".into() });
        let cont = c.raw(b"AUTH\t6\tLOGIN\tservice=smtp\trip=127.3.0.1\n").await.unwrap();
        assert_eq!(cont, Answer::Cont { line: "CONT\t6\tVXNlcm5hbWU6".into() });
        assert_eq!(c.raw(b"CONT\t6\tYm9i\n").await.unwrap(), Answer::Cont { line: "CONT\t6\tUGFzc3dvcmQ6".into() });
        assert_eq!(c.raw(b"CONT\t6\tQm9iLURlbW8tMjAyNiE=\n").await.unwrap(), Answer::Ok { user: "bob".into() });
    });
}
