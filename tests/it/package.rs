//! Issue 21, the Debian package (`scripts/package.sh`): its contents, its
//! units through `systemd-analyze verify`, its account through
//! `systemd-sysusers --root`, and the installed binary with the installed
//! config (re-pointed at a test slapd) serving every socket
//! name from `systemd-socket-activate` the way the units pass them, with
//! `Type=notify` messages, journald-style log lines, and writes only in
//! the unit's writable folders.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mailwarrant::protocols::saslauthd::codec::encode_request;
use mailwarrant::testkit::dovecot_client::{Answer, DovecotClient};
use mailwarrant::testkit::slapd::{Slapd, SERVICE_PASSWORD};
use mailwarrant::testkit::{free_port, require_package, wait_for_port, wait_until, ChildGuard};

const RCPT: &str = "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
                    sasl_username=alice\nsender=alice@example.com\nrecipient=bob@example.com\n\
                    client_address=127.0.0.1\ninstance=package.1\n\n";

/// What the package must hold, beyond the units.
const SHIPPED: &[&str] = &[
    "./usr/bin/mailwarrant",
    "./etc/mailwarrant/mailwarrant.toml",
    "./etc/logrotate.d/mailwarrant",
    "./usr/lib/sysusers.d/mailwarrant.conf",
    "./usr/share/man/man1/mailwarrant.1.gz",
    "./usr/share/man/man1/mailwarrant-serve.1.gz",
    "./usr/share/man/man1/mailwarrant-check-config.1.gz",
    "./usr/share/bash-completion/completions/mailwarrant",
    "./usr/share/zsh/vendor-completions/_mailwarrant",
    "./usr/share/fish/vendor_completions.d/mailwarrant.fish",
    "./usr/share/doc/mailwarrant/copyright",
];

/// Every socket name `serve` takes, and the unit that passes it.
const SOCKETS: &[(&str, &str)] = &[
    ("mailwarrant.socket", "dovecot-auth"),
    ("mailwarrant-saslauthd.socket", "saslauthd"),
    ("mailwarrant-policy.socket", "policy"),
    ("mailwarrant-milter.socket", "milter"),
    ("mailwarrant-http.socket", "http"),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A unit file's `Key=value` lines (the last one of a key wins, as in
/// systemd for the keys read here).
fn unit(root: &Path, name: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(root.join("lib/systemd/system").join(name)).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Every file and folder under `root`, relative to it.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path.clone());
            }
            found.insert(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
    found
}

/// Waits for the next notification datagram that holds `what`.
fn notified(socket: &UnixDatagram, what: &str) -> String {
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    loop {
        let n = socket.recv(&mut buf).unwrap_or_else(|e| panic!("no {what} from the service (saw {seen:?}): {e}"));
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        if message.lines().any(|l| l == what) {
            return message;
        }
        seen.push(message);
    }
}

#[test]
fn package_installs_a_service_that_answers_on_every_socket_of_its_units() {
    require_package("systemd").unwrap();
    require_package("binutils").unwrap();
    let scratch = tempfile::Builder::new().prefix("mailwarrant-package").tempdir().unwrap();

    // Build, list, unpack.
    let out = run(Command::new("bash")
        .arg(repo().join("scripts/package.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_mailwarrant"), "--compress", "none", "--out"])
        .arg(scratch.path().join("out")));
    let deb = PathBuf::from(out.trim().lines().last().unwrap());
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let paths: BTreeSet<&str> = listing.lines().filter_map(|l| l.split_whitespace().nth(5)).collect();
    let units = SOCKETS.iter().map(|(u, _)| *u).chain(["mailwarrant.service"]);
    let expected = SHIPPED.iter().map(|p| p.to_string()).chain(units.map(|u| format!("./lib/systemd/system/{u}")));
    for path in expected {
        assert!(paths.contains(path.as_str()), "{path} is not in the package:\n{listing}");
    }
    let conffiles = run(Command::new("dpkg-deb").args(["--info"]).arg(&deb).arg("conffiles"));
    assert!(conffiles.lines().any(|l| l == "/etc/mailwarrant/mailwarrant.toml"), "{conffiles}");
    let root = scratch.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));

    // The account, as systemd-sysusers makes it from the shipped file
    // (into the scratch root's /etc, not this machine's).
    run(Command::new("systemd-sysusers").arg(format!("--root={}", root.display())).arg("mailwarrant.conf"));
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let account = passwd.lines().find(|l| l.starts_with("mailwarrant:")).unwrap_or_else(|| panic!("{passwd}"));
    assert!(account.ends_with(":/var/lib/mailwarrant:/usr/sbin/nologin"), "{account}");
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(group.lines().any(|l| l.starts_with("mailwarrant:")), "{group}");

    // The units: what they say, and systemd's own check. systemd-analyze
    // wants ExecStart's binary on this machine's /usr/bin, so the copies
    // checked point at the unpacked one instead.
    let service = unit(&root, "mailwarrant.service");
    assert_eq!(service["Type"], "notify");
    let exec: Vec<&str> = service["ExecStart"].split_whitespace().collect();
    assert_eq!(exec[..2], ["/usr/bin/mailwarrant", "serve"], "{exec:?}");
    assert_eq!(service["ProtectSystem"], "strict");
    let writable: Vec<PathBuf> =
        [("StateDirectory", "/var/lib"), ("LogsDirectory", "/var/log"), ("RuntimeDirectory", "/run")]
            .iter()
            .map(|(key, base)| Path::new(base).join(&service[*key]))
            .collect();
    let checked = scratch.path().join("units");
    std::fs::create_dir(&checked).unwrap();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root.join("lib/systemd/system")).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let text = text.replace("/usr/bin/mailwarrant", &root.join("usr/bin/mailwarrant").display().to_string());
        std::fs::write(checked.join(entry.file_name()), text).unwrap();
        names.push(entry.file_name());
    }
    assert_eq!(names.len(), SOCKETS.len() + 1, "{names:?}");
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&names)
        .current_dir(&checked)
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}\n{}",
        verify.status,
        String::from_utf8_lossy(&verify.stderr)
    );
    let mut listen = Vec::new();
    let mut fd_names = Vec::new();
    let mut tcp = BTreeMap::new();
    for (file, name) in SOCKETS {
        let socket = unit(&root, file);
        assert_eq!(socket["FileDescriptorName"], *name, "{file}");
        assert_eq!(socket["Service"], "mailwarrant.service", "{file}");
        let address = &socket["ListenStream"];
        if address.starts_with('/') {
            // A UNIX socket the service reaches must sit in its runtime folder.
            assert!(writable.iter().any(|w| Path::new(address).starts_with(w)), "{file}: {address}");
            let path = root.join(address.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            listen.push(format!("--listen={}", path.display()));
        } else {
            let port = free_port();
            tcp.insert(*name, port);
            listen.push(format!("--listen=127.0.0.1:{port}"));
        }
        fd_names.push(*name);
    }

    // The installed config: every path its defaults write is in a folder
    // the unit makes writable; it passes check-config (found through
    // MAILWARRANT_CONFIG) once its secret file exists.
    let config_file = root.join("etc/mailwarrant/mailwarrant.toml");
    let template = std::fs::read_to_string(&config_file).unwrap();
    let raw: toml::Table = template.parse().unwrap();
    let audit = raw["audit"]["path"].as_str().unwrap();
    assert!(Path::new(audit).starts_with(&writable[1]), "[audit] path {audit} is outside {:?}", writable[1]);
    assert!(raw["store"].get("path").is_none(), "the store's default path is the StateDirectory's");
    let state =
        mailwarrant::config::store::default_sqlite_path(Path::new("/etc/mailwarrant"), Some(writable[0].as_os_str()));
    assert!(state.starts_with(&writable[0]), "{state:?}");
    std::fs::write(root.join("etc/mailwarrant/bind-password"), SERVICE_PASSWORD).unwrap();
    for w in &writable {
        std::fs::create_dir_all(root.join(w.strip_prefix("/").unwrap())).unwrap();
    }
    let check = Command::new(root.join("usr/bin/mailwarrant"))
        .arg("check-config")
        .env("MAILWARRANT_CONFIG", &config_file)
        .env("STATE_DIRECTORY", root.join("var/lib/mailwarrant"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success() && said.contains("OK (0 warning(s))"), "check-config: {said}");

    // Re-point it at a test slapd and at the scratch root's /var/log.
    let slapd = Slapd::start().unwrap();
    let urls = "urls = [\"ldaps://ldap1.example.com\", \"ldaps://ldap2.example.com\"]  # EDIT";
    assert!(template.contains(urls));
    let config = template
        .replace(urls, &format!("urls = [\"{}\"]", slapd.url()))
        .replace("/var/log/mailwarrant", &root.join("var/log/mailwarrant").display().to_string());
    std::fs::write(&config_file, config).unwrap();
    let notify_path = scratch.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let before = tree(&root);

    // Start it as the units do: ExecStart with the unpacked paths, the
    // sockets by name, the state folder systemd names, stderr as the
    // journal stream.
    let log = scratch.path().join("journal.log");
    let stderr = std::fs::File::create(&log).unwrap();
    let journal = {
        use std::os::unix::fs::MetadataExt;
        let m = stderr.metadata().unwrap();
        format!("{}:{}", m.dev(), m.ino())
    };
    // systemd-socket-activate hands the service only the variables named
    // with -E (and PATH, HOME, ...), as systemd does.
    let state_dir = root.join(writable[0].strip_prefix("/").unwrap());
    let mut command = Command::new("systemd-socket-activate");
    command.args(&listen).arg(format!("--fdname={}", fd_names.join(":")));
    for (name, value) in [
        ("STATE_DIRECTORY", state_dir.display().to_string()),
        ("NOTIFY_SOCKET", notify_path.display().to_string()),
        ("JOURNAL_STREAM", journal),
        ("RUST_LOG", "info".to_owned()),
    ] {
        command.arg(format!("--setenv={name}={value}"));
    }
    for arg in &exec {
        if arg.starts_with('/') {
            command.arg(root.join(arg.trim_start_matches('/')));
        } else {
            command.arg(arg);
        }
    }
    command
        .current_dir(root.join(service["WorkingDirectory"].trim_start_matches('/')))
        .stdout(Stdio::null())
        .stderr(stderr);
    let mut child = ChildGuard::spawn("mailwarrant", &mut command).unwrap();
    let journal_log = || std::fs::read_to_string(&log).unwrap_or_default();
    // systemd-socket-activate starts the service at the first connection.
    let port = |name: &str| tcp[name];
    wait_for_port(SocketAddr::from(([127, 0, 0, 1], port("dovecot-auth"))), Duration::from_secs(10)).unwrap();
    notified(&notify, "READY=1");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let auth = || {
        rt.block_on(async {
            let mut c = DovecotClient::connect(SocketAddr::from(([127, 0, 0, 1], port("dovecot-auth")))).await.unwrap();
            c.plain("alice", "Alice-Demo-2026!", "127.3.0.2".parse().unwrap()).await.unwrap()
        })
    };
    let answer = auth();
    assert!(matches!(answer, Answer::Ok { .. }), "{answer:?}\n{}", journal_log());

    let mut s = TcpStream::connect(("127.0.0.1", port("policy"))).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(RCPT.as_bytes()).unwrap();
    let mut reply = [0u8; 512];
    let n = s.read(&mut reply).unwrap_or(0);
    assert!(
        reply[..n].starts_with(b"action="),
        "policy: {:?}\n{}",
        String::from_utf8_lossy(&reply[..n]),
        journal_log()
    );

    let mut m = TcpStream::connect(("127.0.0.1", port("milter"))).unwrap();
    m.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    m.write_all(&[0, 0, 0, 13, b'O', 0, 0, 0, 6, 0, 0, 0, 0x01, 0, 0, 0, 0]).unwrap();
    let mut head = [0u8; 5];
    m.read_exact(&mut head).unwrap();
    assert_eq!(head[4], b'O', "the milter negotiates");

    let status = ureq::get(&format!("http://127.0.0.1:{}/healthz", port("http"))).call().map(|r| r.status());
    assert_eq!(status.ok(), Some(200), "http:\n{}", journal_log());

    let sasl =
        listen.iter().find_map(|l| l.strip_prefix("--listen=/")).map(|p| PathBuf::from(format!("/{p}"))).unwrap();
    let mut s = UnixStream::connect(&sasl).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&encode_request(&[b"alice", b"Alice-Demo-2026!", b"smtp", b""])).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(reply.get(2..4) == Some(b"OK"), "saslauthd: {reply:?}\n{}", journal_log());

    // logrotate: move the audit log, reload; the next line starts a new file.
    let audit_file = root.join(audit.trim_start_matches('/'));
    assert!(wait_until(Duration::from_secs(5), || audit_file.exists()), "{}", journal_log());
    std::fs::rename(&audit_file, audit_file.with_extension("jsonl.1")).unwrap();
    child.signal("HUP").unwrap();
    let reloading = notified(&notify, "RELOADING=1");
    assert!(reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")), "{reloading:?}");
    notified(&notify, "READY=1");
    assert!(matches!(auth(), Answer::Ok { .. }));
    assert!(
        wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&audit_file).is_ok_and(|t| t.contains("\"login\":\"alice\""))
        }),
        "the audit log is reopened at its path\n{}\nnew: {:?}\nold: {:?}",
        journal_log(),
        std::fs::read_to_string(&audit_file),
        std::fs::read_to_string(audit_file.with_extension("jsonl.1")),
    );

    child.signal("TERM").unwrap();
    notified(&notify, "STOPPING=1");
    assert!(wait_until(Duration::from_secs(30), || !child.is_running()), "{}", journal_log());

    // Journald lines: a priority prefix, no timestamp of their own.
    let text = journal_log();
    let ready = text.lines().find(|l| l.contains("mailwarrant ready")).unwrap_or_else(|| panic!("{text}"));
    let rest = ready.strip_prefix("<6>").unwrap_or_else(|| panic!("no priority: {ready}")).trim_start();
    assert!(rest.starts_with("INFO"), "no timestamp before the level: {ready}");

    // Every file the service made is in a folder the unit makes writable.
    assert!(root.join(state.strip_prefix("/").unwrap()).exists(), "the SQLite store is in the state folder");
    let made: Vec<PathBuf> = tree(&root).difference(&before).cloned().collect();
    assert!(!made.is_empty());
    for path in &made {
        assert!(
            writable.iter().any(|w| path.starts_with(w.strip_prefix("/").unwrap())),
            "{} is outside {writable:?}",
            path.display()
        );
    }
    drop(slapd);
}
