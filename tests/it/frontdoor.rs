//! Issue 19, "one front door for every listener", against the binary:
//! held HTTP connections under a 1024-descriptor limit leave Postfix's
//! AUTH and policy answering; SIGTERM answers a request in flight; SIGHUP
//! applies the whole file or nothing; every listener from
//! `systemd-socket-activate` by name; anonymous form GETs store nothing;
//! files and sockets get their modes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailwarrant::protocols::saslauthd::codec::encode_request;
use mailwarrant::testkit::dovecot_client::{Answer, DovecotClient};
use mailwarrant::testkit::postfix::Postfix;
use mailwarrant::testkit::{free_port, require_package, wait_for_port, wait_until, ChildGuard};

use crate::auth_stack::{demo_ldif_directory, transcript};

/// A policy request Postfix sends at RCPT, for alice to bob.
const RCPT: &str = "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
                    sasl_username=alice\nsender=alice@example.com\nrecipient=bob@example.com\n\
                    client_address=127.0.0.1\ninstance=frontdoor.1\n\n";

struct Server {
    dir: tempfile::TempDir,
    file: PathBuf,
    log: PathBuf,
    child: ChildGuard,
}

impl Server {
    /// `mailwarrant serve` on `config` (written to a file), started by
    /// `wrapper` (e.g. `prlimit …`), with its log in the folder.
    fn start(config: &str, wrapper: &[&str]) -> Server {
        let dir = tempfile::Builder::new().prefix("mailwarrant-frontdoor").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let file = dir.path().join("mailwarrant.toml");
        std::fs::write(&file, config).unwrap();
        let log = dir.path().join("mailwarrant.log");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_mailwarrant"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_mailwarrant")),
        };
        command
            .args(["serve", "--config"])
            .arg(&file)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = ChildGuard::spawn("mailwarrant", &mut command).unwrap();
        Server { dir, file, log, child }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&self, ports: &[u16]) {
        for port in ports {
            let up = wait_for_port(SocketAddr::from(([127, 0, 0, 1], *port)), Duration::from_secs(20));
            assert!(up.is_ok(), "{up:?}\n{}", self.log());
        }
    }

    /// Waits for the process to exit; its status.
    fn wait_exit(&mut self, within: Duration) -> bool {
        wait_until(within, || !self.child.is_running())
    }
}

fn base_config(dovecot: u16, policy: u16, http: u16, extra: &str) -> String {
    format!(
        "{}\n[store]\npath = \"state.sqlite\"\n[auth]\nfailure_delay = \"100ms\"\n\
         [auth.dovecot]\nlisten = [\"127.0.0.1:{dovecot}\"]\n\
         [policy]\nlisten = \"127.0.0.1:{policy}\"\norganisation_domains = [\"example.com\"]\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\npublic_base_url = \"http://127.0.0.1:{http}\"\n{extra}",
        demo_ldif_directory()
    )
}

fn policy_answer(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut reply = [0u8; 512];
    let n = s.read(&mut reply).unwrap_or(0);
    String::from_utf8_lossy(&reply[..n]).into_owned()
}

/// The attack of the issue: with the descriptor limit at 1024, 1 100
/// connections to the HTTP port (half with half a request line, half
/// silent) must not stop a real Postfix from authenticating (Dovecot
/// auth) and getting policy answers within a second; the held
/// connections are closed by the deadlines.
#[test]
fn frontdoor_held_http_connections_leave_postfix_auth_and_policy_answering() {
    let (dovecot, policy, http) = (free_port(), free_port(), free_port());
    let http_extra =
        "max_connections = 400\nmax_connections_per_client = 0\nhandshake_timeout = \"3s\"\nidle_timeout = \"3s\"\n";
    let server = Server::start(&base_config(dovecot, policy, http, http_extra), &["prlimit", "--nofile=1024:1024"]);
    server.wait_ready(&[dovecot, policy, http]);

    let mut held = Vec::new();
    for i in 0..1100 {
        let address = SocketAddr::from(([127, 0, 0, 1], http));
        // Past the cap and the kernel backlog a connect waits: that is the
        // flood held off, not an error of the test.
        let Ok(mut s) = TcpStream::connect_timeout(&address, Duration::from_millis(100)) else { continue };
        if i % 2 == 0 {
            let _ = s.write_all(b"GET /password HT");
        }
        held.push(s);
    }
    assert!(held.len() > 400, "more connections than the cap are held ({})", held.len());

    let postfix = Postfix::start(&[
        ("smtpd_sasl_auth_enable", "yes"),
        ("smtpd_sasl_type", "dovecot"),
        ("smtpd_sasl_path", &format!("inet:127.0.0.1:{dovecot}")),
        ("smtpd_tls_auth_only", "no"),
        ("smtpd_recipient_restrictions", &format!("check_policy_service inet:127.0.0.1:{policy}, permit")),
        ("smtpd_relay_restrictions", "permit_sasl_authenticated, reject"),
        // No answer within a second is a failure (451), not a wait.
        ("smtpd_policy_service_timeout", "1s"),
        ("smtpd_policy_service_default_action", "451 4.3.5 policy service did not answer"),
        ("mynetworks", "127.0.0.255/32"),
    ])
    .unwrap();
    let started = Instant::now();
    let out = postfix.swaks(&[
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "Alice-Demo-2026!",
        "--from",
        "alice@example.com",
        "--to",
        "bob@example.com",
    ]);
    let took = started.elapsed();
    let t = transcript(&out);
    assert!(out.status.success() && t.contains("235 2.7.0"), "{t}\n{}", server.log());
    assert!(t.contains("250 2.0.0 Ok: queued"), "{t}\n{}", postfix.maillog());
    assert!(took < Duration::from_secs(3), "AUTH and policy took {took:?} under the flood");
    // The policy port answers directly too, at once.
    let started = Instant::now();
    assert!(policy_answer(policy, RCPT).starts_with("action="), "{}", server.log());
    assert!(started.elapsed() < Duration::from_secs(1));

    // Every held connection is closed by the server within the deadlines
    // (those waiting in the backlog are accepted, then closed, in turn).
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, s) in held.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
        s.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 256];
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                // A 408 or similar before closing is fine too.
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        assert!(closed, "held connection {i} still open after the deadlines");
    }
    let log = server.log();
    assert!(!log.contains("accept failed"), "{log}");
    // 4096 + 1024 + 400 connections do not fit in 1024 descriptors: each
    // cap was lowered, and said so.
    assert!(log.contains("dovecot-auth: max_connections lowered from 4096"), "{log}");
    assert!(log.contains("http: max_connections lowered from 400"), "{log}");
}

/// SIGTERM while a policy request is half sent: the rest still comes,
/// the answer goes out, then the process exits.
#[test]
fn frontdoor_sigterm_answers_the_request_in_flight_then_exits() {
    let (dovecot, policy, http) = (free_port(), free_port(), free_port());
    let mut server = Server::start(&base_config(dovecot, policy, http, ""), &[]);
    server.wait_ready(&[policy]);
    let mut s = TcpStream::connect(("127.0.0.1", policy)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (head, tail) = RCPT.split_at(60);
    s.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.child.signal("TERM").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.child.is_running(), "the process waits for the request in flight\n{}", server.log());
    s.write_all(tail.as_bytes()).unwrap();
    let mut reply = [0u8; 256];
    let n = s.read(&mut reply).unwrap_or(0);
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("action="), "no answer to the request in flight: {reply:?}\n{}", server.log());
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(server.wait_exit(Duration::from_secs(10)), "the process did not exit\n{}", server.log());
}

/// SIGHUP with a file whose last section is wrong (an invalid value, then
/// the `[policy]` section gone) changes nothing, though the `[auth]`
/// text before it is valid; a sound file applies.
#[test]
fn frontdoor_sighup_applies_the_whole_file_or_nothing() {
    let (dovecot, policy, http) = (free_port(), free_port(), free_port());
    let config = |text: &str, last: &str| {
        format!(
            "{}\n[store]\npath = \"state.sqlite\"\n[auth]\nfailure_delay = \"100ms\"\n[auth.texts]\nfailed = \"{text}\"\n\
             [auth.dovecot]\nlisten = [\"127.0.0.1:{dovecot}\"]\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n{last}",
            demo_ldif_directory()
        )
    };
    let policy_section = |mode: &str| {
        format!(
            "[policy]\nlisten = \"127.0.0.1:{policy}\"\norganisation_domains = [\"example.com\"]\nmode = \"{mode}\"\n"
        )
    };
    let server = Server::start(&config("Refused before", &policy_section("enforce")), &[]);
    server.wait_ready(&[dovecot, policy]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let refusal = || {
        rt.block_on(async {
            let mut c = DovecotClient::connect(SocketAddr::from(([127, 0, 0, 1], dovecot))).await.unwrap();
            match c.plain("alice", "wrong-one", "127.3.0.1".parse().unwrap()).await.unwrap() {
                Answer::Fail { line } => line,
                other => panic!("{other:?}"),
            }
        })
    };
    let hup_and_wait = |needle: &str, count: usize| {
        server.child.signal("HUP").unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || server.log().matches(needle).count() >= count),
            "{needle} x{count}:\n{}",
            server.log()
        );
    };
    assert!(refusal().ends_with("reason=Refused before"));

    std::fs::write(&server.file, config("Refused after", &policy_section("sometimes"))).unwrap();
    hup_and_wait("configuration not reloaded", 1);
    assert!(refusal().ends_with("reason=Refused before"), "an invalid last section applies nothing");

    std::fs::write(&server.file, config("Refused after", "")).unwrap();
    hup_and_wait("configuration not reloaded", 2);
    assert!(server.log().contains("[policy] removed"), "{}", server.log());
    assert!(refusal().ends_with("reason=Refused before"), "a removed last section applies nothing");
    assert!(policy_answer(policy, RCPT).starts_with("action="), "the policy service still serves");

    std::fs::write(&server.file, config("Refused after", &policy_section("observe"))).unwrap();
    hup_and_wait("configuration reloaded", 1);
    assert!(refusal().ends_with("reason=Refused after"), "a sound file applies");
}

/// A self-signed pair for 127.0.0.1 as `NAME.pem` and `NAME.key` in `dir`.
fn self_signed(dir: &Path, name: &str) {
    let status = Command::new("/usr/bin/openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-keyout", &format!("{name}.key"), "-out", &format!("{name}.pem")])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Issue 21: SIGHUP rereads the HTTPS certificate and key (a renewal is
/// served without a restart); a pair that cannot be used leaves the
/// running one in place.
#[test]
fn frontdoor_sighup_rereads_the_https_certificate() {
    require_package("openssl").unwrap();
    require_package("curl").unwrap();
    let certs = tempfile::tempdir().unwrap();
    self_signed(certs.path(), "old");
    self_signed(certs.path(), "new");
    let (served_cert, served_key) = (certs.path().join("served.pem"), certs.path().join("served.key"));
    std::fs::copy(certs.path().join("old.pem"), &served_cert).unwrap();
    std::fs::copy(certs.path().join("old.key"), &served_key).unwrap();
    let (dovecot, policy, http) = (free_port(), free_port(), free_port());
    let tls = format!("tls_cert = {served_cert:?}\ntls_key = {served_key:?}\n");
    let server = Server::start(&base_config(dovecot, policy, http, &tls), &[]);
    server.wait_ready(&[http]);
    // Whether curl trusts the served certificate when it trusts only `ca`.
    let trusted_with = |ca: &str| {
        Command::new("/usr/bin/curl")
            .args(["-sS", "--max-time", "10", "-o", "/dev/null", "--cacert"])
            .arg(certs.path().join(format!("{ca}.pem")))
            .arg(format!("https://127.0.0.1:{http}/healthz"))
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(trusted_with("old") && !trusted_with("new"), "{}", server.log());

    std::fs::copy(certs.path().join("new.pem"), &served_cert).unwrap();
    std::fs::copy(certs.path().join("new.key"), &served_key).unwrap();
    server.child.signal("HUP").unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || server.log().contains("HTTPS certificate reloaded")),
        "{}",
        server.log()
    );
    assert!(trusted_with("new") && !trusted_with("old"), "the renewed pair is served\n{}", server.log());

    // A key that does not belong to the certificate: refused, the running pair stays.
    std::fs::copy(certs.path().join("old.key"), &served_key).unwrap();
    server.child.signal("HUP").unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || server.log().contains("HTTPS certificate not reloaded")),
        "{}",
        server.log()
    );
    assert!(trusted_with("new"), "the running pair stays\n{}", server.log());
}

/// Every listener from `systemd-socket-activate`, matched by name; the
/// configured addresses are then left alone.
#[test]
fn frontdoor_every_listener_comes_from_systemd_by_name() {
    require_package("systemd").unwrap();
    let (dovecot, policy, milter, http) = (free_port(), free_port(), free_port(), free_port());
    let unused = free_port();
    let dir = tempfile::tempdir().unwrap();
    let sasl = dir.path().join("mux");
    let config = format!(
        "{}\n[store]\npath = \"state.sqlite\"\n[auth]\nfailure_delay = \"100ms\"\n\
         [auth.dovecot]\nlisten = [\"127.0.0.1:{unused}\"]\n\
         [policy]\nlisten = \"127.0.0.1:{unused}\"\norganisation_domains = [\"example.com\"]\n\
         [milter]\nlisten = \"127.0.0.1:{unused}\"\n\
         [http]\nlisten = \"127.0.0.1:{unused}\"\n",
        demo_ldif_directory()
    );
    let listen: Vec<String> = [dovecot, policy, milter, http]
        .iter()
        .map(|p| format!("--listen=127.0.0.1:{p}"))
        .chain([format!("--listen={}", sasl.display())])
        .collect();
    let mut wrapper: Vec<&str> = vec!["systemd-socket-activate"];
    wrapper.extend(listen.iter().map(String::as_str));
    wrapper.push("--fdname=dovecot-auth:policy:milter:http:saslauthd");
    let server = Server::start(&config, &wrapper);
    server.wait_ready(&[dovecot]);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let auth = rt.block_on(async {
        let ready = tokio::time::timeout(
            Duration::from_secs(60),
            DovecotClient::connect(SocketAddr::from(([127, 0, 0, 1], dovecot))),
        )
        .await;
        let mut c = ready.unwrap().unwrap();
        c.plain("alice", "Alice-Demo-2026!", "127.3.0.2".parse().unwrap()).await.unwrap()
    });
    assert!(matches!(auth, Answer::Ok { .. }), "{auth:?}\n{}", server.log());
    assert!(policy_answer(policy, RCPT).starts_with("action="), "policy:\n{}", server.log());

    let mut m = TcpStream::connect(("127.0.0.1", milter)).unwrap();
    m.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    m.write_all(&[0, 0, 0, 13, b'O', 0, 0, 0, 6, 0, 0, 0, 0x01, 0, 0, 0, 0]).unwrap();
    let mut head = [0u8; 5];
    m.read_exact(&mut head).unwrap();
    assert_eq!(head[4], b'O', "the milter negotiates");

    let status = ureq::get(&format!("http://127.0.0.1:{http}/healthz")).call().map(|r| r.status());
    assert_eq!(status.ok(), Some(200), "http:\n{}", server.log());

    let mut s = UnixStream::connect(&sasl).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&encode_request(&[b"alice", b"Alice-Demo-2026!", b"smtp", b""])).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(reply.get(2..4) == Some(b"OK"), "saslauthd: {reply:?}\n{}", server.log());

    assert!(
        TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], unused)), Duration::from_millis(300)).is_err(),
        "no configured address is bound when systemd passed the sockets"
    );
    let log = server.log();
    for name in ["dovecot-auth", "policy", "milter", "http", "saslauthd"] {
        assert!(log.contains(&format!("fd_name={name}")), "{name} not from systemd:\n{log}");
    }
}

fn sqlite_count(db: &Path, sql: &str) -> i64 {
    let out = Command::new("sqlite3").arg(db).arg(sql).output().expect("sqlite3 runs (scripts/test.sh installs it)");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("{out:?}"))
}

/// 3 000 anonymous GETs of each form store nothing, and the forms work.
#[test]
fn frontdoor_anonymous_form_gets_do_not_grow_the_store() {
    require_package("sqlite3").unwrap();
    let (dovecot, policy, http) = (free_port(), free_port(), free_port());
    // Many clients behind a trusted proxy, each under the page's own
    // per-client rate limit.
    let extra = format!("trusted_proxies = [\"127.0.0.1\"]\n{TOKEN}");
    let server = Server::start(&base_config(dovecot, policy, http, &extra), &[]);
    server.wait_ready(&[http]);
    let base = format!("http://127.0.0.1:{http}");
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    for path in ["/password?login=alice", "/admin/login"] {
        for i in 0..3000u32 {
            let client = format!("10.9.{}.{}", i / 256, i % 256);
            let r = agent.get(&format!("{base}{path}")).set("X-Forwarded-For", &client).call().unwrap();
            assert!(r.into_string().unwrap().contains("name=\"csrf\""), "{path} renders its form");
        }
    }
    let db = server.dir.path().join("state.sqlite");
    let kv = sqlite_count(&db, "SELECT count(*) FROM kv");
    assert!(kv <= 2, "6 000 form GETs stored {kv} keys");

    // The admin sign-in form works, once per token.
    let page = agent.get(&format!("{base}/admin/login")).call().unwrap();
    let cookie = page.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
    let body = page.into_string().unwrap();
    let at = body.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = body[at..].split('"').next().unwrap().to_owned();
    let post = |csrf: &str| match agent
        .post(&format!("{base}/admin/login"))
        .set("Cookie", &cookie)
        .send_form(&[("csrf", csrf), ("token", "frontdoor-admin-token")])
    {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(post(&csrf), 303, "signed in:\n{}", server.log());
    assert_eq!(post(&csrf), 403, "a replayed form is refused");
    assert_eq!(post("1.x.y"), 403, "a forged token is refused");
}

/// `frontdoor-admin-token`, with the admin scope.
const TOKEN: &str = "[[http.tokens]]\nname = \"frontdoor\"\n\
    hash = \"$argon2id$v=19$m=19456,t=2,p=1$YNqvCAlcNavYUL4AOY1yOg$TroO64nWpWU88jvGYmI/6godr+TlLi4d16hr7DVSE4s\"\n\
    scopes = [\"admin\"]\n";

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// Under umask 000: the database (and its WAL and SHM) 0600, the audit
/// log 0640, each UNIX socket with its configured mode (0660 unless
/// set) and group.
#[test]
fn frontdoor_files_and_sockets_get_their_modes() {
    let (dovecot, policy, http) = (free_port(), free_port(), free_port());
    let gid = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata("/proc/self").unwrap());
    let text = format!(
        "{}\n[store]\npath = \"state.sqlite\"\n[auth.dovecot]\nlisten = [\"127.0.0.1:{dovecot}\"]\n\
         [policy]\nlisten = \"127.0.0.1:{policy}\"\nunix_socket = \"policy.sock\"\nsocket_group = \"{gid}\"\n\
         organisation_domains = [\"example.com\"]\n\
         [milter]\nlisten = \"\"\nunix_socket = \"milter.sock\"\nsocket_mode = \"0600\"\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\n[audit]\npath = \"audit.jsonl\"\n",
        demo_ldif_directory()
    );
    let server = Server::start(&text, &["sh", "-c", "umask 000; exec \"$0\" \"$@\""]);
    server.wait_ready(&[dovecot, policy, http]);
    let dir = server.dir.path();
    assert!(wait_until(Duration::from_secs(10), || dir.join("milter.sock").exists()), "{}", server.log());
    // One decision, so the audit file and the WAL are written.
    assert!(policy_answer(policy, RCPT).starts_with("action="));
    assert!(wait_until(Duration::from_secs(10), || dir.join("audit.jsonl").exists()), "{}", server.log());
    for (file, mode) in [
        ("state.sqlite", 0o600),
        ("state.sqlite-wal", 0o600),
        ("state.sqlite-shm", 0o600),
        ("audit.jsonl", 0o640),
        ("policy.sock", 0o660),
        ("milter.sock", 0o600),
    ] {
        assert_eq!(mode_of(&dir.join(file)), mode, "{file}: {:o}", mode_of(&dir.join(file)));
    }
    let group = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(dir.join("policy.sock")).unwrap());
    assert_eq!(group, gid);
}

/// `check-config` warns when the file with an inline secret is readable
/// by every user, and not once it is not.
#[test]
fn frontdoor_check_config_warns_about_a_world_readable_inline_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.toml");
    std::fs::write(
        &file,
        "[directory]\nkind = \"ldap\"\n[directory.ldap]\nurls = [\"ldap://127.0.0.1:3389\"]\n\
         bind_dn = \"cn=svc,dc=example,dc=com\"\nbind_password = \"Inline-Secret-1\"\nbase_dn = \"dc=example,dc=com\"\n",
    )
    .unwrap();
    let check = || {
        let out =
            Command::new(env!("CARGO_BIN_EXE_mailwarrant")).args(["check-config", "--config"]).arg(&file).output();
        String::from_utf8_lossy(&out.unwrap().stderr).into_owned()
    };
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = check();
    assert!(text.contains("directory.ldap.bind_password: written inline") && text.contains("0644"), "{text}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(!check().contains("written inline"));
}

fn http_status(request: ureq::Request) -> (u16, String) {
    match request.call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{e}"),
    }
}

/// The entry of `ops.monitoring-token-1`, scope `lookup`, stored as its
/// SHA-256.
fn ops_token() -> String {
    format!(
        "[[http.tokens]]\nname = \"monitoring\"\nid = \"ops\"\nhash = \"sha256:{}\"\nscopes = [\"lookup\"]\n",
        sha256_hex("ops.monitoring-token-1")
    )
}

/// `[ops]` serves `/healthz`, `/readyz`, `/metrics` on a listener of its
/// own (and `[http]` no longer does); `/metrics` needs a token with
/// `ops_require_token`; anonymous `/readyz` says ready or not and no
/// more; 300 probes in a burst ask slapd at most a few times.
#[test]
fn frontdoor_ops_routes_on_their_own_listener_with_a_token_and_cached_readiness() {
    let slapd = mailwarrant::testkit::slapd::Slapd::start().unwrap();
    let (http, ops) = (free_port(), free_port());
    let token = ops_token();
    let config = format!(
        "{}\n[store]\npath = \"state.sqlite\"\n[auth.dovecot]\nlisten = []\n\
         [http]\nlisten = \"127.0.0.1:{http}\"\nops_require_token = true\n{token}\n[ops]\nlisten = \"127.0.0.1:{ops}\"\n",
        slapd.config_toml()
    );
    let server = Server::start(&config, &[]);
    server.wait_ready(&[http, ops]);
    let at = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");
    let bearer = "Bearer ops.monitoring-token-1";

    assert_eq!(http_status(ureq::get(&at(http, "/metrics"))).0, 404, "moved off [http]");
    assert_eq!(http_status(ureq::get(&at(http, "/readyz"))).0, 404);
    assert_eq!(http_status(ureq::get(&at(ops, "/healthz"))).0, 200);
    assert_eq!(http_status(ureq::get(&at(ops, "/metrics"))).0, 401, "no token, no metrics");
    let (status, text) = http_status(ureq::get(&at(ops, "/metrics")).set("Authorization", bearer));
    assert_eq!(status, 200);
    assert!(text.contains("mailwarrant_"), "{text}");
    assert_eq!(http_status(ureq::get(&at(ops, "/password"))).0, 404, "only the operations routes");

    let (status, body) = http_status(ureq::get(&at(ops, "/readyz")));
    assert_eq!((status, body.trim()), (200, "{\"status\":\"ok\"}"), "anonymous: ready or not");
    let (_, body) = http_status(ureq::get(&at(ops, "/readyz")).set("Authorization", bearer));
    assert!(body.contains("\"directory\":\"ok\""), "{body}");

    let searches = || slapd.log().matches("SRCH base=\"\" scope=0").count();
    std::thread::sleep(Duration::from_millis(1100));
    let before = searches();
    let started = Instant::now();
    let agent = ureq::Agent::new();
    for _ in 0..300 {
        assert_eq!(http_status(agent.get(&at(ops, "/readyz"))).0, 200);
    }
    let seconds = started.elapsed().as_secs() + 1;
    assert!(wait_until(Duration::from_secs(2), || searches() > before), "{}", slapd.log());
    let asked = searches() - before;
    // At most one check a second, plus the background gauge refresh.
    assert!(asked as u64 <= seconds + 1, "300 probes in {seconds} s asked slapd {asked} times");
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Invented bearer tokens are refused without a slow hash, thousands in
/// moments; a client past its share of wrong tokens is refused unchecked,
/// its right token too, while another client goes on.
#[test]
fn frontdoor_invented_bearer_tokens_are_cheap_to_refuse_and_throttled_per_client() {
    let (dovecot, policy, http) = (free_port(), free_port(), free_port());
    let token = ops_token();
    // An argon2 entry of before too: invented tokens naming an id skip it.
    let legacy = TOKEN.replace("frontdoor\"", "legacy\"");
    let extra = format!("trusted_proxies = [\"127.0.0.1\"]\n{token}{legacy}");
    let server = Server::start(&base_config(dovecot, policy, http, &extra), &[]);
    server.wait_ready(&[http]);
    let url = format!("http://127.0.0.1:{http}/v1/identities/alice");
    let agent = ureq::Agent::new();
    let call = |token: &str, client: &str| {
        http_status(agent.get(&url).set("Authorization", &format!("Bearer {token}")).set("X-Forwarded-For", client)).0
    };
    let started = Instant::now();
    for i in 0..2000u32 {
        let client = format!("10.7.{}.{}", i / 256, i % 256);
        assert_eq!(call(&format!("ops.invented-{i}"), &client), 401);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "2 000 invented tokens took {took:?}");
    assert_eq!(call("ops.monitoring-token-1", "10.8.0.1"), 200, "{}", server.log());

    for i in 0..mailwarrant::http::api::tokens::FAILURES_PER_MINUTE {
        assert_eq!(call(&format!("ops.wrong-{i}"), "10.8.0.2"), 401);
    }
    assert_eq!(call("ops.monitoring-token-1", "10.8.0.2"), 401, "throttled");
    assert_eq!(call("ops.monitoring-token-1", "10.8.0.3"), 200, "another client");
}

/// A listener that cannot bind ends the process with the reason, instead
/// of leaving it running with the front ends that did start.
#[test]
fn frontdoor_a_port_in_use_ends_serve_with_its_reason() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (dovecot, http) = (free_port(), free_port());
    let mut server = Server::start(&base_config(dovecot, port, http, ""), &[]);
    assert!(server.wait_exit(Duration::from_secs(20)), "still running:\n{}", server.log());
    let log = server.log();
    assert!(log.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{log}");
}

/// One client address gets `max_connections_per_client` HTTP connections;
/// more are closed at once, and a freed one can be used again.
#[test]
fn frontdoor_one_client_cannot_hold_more_than_its_share_of_http_connections() {
    let (dovecot, policy, http) = (free_port(), free_port(), free_port());
    let server = Server::start(&base_config(dovecot, policy, http, "max_connections_per_client = 3\n"), &[]);
    server.wait_ready(&[http]);
    // Served once (HTTP/1.0 closes), so the accept loop runs and the
    // probe connections are over before counting starts.
    let mut first = TcpStream::connect(("127.0.0.1", http)).unwrap();
    first.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    first.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    let open = || {
        let s = TcpStream::connect(("127.0.0.1", http)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        s
    };
    // Closed by the server: EOF or a reset, not a read timeout.
    let closed = |s: &mut TcpStream| match s.read(&mut [0u8; 16]) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    };
    let mut mine: Vec<TcpStream> = (0..3).map(|_| open()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut fourth = open();
    assert!(closed(&mut fourth), "the fourth connection of one client is closed\n{}", server.log());
    for s in &mut mine {
        assert!(s.read(&mut [0u8; 16]).is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock), "kept");
    }
    drop(mine.pop());
    std::thread::sleep(Duration::from_millis(200));
    let (status, _) = http_status(ureq::get(&format!("http://127.0.0.1:{http}/healthz")));
    assert_eq!(status, 200, "a freed slot serves again");
}
