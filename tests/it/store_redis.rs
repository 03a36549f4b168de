//! Shared state in a real Redis (`testkit::redis`): the store conformance
//! suite, then several mailwarrant instances sharing one Redis, driven
//! over the policy delegation and Dovecot auth protocols: limits and
//! lockouts hold across instances, concurrent senders stop exactly at a
//! limit (on Redis and on SQLite), a Redis crash defers and recovers, and
//! two reminder runs at once send each mail once.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailwarrant::config::Config;
use mailwarrant::serve::{self, App, ShutdownTrigger};
use mailwarrant::store::conformance;
use mailwarrant::store::redis::RedisStore;
use mailwarrant::store::{Store, StoreError};
use mailwarrant::testkit::dovecot_client::{Answer, DovecotClient};
use mailwarrant::testkit::redis::{RedisSentinel, RedisServer};
use mailwarrant::testkit::slapd::Slapd;
use mailwarrant::testkit::smtp_server::SmtpServer;
use mailwarrant::testkit::{free_port, wait_for_port};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::auth_stack::demo_ldif_directory;

fn redis_store(redis: &RedisServer, prefix: &str) -> Arc<dyn Store> {
    let text = format!("{}{}", demo_ldif_directory(), redis.store_toml(prefix));
    let config = Config::from_toml(&text, Path::new("/tmp"), Path::new("redis.toml")).unwrap_or_else(|e| panic!("{e}"));
    serve::open_store(&config.store).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_passes_the_store_conformance_suite() {
    let redis = tokio::task::spawn_blocking(RedisServer::start).await.unwrap().unwrap();
    for (i, check) in conformance::CHECKS.iter().enumerate() {
        // A fresh prefix is a fresh, empty store on the same server.
        let store = redis_store(&redis, &format!("conf{i}:"));
        conformance::run(check, store).await;
    }
    // Every counter key carries an expiry (none may live forever).
    let out =
        Command::new("redis-cli").args(["-p", &redis.port.to_string(), "--scan", "--pattern", "conf*:c:*"]).output();
    let keys = String::from_utf8_lossy(&out.expect("redis-cli runs").stdout).into_owned();
    assert!(!keys.trim().is_empty());
    for key in keys.lines() {
        let ttl = Command::new("redis-cli").args(["-p", &redis.port.to_string(), "PTTL", key]).output().unwrap();
        let ttl: i64 = String::from_utf8_lossy(&ttl.stdout).trim().parse().unwrap();
        assert!(ttl > 0, "{key} has PTTL {ttl}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_unavailable_quickly_and_connect_fails_clearly() {
    let port = free_port();
    let text = format!(
        "{}[store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{port}\"\noperation_timeout = \"300ms\"\n",
        demo_ldif_directory()
    );
    let config = Config::from_toml(&text, Path::new("/tmp"), Path::new("redis.toml")).unwrap();
    let store = serve::open_store(&config.store).expect("opening does not need Redis up");
    let started = Instant::now();
    let err = store.incr("k", 1, Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(err, mailwarrant::store::StoreError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(store.check_health().await.is_err());
    let mailwarrant::config::StoreSettings::Redis(settings) = &config.store else { panic!("redis settings") };
    assert!(RedisStore::connect(settings).await.is_err());
}

/// One in-process mailwarrant (`serve::run`: policy and Dovecot auth
/// listeners) on its own runtime; stops when dropped.
struct Instance {
    policy: SocketAddr,
    dovecot: SocketAddr,
    store: Arc<dyn Store>,
    runtime: Option<tokio::runtime::Runtime>,
    trigger: Option<ShutdownTrigger>,
    _dir: tempfile::TempDir,
}

impl Instance {
    /// `store` is a `[store]` section; `rate` the default profile's limit.
    fn start(directory: &str, store: &str, rate: &str) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let (policy_port, auth_port) = (free_port(), free_port());
        let text = format!(
            "{directory}\n{store}\n[auth]\nfailure_delay = \"0s\"\n[auth.throttle]\nper_login = 3\nper_client = 1000\n\
             [auth.dovecot]\nlisten = [\"127.0.0.1:{auth_port}\"]\ntemp_fail = \"fail_code\"\n\
             [policy]\nlisten = \"127.0.0.1:{policy_port}\"\norganisation_domains = [\"example.com\"]\n\
             [policy.profiles.default]\nrate_limits = [{{ rate = \"{rate}\" }}]\n"
        );
        let config = Config::from_toml(&text, dir.path(), Path::new("instance.toml")).unwrap_or_else(|e| panic!("{e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let app = runtime.block_on(App::build(config)).expect("mailwarrant builds");
        let store = app.store.clone();
        let (trigger, shutdown) = serve::shutdown::channel();
        runtime.spawn(async move {
            if let Err(e) = serve::run(app, shutdown).await {
                eprintln!("serve ended: {e}");
            }
        });
        let policy = SocketAddr::from(([127, 0, 0, 1], policy_port));
        let dovecot = SocketAddr::from(([127, 0, 0, 1], auth_port));
        wait_for_port(policy, Duration::from_secs(10)).unwrap();
        wait_for_port(dovecot, Duration::from_secs(10)).unwrap();
        Instance { policy, dovecot, store, runtime: Some(runtime), trigger: Some(trigger), _dir: dir }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(t) = self.trigger.take() {
            t.fire();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// A persistent policy connection, like one Postfix smtpd process.
struct PolicyClient {
    conn: BufReader<TcpStream>,
}

impl PolicyClient {
    async fn connect(addr: SocketAddr) -> PolicyClient {
        PolicyClient { conn: BufReader::new(TcpStream::connect(addr).await.unwrap()) }
    }

    /// The END-OF-MESSAGE request of one message from `login`; the reply's
    /// action line (`DUNNO`, `450 4.7.1 …`).
    async fn message(&mut self, login: &str, instance: &str) -> String {
        let req = format!(
            "request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\nprotocol_name=ESMTP\n\
             client_address=127.0.0.9\nsasl_method=PLAIN\nsasl_username={login}\nsender={login}@example.com\n\
             recipient=\nrecipient_count=1\ninstance={instance}\nsize=1200\n\n"
        );
        self.conn.get_mut().write_all(req.as_bytes()).await.unwrap();
        let mut action = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = tokio::time::timeout(Duration::from_secs(20), self.conn.read_line(&mut line))
                .await
                .expect("a policy reply within 20 s")
                .unwrap();
            assert!(n > 0, "the policy server closed the connection");
            if line == "\n" {
                return action;
            }
            if let Some(rest) = line.strip_prefix("action=") {
                action = rest.trim_end().to_owned();
            }
        }
    }
}

/// Accepted (`DUNNO`), deferred (4xx) and anything else, counted.
#[derive(Default, Debug)]
struct Tally {
    accepted: AtomicUsize,
    deferred: AtomicUsize,
    other: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn add(&self, action: &str) {
        if action == "DUNNO" {
            self.accepted.fetch_add(1, Ordering::SeqCst);
        } else if action.starts_with('4') {
            self.deferred.fetch_add(1, Ordering::SeqCst);
        } else {
            self.other.lock().unwrap().push(action.to_owned());
        }
    }

    fn counts(&self) -> (usize, usize, Vec<String>) {
        (self.accepted.load(Ordering::SeqCst), self.deferred.load(Ordering::SeqCst), self.other.lock().unwrap().clone())
    }
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn a_limit_of_ten_holds_across_two_instances_sharing_redis() {
    let slapd = Slapd::start().unwrap();
    let redis = RedisServer::start().unwrap();
    let store = redis.store_toml("two:");
    let a = Instance::start(&slapd.config_toml(), &store, "10/1d");
    let b = Instance::start(&slapd.config_toml(), &store, "10/1d");
    let tally = client_runtime().block_on(async {
        let tally = Tally::default();
        let (mut ca, mut cb) = (PolicyClient::connect(a.policy).await, PolicyClient::connect(b.policy).await);
        for i in 0..6 {
            tally.add(&ca.message("alice", &format!("a.{i}")).await);
            tally.add(&cb.message("alice", &format!("b.{i}")).await);
        }
        // Asked again (Postfix retrying the same message) through the other
        // instance: not counted twice.
        assert_eq!(cb.message("alice", "a.0").await, "DUNNO");
        // Another user is not affected.
        assert_eq!(ca.message("bob", "bob.1").await, "DUNNO");
        tally
    });
    let (accepted, deferred, other) = tally.counts();
    assert_eq!((accepted, deferred), (10, 2), "other replies: {other:?}");
    assert!(other.is_empty(), "{other:?}");
}

#[test]
fn a_lockout_through_one_instance_holds_on_the_other() {
    let slapd = Slapd::start().unwrap();
    let redis = RedisServer::start().unwrap();
    let store = redis.store_toml("lock:");
    let a = Instance::start(&slapd.config_toml(), &store, "100/1d");
    let b = Instance::start(&slapd.config_toml(), &store, "100/1d");
    client_runtime().block_on(async {
        let ip = |n: u8| IpAddr::from([127, 0, 3, n]);
        let mut ca = DovecotClient::connect(a.dovecot).await.unwrap();
        let mut cb = DovecotClient::connect(b.dovecot).await.unwrap();
        // B knows carol's right password (and caches it).
        assert_eq!(cb.plain("carol", "Carol-Demo-2026!", ip(1)).await.unwrap(), Answer::Ok { user: "carol".into() });
        // Three wrong guesses through A (per_login = 3), from three addresses.
        for n in 0..3 {
            let answer = ca.plain("carol", &format!("Guess-{n}"), ip(10 + n)).await.unwrap();
            assert!(matches!(&answer, Answer::Fail { line } if !line.contains("temp_fail")), "{answer:?}");
        }
        // Now B asks the directory nothing more for carol: another password
        // is told to try later. Her right password, which B holds a
        // verifier of, still works there (nothing reaches the directory).
        let answer = cb.plain("carol", "Guess-9", ip(2)).await.unwrap();
        assert!(matches!(&answer, Answer::Fail { line } if line.contains("code=temp_fail")), "B: {answer:?}");
        assert_eq!(cb.plain("carol", "Carol-Demo-2026!", ip(2)).await.unwrap(), Answer::Ok { user: "carol".into() });
        // A never verified it: even the right password must wait there.
        let answer = ca.plain("carol", "Carol-Demo-2026!", ip(3)).await.unwrap();
        assert!(matches!(&answer, Answer::Fail { line } if line.contains("code=temp_fail")), "A: {answer:?}");
        // Others still log in through B.
        assert_eq!(cb.plain("dave", "Dave-Demo-2026!", ip(4)).await.unwrap(), Answer::Ok { user: "dave".into() });
    });
}

/// 64 connections, each sending messages for the same login as fast as it
/// can, spread over `instances`: exactly `limit` are accepted.
fn hammer(instances: &[&Instance], limit: usize) {
    const SENDERS: usize = 64;
    let per_sender = limit.div_ceil(SENDERS) * 2;
    let tally = Arc::new(Tally::default());
    client_runtime().block_on(async {
        let tasks: Vec<_> = (0..SENDERS)
            .map(|s| {
                let addr = instances[s % instances.len()].policy;
                let tally = tally.clone();
                tokio::spawn(async move {
                    let mut c = PolicyClient::connect(addr).await;
                    for m in 0..per_sender {
                        tally.add(&c.message("erin", &format!("h.{s}.{m}")).await);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let (accepted, deferred, other) = tally.counts();
    assert_eq!(accepted, limit, "deferred {deferred}, other {other:?}");
    assert_eq!(deferred, SENDERS * per_sender - limit);
    assert!(other.is_empty(), "{other:?}");
}

#[test]
fn sixty_four_concurrent_senders_stop_exactly_at_the_limit_on_redis() {
    let slapd = Slapd::start().unwrap();
    let redis = RedisServer::start().unwrap();
    let store = redis.store_toml("hammer:");
    let a = Instance::start(&slapd.config_toml(), &store, "150/1d");
    let b = Instance::start(&slapd.config_toml(), &store, "150/1d");
    hammer(&[&a, &b], 150);
}

#[test]
fn sixty_four_concurrent_senders_stop_exactly_at_the_limit_on_sqlite() {
    let slapd = Slapd::start().unwrap();
    let a = Instance::start(&slapd.config_toml(), "[store]\npath = \"state.sqlite\"\n", "150/1d");
    hammer(&[&a], 150);
}

#[test]
fn a_redis_crash_defers_then_recovers_without_a_restart() {
    let slapd = Slapd::start().unwrap();
    let mut redis = RedisServer::start().unwrap();
    // A killed Redis refuses connections at once; the timeout only guards
    // against a starved machine deferring before the crash.
    let store = format!("{}operation_timeout = \"2s\"\n", redis.store_toml("crash:"));
    let a = Instance::start(&slapd.config_toml(), &store, "8/1d");
    let rt = client_runtime();
    let mut c = rt.block_on(PolicyClient::connect(a.policy));
    let mut auth = rt.block_on(DovecotClient::connect(a.dovecot)).unwrap();
    let ip = IpAddr::from([127, 0, 4, 1]);
    let mut seq = 0;
    let mut send = |c: &mut PolicyClient| {
        seq += 1;
        rt.block_on(c.message("frank", &format!("crash.{seq}")))
    };
    for _ in 0..5 {
        assert_eq!(send(&mut c), "DUNNO");
    }

    redis.kill();
    // Every message while Redis is down is deferred: never accepted (the
    // counters cannot be checked), never refused for good.
    for _ in 0..10 {
        let action = send(&mut c);
        assert!(action.starts_with("451 4.3.0"), "during the outage: {action}");
    }
    assert!(rt.block_on(a.store.check_health()).is_err(), "readiness fails while Redis is down");
    // AUTH keeps its failure budgets in the process meanwhile
    // (`store_error_action = "local"`): a password is still checked, within
    // the budget, so a guess is no freer than before.
    let answer = rt.block_on(auth.plain("dave", "Dave-Demo-2026!", ip)).unwrap();
    assert_eq!(answer, Answer::Ok { user: "dave".into() });

    redis.restart().unwrap();
    let back = Instant::now();
    let action = loop {
        let action = send(&mut c);
        if action == "DUNNO" || back.elapsed() > Duration::from_secs(10) {
            break action;
        }
        assert!(action.starts_with("451 4.3.0"), "while recovering: {action}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(action, "DUNNO", "recovered");
    assert!(back.elapsed() < Duration::from_secs(5), "recovery took {:?}", back.elapsed());
    rt.block_on(a.store.check_health()).unwrap();
    assert!(matches!(rt.block_on(auth.plain("dave", "Dave-Demo-2026!", ip)).unwrap(), Answer::Ok { .. }));
    // The crashed Redis kept nothing (no persistence): the limit counts
    // afresh and holds exactly.
    let accepted = 1 + (0..12).filter(|_| send(&mut c) == "DUNNO").count();
    assert_eq!(accepted, 8);
}

#[test]
fn two_reminder_runs_on_two_instances_send_each_mail_once() {
    let redis = RedisServer::start().unwrap();
    let smtp = SmtpServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let now = time::macros::datetime!(2026-11-27 08:00 UTC);
    let mut ldif = String::new();
    for (i, days) in [80, 85, 89, 95, 10].iter().enumerate() {
        let changed = now - time::Duration::days(*days);
        ldif += &format!(
            "dn: uid=user{i},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: user{i}\ncn: User {i}\n\
             sn: {i}\nmail: user{i}@example.com\npwdChangedTime: {:04}{:02}{:02}080000Z\n\n",
            changed.year(),
            changed.month() as u8,
            changed.day()
        );
    }
    std::fs::write(dir.path().join("people.ldif"), ldif).unwrap();
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/templates");
    // Two instances: two config files (their own folders), one Redis.
    let configs: Vec<_> = ["a", "b"]
        .iter()
        .map(|name| {
            let file = dir.path().join(format!("{name}.toml"));
            std::fs::write(
                &file,
                format!(
                    "[directory]\nkind = \"ldif\"\n[directory.ldif]\npath = \"people.ldif\"\n{}\
                     [mailer]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nfrom = \"it@example.com\"\n\
                     templates = {templates:?}\n[reminders]\nmax_age = \"90d\"\ntime_zone = \"UTC\"\nmax_per_second = 1000\n\
                     self_service_url = \"https://mail.example.com/password\"\n",
                    redis.store_toml("remind:"),
                    smtp.port
                ),
            )
            .unwrap();
            file
        })
        .collect();
    let stamp = now.format(&time::format_description::well_known::Rfc3339).unwrap();
    let run = |config: &Path| {
        Command::new(env!("CARGO_BIN_EXE_mailwarrant"))
            .args(["remind", "--json", "--now", &stamp, "--config"])
            .arg(config)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (run(&configs[0]), run(&configs[1]));
    let reports: Vec<serde_json::Value> = [a, b]
        .into_iter()
        .map(|p| {
            let out = p.wait_with_output().unwrap();
            assert!(out.status.success());
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let status_of =
        |r: &serde_json::Value, s: &str| r["outcomes"].as_array().unwrap().iter().filter(|o| o["status"] == s).count();
    let due = reports[0]["outcomes"].as_array().unwrap().len();
    assert_eq!(due, 4, "{}", reports[0]);
    assert_eq!(status_of(&reports[0], "sent") + status_of(&reports[1], "sent"), due, "{reports:?}");
    assert_eq!(status_of(&reports[0], "already_sent") + status_of(&reports[1], "already_sent"), due);
    assert_eq!(smtp.messages().len(), due, "each due mail exactly once across both instances");
    // The ledger is in Redis: a third run through either sends nothing.
    let again = run(&configs[1]).wait_with_output().unwrap();
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(status_of(&again, "already_sent"), due);
    assert_eq!(smtp.messages().len(), due);
}

#[test]
fn check_config_connect_reports_whether_redis_answers() {
    let mut redis = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mailwarrant.toml");
    std::fs::write(&file, format!("{}{}", demo_ldif_directory(), redis.store_toml("cli:"))).unwrap();
    let check = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mailwarrant"))
            .args(["check-config", "--config"])
            .arg(&file)
            .args(extra)
            .output()
            .unwrap()
    };
    let up = check(&["--connect"]);
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(up.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("Redis at redis://127.0.0.1:{} answers", redis.port)), "{stderr}");

    redis.kill();
    let down = check(&["--connect"]);
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert_eq!(down.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("does not answer"), "{stderr}");
    // Without --connect, only the file is checked.
    assert!(check(&[]).status.success());
}

#[test]
fn serve_starts_without_redis_logs_the_outage_once_and_recovers() {
    let mut redis = RedisServer::start().unwrap();
    redis.kill();
    let dir = tempfile::tempdir().unwrap();
    let policy_port = free_port();
    let http_port = free_port();
    let file = dir.path().join("mailwarrant.toml");
    std::fs::write(
        &file,
        format!(
            "{}{}operation_timeout = \"2s\"\n[auth.dovecot]\nlisten = []\n[policy]\nlisten = \"127.0.0.1:{policy_port}\"\n\
             organisation_domains = [\"example.com\"]\n[policy.profiles.default]\nrate_limits = [{{ rate = \"100/1d\" }}]\n\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\npublic_base_url = \"http://127.0.0.1:{http_port}\"\n\
             [[http.tokens]]\nname = \"monitoring\"\nid = \"ops\"\nhash = \"sha256:0a860300f3e92032baa866bb958c0793e0c76a638bf8968cf49198f13dbcb771\"\nscopes = [\"lookup\"]\n",
            demo_ldif_directory(),
            redis.store_toml("serve:")
        ),
    )
    .unwrap();
    let log_path = dir.path().join("serve.log");
    let mut serve = mailwarrant::testkit::ChildGuard::spawn(
        "mailwarrant",
        Command::new(env!("CARGO_BIN_EXE_mailwarrant"))
            .args(["serve", "--config"])
            .arg(&file)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap()),
    )
    .unwrap();
    let policy = SocketAddr::from(([127, 0, 0, 1], policy_port));
    wait_for_port(policy, Duration::from_secs(20)).expect("serve starts while Redis is down");
    let rt = client_runtime();
    let mut c = rt.block_on(PolicyClient::connect(policy));
    let down = Instant::now();
    for i in 0..40 {
        let action = rt.block_on(c.message("alice", &format!("down.{i}")));
        assert!(action.starts_with("451 4.3.0"), "{action}");
    }
    // A refused connection fails fast: no request waits out the 2 s timeout.
    assert!(down.elapsed() < Duration::from_secs(10), "40 deferrals took {:?}", down.elapsed());
    // /readyz says not ready, and names the store to a monitoring token.
    let readyz = || match ureq::get(&format!("http://127.0.0.1:{http_port}/readyz"))
        .set("Authorization", "Bearer ops.monitoring-token-1")
        .call()
    {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("/readyz: {e}"),
    };
    let (status, body) = readyz();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"store\":\"error"), "{body}");
    redis.restart().unwrap();
    let back = Instant::now();
    let mut i = 0;
    while rt.block_on(c.message("alice", &format!("up.{i}"))) != "DUNNO" {
        assert!(back.elapsed() < Duration::from_secs(5), "no recovery");
        std::thread::sleep(Duration::from_millis(100));
        i += 1;
    }
    assert!(
        mailwarrant::testkit::wait_until(Duration::from_secs(10), || readyz().0 == 200),
        "ready again: {:?}",
        readyz()
    );
    serve.signal("TERM").unwrap();
    assert!(mailwarrant::testkit::wait_until(Duration::from_secs(10), || !serve.is_running()));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("Redis store unavailable"), 1, "one line for 40 failed requests:\n{log}");
    assert_eq!(count("counter store unavailable for policy requests"), 1, "{log}");
    assert_eq!(count("Redis store reachable again"), 1, "{log}");
}

/// A primary behind Sentinel that needs a password (`requirepass`): the
/// store logs in with `primary_password`; without it every request fails
/// with the server's NOAUTH (callers apply their store outage action).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_primary_with_a_password() {
    let primary = RedisServer::start_with_password("s3cret-primary").unwrap();
    let sentinel = RedisSentinel::start_with_auth(primary.port, "authmaster", Some("s3cret-primary")).unwrap();
    let store_with = |login: &str| {
        let text = format!(
            "{}[store]\nkind = \"redis\"\nsentinels = [\"{}\"]\nsentinel_master = \"authmaster\"\nprefix = \"pw:\"\n\
             operation_timeout = \"1s\"\nconnect_timeout = \"500ms\"\n{login}",
            demo_ldif_directory(),
            sentinel.url()
        );
        let config =
            Config::from_toml(&text, Path::new("/tmp"), Path::new("sentinel.toml")).unwrap_or_else(|e| panic!("{e}"));
        assert!(!config.redacted_toml().contains("s3cret"), "the password is never printed");
        serve::open_store(&config.store).unwrap()
    };
    let store = store_with("primary_password = \"s3cret-primary\"\n");
    assert_eq!(store.incr("logged-in", 1, Duration::from_secs(60)).await.unwrap(), 1);
    assert_eq!(store.counter("logged-in").await.unwrap(), 1);

    let anonymous = store_with("");
    let refused = anonymous.incr("logged-in", 1, Duration::from_secs(60)).await;
    match refused {
        Err(e @ (StoreError::Unavailable(_) | StoreError::Backend(_))) => {
            assert!(e.to_string().contains("NOAUTH"), "{e}")
        }
        other => panic!("{other:?}"),
    }

    let wrong = Config::from_toml(
        &format!(
            "{}[store]\nkind = \"redis\"\nurl = \"{}\"\nprimary_password = \"x\"\n",
            demo_ldif_directory(),
            primary.url()
        ),
        Path::new("/tmp"),
        Path::new("t.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(wrong.contains("store.primary_password"), "{wrong}");
}

/// Redis Sentinel: the store connects to the primary the Sentinel names,
/// passes the conformance suite there, and when the primary dies and the
/// Sentinel promotes the replica, the store follows without a restart
/// (the failed requests in between are `Unavailable`, so callers defer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_failover_is_followed_without_a_restart() {
    let mut primary = RedisServer::start().unwrap();
    let replica = RedisServer::start_replica_of(primary.port).unwrap();
    let sentinel = RedisSentinel::start(primary.port, "mymaster").unwrap();
    let store_for = |prefix: &str| {
        let text = format!(
            "{}[store]\nkind = \"redis\"\nsentinels = [\"{}\"]\nsentinel_master = \"mymaster\"\nprefix = \"{prefix}\"\n\
             operation_timeout = \"1s\"\nconnect_timeout = \"500ms\"\n",
            demo_ldif_directory(),
            sentinel.url()
        );
        let config =
            Config::from_toml(&text, Path::new("/tmp"), Path::new("sentinel.toml")).unwrap_or_else(|e| panic!("{e}"));
        serve::open_store(&config.store).unwrap()
    };
    for (i, check) in conformance::CHECKS.iter().enumerate() {
        conformance::run(check, store_for(&format!("sentinel{i}:"))).await;
    }
    let store = store_for("sentinel:");
    assert_eq!(store.incr("failover", 1, Duration::from_secs(600)).await.unwrap(), 1);

    // The replica must be in sync before the primary dies.
    let synced = tokio::task::spawn_blocking({
        let port = replica.port;
        move || {
            mailwarrant::testkit::wait_until(Duration::from_secs(20), || {
                let out =
                    Command::new("redis-cli").args(["-p", &port.to_string(), "GET", "sentinel:c:failover"]).output();
                out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "1")
            })
        }
    })
    .await
    .unwrap();
    assert!(synced, "the replica never caught up");

    primary.kill();
    let started = Instant::now();
    let value = loop {
        match store.incr("failover", 1, Duration::from_secs(600)).await {
            Ok(v) => break v,
            Err(mailwarrant::store::StoreError::Unavailable(_)) => {
                assert!(started.elapsed() < Duration::from_secs(45), "no failover followed in 45 s");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("not an outage: {e}"),
        }
    };
    assert_eq!(value, 2, "the promoted replica kept the counter");
    eprintln!("Sentinel failover followed after {:?}", started.elapsed());
}
