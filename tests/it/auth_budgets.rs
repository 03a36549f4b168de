//! The AUTH failure budgets against the real parts: slapd's ppolicy
//! counts, a real Postfix in front, two instances on one redis-server,
//! and redis-server stopped under load.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use mailwarrant::testkit::dovecot_client::{Answer, DovecotClient};
use mailwarrant::testkit::redis::RedisServer;
use mailwarrant::testkit::slapd::Slapd;

use crate::auth_postfix::postfix_for;
use crate::auth_stack::{swaks_auth, Stack};
use crate::password_slapd::set_default_policy;

/// `pwdFailureTime` values slapd holds for a user.
fn failures_in_directory(slapd: &Slapd, uid: &str) -> usize {
    attribute_lines(slapd, uid, "pwdFailureTime")
}

fn attribute_lines(slapd: &Slapd, uid: &str, attribute: &str) -> usize {
    let (admin, password) = slapd.admin();
    let out = Command::new("ldapsearch")
        .args(["-x", "-LLL", "-H", &slapd.url(), "-D", admin, "-w", password])
        .args(["-b", &format!("uid={uid},ou=people,dc=example,dc=com"), "-s", "base", "(objectClass=*)", attribute])
        .output()
        .expect("ldapsearch runs");
    let prefix = format!("{attribute}:");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with(&prefix)).count()
}

fn binds_at_slapd(slapd: &Slapd, uid: &str, password: &str) -> bool {
    Command::new("ldapwhoami")
        .args(["-x", "-H", &slapd.url(), "-D", &format!("uid={uid},ou=people,dc=example,dc=com"), "-w", password])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn client(i: u32) -> IpAddr {
    IpAddr::from([127, 20 + (i / 250) as u8, (i % 250) as u8, 1])
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// One wrong password per connection, all sent at the same moment, the
/// connections spread over `ports` in turn, each from its own address.
fn guesses_at_once(ports: &[u16], login: &'static str, n: usize) -> Vec<Answer> {
    runtime().block_on(async {
        let mut clients = Vec::new();
        for i in 0..n {
            clients.push(
                DovecotClient::connect(SocketAddr::from(([127, 0, 0, 1], ports[i % ports.len()]))).await.unwrap(),
            );
        }
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| {
                tokio::spawn(async move { c.plain(login, &format!("Guess-{i}-Password"), client(i as u32)).await })
            })
            .collect();
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap().unwrap());
        }
        answers
    })
}

/// Forty wrong passwords for one login at the same moment, on forty
/// connections from forty addresses: exactly `per_login` reach slapd.
#[test]
fn concurrent_guesses_reach_slapd_exactly_per_login_times() {
    let slapd = Slapd::start().unwrap();
    let stack = Stack::start(&slapd.config_toml(), "[auth.throttle]\nper_login = 5\nper_client = 1000\n");
    let answers = guesses_at_once(&[stack.dovecot_port], "dave", 40);
    let refused = answers.iter().filter(|a| matches!(a, Answer::Fail { .. })).count();
    let try_later = answers.iter().filter(|a| matches!(a, Answer::Closed)).count();
    assert_eq!((refused, try_later), (5, 35), "{answers:?}");
    assert_eq!(failures_in_directory(&slapd, "dave"), 5);
    assert!(binds_at_slapd(&slapd, "dave", "Dave-Demo-2026!"), "dave is not locked at slapd");
}

/// ppolicy counts failures within `pwdFailureCountInterval` and locks at
/// `pwdMaxFailure`. Guesses paced around mailwarrant's window (a burst at
/// the end of one window, another right after) passed a fixed window
/// twice in a row; the budget forgets only after a quiet window, so no
/// pacing brings slapd to its threshold.
#[test]
fn paced_guesses_never_lock_the_account_at_slapd() {
    let slapd = Slapd::start().unwrap();
    set_default_policy(&slapd, "pwdMaxFailure", "4");
    set_default_policy(&slapd, "pwdFailureCountInterval", "3");
    let stack = Stack::start(
        &slapd.config_toml(),
        "[auth.throttle]\nwindow = \"3s\"\nper_login = 3\nper_login_client = 3\nper_client = 1000\n",
    );
    let address = SocketAddr::from(([127, 0, 0, 1], stack.dovecot_port));
    runtime().block_on(async {
        let mut n = 0u32;
        // (guesses, pause after): one guess opens a window, two more just
        // before it would end, three just after it, and again.
        for (guesses, pause) in [(1, 2_700), (2, 400), (3, 2_700), (3, 400), (3, 0)] {
            for _ in 0..guesses {
                n += 1;
                // One connection per guess: a closed one (try later) is gone.
                let mut c = DovecotClient::connect(address).await.unwrap();
                let _ = c.plain("bob", &format!("Guess-{n}-Password"), client(n)).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    });
    assert_eq!(attribute_lines(&slapd, "bob", "pwdAccountLockedTime"), 0, "slapd locked bob");
    assert!(binds_at_slapd(&slapd, "bob", "Bob-Demo-2026!"), "bob can bind at slapd");
}

/// Two instances on one redis-server share every budget: twenty guesses
/// at once, half through each, and slapd sees exactly `per_login`.
#[test]
fn two_instances_on_one_redis_share_the_budgets() {
    let slapd = Slapd::start().unwrap();
    let redis = RedisServer::start().unwrap();
    let throttle = "[auth.throttle]\nper_login = 4\nper_client = 1000\n";
    let a = Stack::start_with_store(&slapd.config_toml(), &redis.store_toml("mw:"), throttle);
    let b = Stack::start_with_store(&slapd.config_toml(), &redis.store_toml("mw:"), throttle);
    let ports = [a.dovecot_port, b.dovecot_port];
    let answers = guesses_at_once(&ports, "bob", 20);
    let refused = answers.iter().filter(|a| matches!(a, Answer::Fail { .. })).count();
    assert_eq!(refused, 4, "{answers:?}");
    assert_eq!(failures_in_directory(&slapd, "bob"), 4);
    // A later guess through either instance is told to try later.
    runtime().block_on(async {
        let mut c = DovecotClient::connect(SocketAddr::from(([127, 0, 0, 1], ports[1]))).await.unwrap();
        assert_eq!(c.plain("bob", "Guess-99-Password", client(99)).await.unwrap(), Answer::Closed);
    });
}

/// During an attack from other addresses, the user whose right password
/// the cache holds keeps sending through a real Postfix (235); a user
/// whose password is not cached is told to try later (454), never that
/// the password is wrong (535), so the mail client does not ask for a new
/// one.
#[test]
fn postfix_users_keep_working_during_an_attack() {
    let slapd = Slapd::start().unwrap();
    let stack = Stack::start(&slapd.config_toml(), "[auth.throttle]\nper_login = 4\nper_client = 1000\n");
    let postfix = postfix_for(&stack);
    let (ok, t) = swaks_auth(&postfix, "PLAIN", "alice", "Alice-Demo-2026!");
    assert!(ok && t.contains("235 2.7.0"), "{t}");
    let address = SocketAddr::from(([127, 0, 0, 1], stack.dovecot_port));
    runtime().block_on(async {
        for login in ["alice", "carol"] {
            for i in 0..30 {
                let mut c = DovecotClient::connect(address).await.unwrap();
                let _ = c.plain(login, &format!("Guess-{i}-Password"), client(100 + i)).await;
            }
        }
    });
    assert!(failures_in_directory(&slapd, "carol") <= 4);
    let (ok, t) = swaks_auth(&postfix, "PLAIN", "alice", "Alice-Demo-2026!");
    assert!(ok && t.contains("235 2.7.0"), "the cached user gets in: {t}");
    let (ok, t) = swaks_auth(&postfix, "PLAIN", "carol", "Carol-Demo-2026!");
    assert!(!ok && t.contains("454 4.7.0"), "the uncached user is told to try later: {t}");
    assert!(!t.contains("535"), "{t}");
}

/// redis-server killed while logins go on: cached users keep getting in,
/// wrong passwords are still budgeted (in the process) so slapd sees no
/// more than the budget, and counting resumes in Redis when it is back.
#[test]
fn a_redis_outage_keeps_cached_users_in_and_guesses_budgeted() {
    let slapd = Slapd::start().unwrap();
    let mut redis = RedisServer::start().unwrap();
    let stack = Stack::start_with_store(
        &slapd.config_toml(),
        &redis.store_toml("mw:"),
        "[auth.throttle]\nper_login = 4\nper_client = 1000\n",
    );
    let address = SocketAddr::from(([127, 0, 0, 1], stack.dovecot_port));
    let rt = runtime();
    let attempt = |login: &'static str, password: String, from: IpAddr| {
        rt.block_on(async move {
            let mut c = DovecotClient::connect(address).await.unwrap();
            c.plain(login, &password, from).await.unwrap()
        })
    };
    assert!(matches!(attempt("alice", "Alice-Demo-2026!".into(), client(1)), Answer::Ok { .. }));
    for i in 0..2 {
        assert!(matches!(attempt("dave", format!("Guess-{i}-Password"), client(10 + i)), Answer::Fail { .. }));
    }
    redis.kill();
    for i in 0..50 {
        assert!(matches!(attempt("alice", "Alice-Demo-2026!".into(), client(1)), Answer::Ok { .. }), "login {i}");
        let _ = attempt("dave", format!("Guess-{}-Password", 2 + i), client(20 + i));
    }
    assert_eq!(failures_in_directory(&slapd, "dave"), 4, "two before the outage, two during it");
    redis.restart().unwrap();
    // The store's connection comes back on its own (a reconnect pause).
    let mut n = 0;
    let resumed = mailwarrant::testkit::wait_until(Duration::from_secs(15), || {
        n += 1;
        let _ = attempt("bob", format!("Guess-after-{n}"), client(90));
        let out = Command::new("redis-cli")
            .args(["-u", &redis.url(), "--scan", "--pattern", "mw:*auth:fail:login:bob*"])
            .output()
            .unwrap();
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    });
    assert!(resumed, "counting resumed in Redis");
}

/// `check-config --connect` reads slapd's ppolicy entries and fails (exit
/// 4, naming what to change) when a budget could let slapd lock someone.
#[test]
fn check_config_reads_the_lockout_settings_of_slapd() {
    let slapd = Slapd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |throttle: &str| {
        let path = dir.path().join("mailwarrant.toml");
        let text = format!("{}\n[store]\npath = \"state.sqlite\"\n[auth.throttle]\n{throttle}\n", slapd.config_toml());
        std::fs::write(&path, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_mailwarrant"))
            .args(["check-config", "--connect", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    // The seed: pwdMaxFailure 10 within pwdFailureCountInterval 900 s.
    let ok = run("per_login = 8");
    let said = String::from_utf8_lossy(&ok.stderr).into_owned();
    assert!(ok.status.success(), "{said}");
    assert!(said.contains("AUTH budgets stay below them"), "{said}");
    let bad = run("per_login = 10\nwindow = \"5m\"");
    let said = String::from_utf8_lossy(&bad.stderr).into_owned();
    assert_eq!(bad.status.code(), Some(4), "{said}");
    assert!(said.contains("set it to at most 9"), "{said}");
    assert!(said.contains("window = 5m is shorter than the 15m"), "{said}");
}
