//! AUTH under a guessing flood: legitimate users at a fixed arrival rate
//! while wrong passwords pour in from 1,000 client addresses against
//! 1,000 logins, against mailwarrant and against Dovecot 2.3's own auth
//! server (LDAP passdb) on the same slapd, in one run.
//!
//! Run: `cargo bench --bench auth_attack` (release build). Needs Debian's
//! `slapd ldap-utils` (scripts/test.sh installs them) and, for the Dovecot
//! rows, `apt-get install -y --no-install-recommends dovecot-core
//! dovecot-ldap`, run as root (Dovecot's master switches to its users
//! `dovecot`/`dovenull`); without Dovecot its rows say why and are skipped.
//!
//! Starts a throwaway slapd with 10,000 generated users. The 1,000
//! attacked logins (`user00001`–`user01000`) get a password policy that
//! records every failed bind (`pwdFailureTime`) without ever locking, so
//! the directory itself counts the wrong-password binds each login took.
//! Then, for each server in turn (mailwarrant with its default throttle
//! and 2 s failure delay; Dovecot with its default `auth_failure_delay`
//! and penalty, auth cache on):
//!
//! 1. primes 2,000 legitimate users (`user00001`–`user02000`: the first
//!    half are also the attacked logins), each from its own address;
//! 2. **ceiling**: the same 100 persistent connections (100 smtpd
//!    processes, Postfix's default process limit) send cached logins as
//!    fast as they are answered;
//! 3. **no flood**: legitimate logins at a fixed rate (open loop: each
//!    request has a slot on the clock and its latency counts from that
//!    slot, so a stalled server cannot hide its queue), on connections
//!    opened before the clock starts (1,000 flood connections opening at
//!    once overflow a listen backlog, and a new connection whose SYN was
//!    dropped waits a 1 s retransmit: that measures TCP, not the server);
//! 4. **flood**: the same legitimate load while 1,000 connections, one per
//!    attacking address `127.200.x.y`, each send a new random wrong
//!    password for a random attacked login the moment the previous one is
//!    answered (a new connection when the server closes one).
//!
//! It prints one table: the ceiling, the legitimate success rate and
//! p50/p99 without and under the flood, the flood's answered attempts per
//! second, and the failed binds the directory recorded per attacked login
//! during the flood against mailwarrant's budget (`per_login`), with the
//! rate in the flood's last third carried over to a whole 30-minute
//! window (the throttle's; the cast's lockout at 10 failures forgets after
//! 15 minutes, so the last column says when it would lock the mean
//! attacked login).
//!
//! `AUTH_ATTACK_RATE` legitimate logins per second (default 2000);
//! `AUTH_ATTACK_SECONDS` the flood's length (default 60; the ceiling and
//! the no-flood figure take a third of it each, at most 10 s);
//! `AUTH_ATTACK_FLOOD_CONNECTIONS` (default 1000);
//! `AUTH_ATTACK_LOGINS=disjoint` attacks `user02001`–`user03000` instead,
//! logins with no cached password (every guess may reach the directory
//! until the budget is spent);
//! `AUTH_ATTACK_SERVERS=mailwarrant` or `=dovecot` runs one of them;
//! `AUTH_ATTACK_TIMELINE=1` also prints the flood's legitimate latency
//! second by second.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConnAsync, Mod, Scope, SearchEntry};
use mailwarrant::testkit::dovecot_client::{Answer, DovecotClient};
use mailwarrant::testkit::slapd::{Slapd, GENERATED_PASSWORD};
use mailwarrant::testkit::{free_port, spawn_serve, wait_for_port, ChildGuard};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

const USERS: usize = 10_000;
/// Legitimate users: `user00001`..; the first [`ATTACKED`] are attacked
/// (unless `AUTH_ATTACK_LOGINS=disjoint`).
const LEGIT_USERS: usize = 2_000;
const ATTACKED: usize = 1_000;
const ATTACKERS: usize = 1_000;
/// Persistent connections of the legitimate load (smtpd processes).
const LEGIT_CONNECTIONS: usize = 100;
/// mailwarrant's defaults, which this bench keeps.
const PER_LOGIN: u32 = 8;
const WINDOW: Duration = Duration::from_secs(30 * 60);
/// The cast's policy (`cn=default`): locks at 10 failures within 15 min.
const CAST_LOCKOUT: f64 = 10.0;
const CAST_INTERVAL: Duration = Duration::from_secs(15 * 60);
const COUNTING_POLICY: &str = "cn=bench-count-failures,ou=policies,dc=example,dc=com";
const DOVECOT: &str = "/usr/sbin/dovecot";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rate() -> f64 {
    env_or("AUTH_ATTACK_RATE", 2000.0)
}

fn flood_length() -> Duration {
    Duration::from_secs_f64(env_or("AUTH_ATTACK_SECONDS", 60.0))
}

/// Index of the first attacked login: 0 (the first legitimate users) or,
/// with `AUTH_ATTACK_LOGINS=disjoint`, the first user after them (never
/// logged in, so no cached password).
fn attacked_from() -> usize {
    match std::env::var("AUTH_ATTACK_LOGINS").as_deref() {
        Ok("disjoint") => LEGIT_USERS,
        _ => 0,
    }
}

fn attacked(i: usize) -> bool {
    (attacked_from()..attacked_from() + ATTACKED).contains(&i)
}

fn user(i: usize) -> String {
    format!("user{:05}", i + 1)
}

/// Each legitimate user's own address.
fn legit_address(i: usize) -> IpAddr {
    IpAddr::from([127, 1, (i / 250) as u8, (i % 250 + 1) as u8])
}

fn attacker_address(a: usize) -> IpAddr {
    IpAddr::from([127, 200, (a / 250) as u8, (a % 250 + 1) as u8])
}

/// What the legitimate users saw in one phase.
#[derive(Default)]
struct Legit {
    sent: u64,
    ok: u64,
    attacked_sent: u64,
    attacked_ok: u64,
    /// (slot in ms from the start, latency in µs from that slot).
    latencies: Vec<(u32, u32)>,
    /// Answers other than OK, by kind (for the report).
    refusals: HashMap<String, u64>,
}

impl Legit {
    fn merge(&mut self, other: Legit) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.attacked_sent += other.attacked_sent;
        self.attacked_ok += other.attacked_ok;
        self.latencies.extend(other.latencies);
        for (k, v) in other.refusals {
            *self.refusals.entry(k).or_default() += v;
        }
    }

    fn success(&self) -> f64 {
        100.0 * self.ok as f64 / self.sent.max(1) as f64
    }

    fn attacked_success(&self) -> String {
        if self.attacked_sent == 0 {
            return "none attacked".into();
        }
        format!("{:.2} %", 100.0 * self.attacked_ok as f64 / self.attacked_sent as f64)
    }

    fn percentile_ms(&mut self, q: f64) -> f64 {
        percentile_ms(self.latencies.iter().map(|l| l.1).collect(), q)
    }

    /// Per second of the phase: requests, p99 and the worst latency.
    fn timeline(&self) -> Vec<(usize, f64, f64)> {
        let seconds = self.latencies.iter().map(|l| l.0 as usize / 1000 + 1).max().unwrap_or(0);
        (0..seconds)
            .map(|s| {
                let second: Vec<u32> =
                    self.latencies.iter().filter(|l| l.0 as usize / 1000 == s).map(|l| l.1).collect();
                (second.len(), percentile_ms(second.clone(), 0.99), percentile_ms(second, 1.0))
            })
            .collect()
    }
}

fn percentile_ms(mut latencies: Vec<u32>, q: f64) -> f64 {
    latencies.sort_unstable();
    let Some(last) = latencies.len().checked_sub(1) else { return f64::NAN };
    let index = ((q * latencies.len() as f64) as usize).min(last);
    f64::from(latencies[index]) / 1000.0
}

/// The legitimate load's persistent connections, open before its clock
/// starts (smtpd processes keep theirs).
async fn connect_legit(address: SocketAddr) -> Vec<Option<DovecotClient>> {
    let connecting: Vec<_> = (0..LEGIT_CONNECTIONS).map(|_| tokio::spawn(DovecotClient::connect(address))).collect();
    let mut clients = Vec::new();
    for c in connecting {
        clients.push(c.await.expect("connecting").ok());
    }
    clients
}

/// Legitimate logins, open loop: request `k` is due at `start + k / rate`
/// on connection `k % LEGIT_CONNECTIONS`; latency counts from that slot.
async fn legit_open_loop(
    address: SocketAddr,
    clients: Vec<Option<DovecotClient>>,
    rate: f64,
    length: Duration,
) -> Legit {
    let start = Instant::now() + Duration::from_millis(50);
    let total = (rate * length.as_secs_f64()) as usize;
    let workers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(w, mut client)| {
            tokio::spawn(async move {
                let mut seen = Legit::default();
                for k in (w..total).step_by(LEGIT_CONNECTIONS) {
                    let due = start + Duration::from_secs_f64(k as f64 / rate);
                    tokio::time::sleep_until(due).await;
                    let i = k % LEGIT_USERS;
                    let answer = legit_login(&mut client, address, i).await;
                    let latency = due.elapsed();
                    seen.sent += 1;
                    seen.attacked_sent += u64::from(attacked(i));
                    let slot = (k as f64 * 1000.0 / rate) as u32;
                    seen.latencies.push((slot, latency.as_micros().min(u32::MAX as u128) as u32));
                    match answer {
                        Some(Answer::Ok { .. }) => {
                            seen.ok += 1;
                            seen.attacked_ok += u64::from(attacked(i));
                        }
                        other => *seen.refusals.entry(kind(&other)).or_default() += 1,
                    }
                }
                seen
            })
        })
        .collect();
    let mut all = Legit::default();
    for w in workers {
        all.merge(w.await.expect("a legitimate worker"));
    }
    all
}

/// The ceiling: the same connections, each sending the next login as
/// soon as the last is answered. Cached logins answered per second.
async fn legit_closed_loop(address: SocketAddr, length: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + length;
    let workers: Vec<_> = (0..LEGIT_CONNECTIONS)
        .map(|w| {
            let done = done.clone();
            tokio::spawn(async move {
                let mut client = DovecotClient::connect(address).await.ok();
                let mut i = w;
                while Instant::now() < end {
                    if let Some(Answer::Ok { .. }) = legit_login(&mut client, address, i % LEGIT_USERS).await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    i += LEGIT_CONNECTIONS;
                }
            })
        })
        .collect();
    let started = Instant::now();
    for w in workers {
        let _ = w.await;
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// One right password from the user's own address, reconnecting when the
/// connection is gone. `None`: no answer (connection failed).
async fn legit_login(client: &mut Option<DovecotClient>, address: SocketAddr, i: usize) -> Option<Answer> {
    if client.is_none() {
        *client = DovecotClient::connect(address).await.ok();
    }
    let answer = client.as_mut()?.plain(&user(i), GENERATED_PASSWORD, legit_address(i)).await.ok();
    if !matches!(answer, Some(Answer::Ok { .. }) | Some(Answer::Fail { .. })) {
        *client = None;
    }
    answer
}

fn kind(answer: &Option<Answer>) -> String {
    match answer {
        Some(Answer::Ok { .. }) => "ok".into(),
        Some(Answer::Fail { line }) => {
            let temp = line.split('\t').any(|f| f == "temp" || f.starts_with("reason="));
            if temp { "fail (temporary)" } else { "fail" }.into()
        }
        Some(Answer::Cont { .. }) => "cont".into(),
        Some(Answer::Closed) => "closed (try later)".into(),
        None => "no connection".into(),
    }
}

/// The guessing flood: every connection sends a new wrong password the
/// moment the previous one is answered.
struct Flood {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    answered: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
}

impl Flood {
    fn start(address: SocketAddr, connections: usize) -> Flood {
        let answered = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let tasks = (0..connections)
            .map(|c| {
                let (answered, accepted) = (answered.clone(), accepted.clone());
                tokio::spawn(async move {
                    let rip = attacker_address(c % ATTACKERS);
                    let mut rng = StdRng::from_os_rng();
                    let mut client = None;
                    loop {
                        if client.is_none() {
                            client = DovecotClient::connect(address).await.ok();
                            if client.is_none() {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                continue;
                            }
                        }
                        let Some(c) = client.as_mut() else { continue };
                        let login = user(attacked_from() + rng.random_range(0..ATTACKED));
                        let guess = format!("Guess-{:016x}", rng.random::<u64>());
                        match c.plain(&login, &guess, rip).await {
                            Ok(Answer::Fail { .. }) => {
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(Answer::Closed) => {
                                answered.fetch_add(1, Ordering::Relaxed);
                                client = None;
                            }
                            Ok(Answer::Ok { .. }) => {
                                accepted.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(Answer::Cont { .. }) | Err(_) => client = None,
                        }
                    }
                })
            })
            .collect();
        Flood { tasks, answered, accepted }
    }

    fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    fn stop(self) -> u64 {
        for t in &self.tasks {
            t.abort();
        }
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Gives the attacked logins a policy that records every failed bind
/// (`pwdFailureTime`) and never locks.
async fn count_failures_of_attacked(slapd: &Slapd) {
    let (conn, mut ldap) = LdapConnAsync::new(&slapd.url()).await.expect("slapd answers");
    ldap3::drive!(conn);
    let (dn, password) = slapd.admin();
    ldap.simple_bind(dn, password).await.and_then(|r| r.success()).expect("admin bind");
    let set = |values: &[&'static str]| values.iter().copied().collect::<HashSet<_>>();
    let attributes = vec![
        ("objectClass", set(&["pwdPolicy", "device"])),
        ("cn", set(&["bench-count-failures"])),
        ("pwdAttribute", set(&["userPassword"])),
        ("pwdLockout", set(&["FALSE"])),
        ("pwdMaxRecordedFailure", set(&["1000000"])),
        ("pwdFailureCountInterval", set(&["1800"])),
    ];
    ldap.add(COUNTING_POLICY, attributes).await.and_then(|r| r.success()).expect("policy added");
    for i in attacked_from()..attacked_from() + ATTACKED {
        let dn = format!("uid={},ou=people,dc=example,dc=com", user(i));
        let change = vec![Mod::Replace("pwdPolicySubentry", set(&[COUNTING_POLICY]))];
        ldap.modify(&dn, change).await.and_then(|r| r.success()).expect("policy set");
    }
    let _ = ldap.unbind().await;
}

/// Failed binds slapd recorded so far, per attacked login.
async fn recorded_failures(slapd: &Slapd) -> HashMap<String, usize> {
    let (conn, mut ldap) = LdapConnAsync::new(&slapd.url()).await.expect("slapd answers");
    ldap3::drive!(conn);
    let (dn, password) = slapd.admin();
    ldap.simple_bind(dn, password).await.and_then(|r| r.success()).expect("admin bind");
    let filter = format!("(pwdPolicySubentry={COUNTING_POLICY})");
    let (entries, _) = ldap
        .search("ou=people,dc=example,dc=com", Scope::OneLevel, &filter, vec!["uid", "pwdFailureTime"])
        .await
        .and_then(|r| r.success())
        .expect("search as admin");
    let _ = ldap.unbind().await;
    entries
        .into_iter()
        .map(|e| {
            let e = SearchEntry::construct(e);
            let uid = e.attrs.get("uid").and_then(|v| v.first()).cloned().unwrap_or_default();
            (uid, e.attrs.get("pwdFailureTime").map_or(0, Vec::len))
        })
        .collect()
}

fn difference(after: &HashMap<String, usize>, before: &HashMap<String, usize>) -> Vec<usize> {
    (attacked_from()..attacked_from() + ATTACKED)
        .map(|i| {
            let u = user(i);
            after.get(&u).copied().unwrap_or(0).saturating_sub(before.get(&u).copied().unwrap_or(0))
        })
        .collect()
}

/// Authenticates every legitimate user once from its own address (fills
/// the server's cache).
async fn prime(address: SocketAddr) {
    let tasks: Vec<_> = (0..16)
        .map(|w| {
            tokio::spawn(async move {
                let mut client = None;
                for i in (w..LEGIT_USERS).step_by(16) {
                    let answer = legit_login(&mut client, address, i).await;
                    assert!(matches!(answer, Some(Answer::Ok { .. })), "priming {}: {answer:?}", user(i));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("priming");
    }
}

/// One server's figures.
struct Figures {
    name: &'static str,
    ceiling: f64,
    quiet: Legit,
    attacked: Legit,
    flood_answered: f64,
    flood_accepted: u64,
    /// Failed binds per attacked login during the flood.
    failures: Vec<usize>,
    /// Failed binds per second (all attacked logins) in the last third.
    tail_rate: f64,
    budget: Option<u32>,
}

/// The four phases against a server already listening at `address`.
fn measure(runtime: &tokio::runtime::Runtime, name: &'static str, address: SocketAddr, slapd: &Slapd) -> Figures {
    let flood_length = flood_length();
    let short = (flood_length / 3).min(Duration::from_secs(10));
    eprintln!("{name}: priming {LEGIT_USERS} users…");
    runtime.block_on(prime(address));
    eprintln!("{name}: ceiling…");
    let ceiling = runtime.block_on(legit_closed_loop(address, short));
    eprintln!("{name}: {} logins/s, no flood…", rate());
    let quiet = runtime.block_on(async { legit_open_loop(address, connect_legit(address).await, rate(), short).await });
    let connections = env_or("AUTH_ATTACK_FLOOD_CONNECTIONS", ATTACKERS);
    eprintln!("{name}: {} logins/s under a flood of {connections} connections…", rate());
    runtime.block_on(async {
        let before = recorded_failures(slapd).await;
        let clients = connect_legit(address).await;
        let flood = Flood::start(address, connections);
        let started = Instant::now();
        let legit = tokio::spawn(legit_open_loop(address, clients, rate(), flood_length));
        tokio::time::sleep(flood_length * 2 / 3).await;
        let tail_from = recorded_failures(slapd).await;
        let tail_at = started.elapsed();
        let attacked = legit.await.expect("legitimate load");
        let answered = flood.answered();
        let elapsed = started.elapsed();
        let after = recorded_failures(slapd).await;
        let tail = difference(&after, &tail_from).iter().sum::<usize>() as f64;
        let flood_accepted = flood.stop();
        Figures {
            name,
            ceiling,
            quiet,
            attacked,
            flood_answered: answered as f64 / elapsed.as_secs_f64(),
            flood_accepted,
            failures: difference(&after, &before),
            tail_rate: tail / (elapsed - tail_at).as_secs_f64(),
            budget: (name == "mailwarrant").then_some(PER_LOGIN),
        }
    })
}

struct Mailwarrant {
    _dir: tempfile::TempDir,
    _process: ChildGuard,
    address: SocketAddr,
}

/// mailwarrant with the throttle's defaults (`per_login` 8 per 30 min,
/// `per_login_client` 4, `per_client` 50, failure delay 2 s); the
/// credential cache for an hour.
fn start_mailwarrant(slapd: &Slapd) -> Mailwarrant {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "{directory}bind_pool_size = 64\npool_size = 16\n\n[identity]\ncache_ttl = \"1h\"\nrefresh_after = \"50m\"\n\
         [store]\npath = \"state.sqlite\"\n\
         [auth.dovecot]\nlisten = [\"127.0.0.1:{port}\"]\nmax_connections = 16384\n\
         [auth.cache]\nttl = \"1h\"\n",
        directory = slapd.config_toml(),
    );
    let file = dir.path().join("bench.toml");
    std::fs::write(&file, config).unwrap();
    let process = spawn_serve(Path::new(env!("CARGO_BIN_EXE_mailwarrant")), &file, None).unwrap();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_port(address, Duration::from_secs(30)).expect("mailwarrant listens");
    Mailwarrant { _dir: dir, _process: process, address }
}

/// Dovecot 2.3's auth server alone, from a private config: LDAP passdb
/// with `auth_bind`, the auth cache on, its default `auth_failure_delay`
/// (2 s) and penalty (per client address, up to 15 s). Stopped with TERM
/// on drop so its children go too.
struct Dovecot {
    dir: tempfile::TempDir,
    process: ChildGuard,
    address: SocketAddr,
}

fn start_dovecot(slapd: &Slapd) -> Result<Dovecot, String> {
    if !Path::new(DOVECOT).exists() || !Path::new("/usr/lib/dovecot/modules/auth/libauthdb_ldap.so").exists() {
        return Err(format!(
            "{DOVECOT} or its LDAP module is missing: apt-get install -y --no-install-recommends dovecot-core dovecot-ldap"
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    // Dovecot's auth process runs as `dovecot` and reads the LDAP file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    }
    let port = free_port();
    let (service_dn, service_password) = slapd.service_account();
    let ldap = dir.path().join("dovecot-ldap.conf.ext");
    std::fs::write(
        &ldap,
        format!(
            "uris = {url}\ndn = {service_dn}\ndnpass = {service_password}\nauth_bind = yes\nldap_version = 3\n\
             base = ou=people,{base}\npass_filter = (&(objectClass=inetOrgPerson)(uid=%u))\npass_attrs = uid=user\n",
            url = slapd.url(),
            base = slapd.base_dn(),
        ),
    )
    .map_err(|e| e.to_string())?;
    let d = dir.path().display();
    // `disable_plaintext_auth = no`: the bench sends no `secured` (Postfix
    // does on TLS sessions). Nothing from /etc/dovecot is included.
    let config = format!(
        "base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\ninstance_name = mw-bench-{port}\n\
         protocols =\nlisten = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\n\
         auth_mechanisms = plain login\nauth_cache_size = 10M\nauth_cache_ttl = 1 hour\nauth_cache_negative_ttl = 1 hour\n\
         passdb {{\n  driver = ldap\n  args = {ldap}\n}}\n\
         userdb {{\n  driver = static\n  args = uid=65534 gid=65534 home=/nonexistent\n}}\n\
         service auth {{\n  client_limit = 4096\n  inet_listener {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n}}\n",
        ldap = ldap.display(),
    );
    let file = dir.path().join("dovecot.conf");
    std::fs::write(&file, config).map_err(|e| e.to_string())?;
    let process = ChildGuard::spawn(
        "dovecot",
        Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).map_err(|e| e.to_string())?),
    )?;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let server = Dovecot { dir, process, address };
    wait_for_port(address, Duration::from_secs(30)).map_err(|e| format!("{e}: {}", server.log()))?;
    Ok(server)
}

impl Dovecot {
    fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("dovecot.log"))
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if self.process.signal("TERM").is_ok() {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while self.process.is_running() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let servers = std::env::var("AUTH_ATTACK_SERVERS").unwrap_or_else(|_| "mailwarrant,dovecot".into());
    eprintln!("starting slapd with {USERS} generated users…");
    let slapd = Slapd::start_quiet_with_users(USERS).expect("slapd starts (scripts/test.sh installs it)");
    runtime.block_on(count_failures_of_attacked(&slapd));

    let mut rows = Vec::new();
    let mut notes = Vec::new();
    if servers.contains("mailwarrant") {
        let server = start_mailwarrant(&slapd);
        rows.push(measure(&runtime, "mailwarrant", server.address, &slapd));
    }
    if servers.contains("dovecot") {
        match start_dovecot(&slapd) {
            Ok(server) => {
                let version = Command::new(DOVECOT).arg("--version").output();
                let version = version.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default();
                rows.push(measure(&runtime, "Dovecot", server.address, &slapd));
                notes.push(format!("Dovecot {version}"));
                let errors: Vec<String> = server
                    .log()
                    .lines()
                    .filter(|l| (l.contains("Error") || l.contains("Fatal")) && !l.contains("disconnected with"))
                    .take(3)
                    .map(String::from)
                    .collect();
                if !errors.is_empty() {
                    notes.push(format!("Dovecot logged: {}", errors.join(" / ")));
                }
            }
            Err(e) => notes.push(format!("Dovecot skipped: {e}")),
        }
    }
    print_table(&mut rows, &notes);
}

fn print_table(rows: &mut [Figures], notes: &[String]) {
    let length = flood_length();
    println!(
        "AUTH under a guessing flood: {USERS} directory users; {LEGIT_USERS} legitimate users, each from its own \
         address, at {} logins/s on {LEGIT_CONNECTIONS} persistent connections (open loop); the flood from \
         {ATTACKERS} addresses against {ATTACKED} logins ({}), {:?} long",
        rate(),
        if attacked_from() == 0 {
            "the first legitimate ones, whose right passwords are cached"
        } else {
            "disjoint from the legitimate ones: `user02001`…, never logged in"
        },
        length,
    );
    println!(
        "| server | ceiling: cached logins/s, closed loop | no flood: success, p50 / p99 | flood: legit success \
         (attacked logins) | flood: legit p50 / p99 (< 10 ms) | flood attempts answered/s | wrong-password binds per \
         attacked login during the flood: max / mean | budget per login per window | binds/s in the flood's last third | \
         per login per 30 min at that rate (mean) | a lockout at {CAST_LOCKOUT} per 15 min (the cast's) locks the mean attacked login |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows.iter_mut() {
        let max = r.failures.iter().copied().max().unwrap_or(0);
        let mean = r.failures.iter().sum::<usize>() as f64 / r.failures.len().max(1) as f64;
        let rest = WINDOW.saturating_sub(length).as_secs_f64();
        let projected = mean + r.tail_rate / ATTACKED as f64 * rest;
        let locks = lockout_after(mean, r.tail_rate / ATTACKED as f64, length);
        let budget = r.budget.map_or("none".into(), |b| b.to_string());
        println!(
            "| {} | {:.0} | {:.2} %, {:.2} / {:.2} ms | {:.2} % ({}) | {:.2} / {:.2} ms | {:.0} | {max} / {mean:.1} | {budget} | {:.1} | {projected:.1} | {locks} |",
            r.name,
            r.ceiling,
            r.quiet.success(),
            r.quiet.percentile_ms(0.5),
            r.quiet.percentile_ms(0.99),
            r.attacked.success(),
            r.attacked.attacked_success(),
            r.attacked.percentile_ms(0.5),
            r.attacked.percentile_ms(0.99),
            r.flood_answered,
            r.tail_rate,
        );
    }
    for r in rows.iter() {
        if r.ceiling < 1.5 * rate() {
            println!("{}: the rate is above two thirds of the ceiling: lower AUTH_ATTACK_RATE", r.name);
        }
        for (phase, legit) in [("no flood", &r.quiet), ("flood", &r.attacked)] {
            if !legit.refusals.is_empty() {
                println!("{}, {phase}: legitimate logins not accepted: {:?}", r.name, legit.refusals);
            }
        }
        if r.flood_accepted > 0 {
            println!("{}: {} wrong passwords were ACCEPTED", r.name, r.flood_accepted);
        }
    }
    for n in notes {
        println!("{n}");
    }
    if std::env::var_os("AUTH_ATTACK_TIMELINE").is_some() {
        for r in rows.iter() {
            println!("{}, legitimate logins per second of the flood: requests, p99 ms, max ms", r.name);
            for (second, (n, p99, max)) in r.attacked.timeline().into_iter().enumerate() {
                println!("  {second:>3} s: {n:>5} {p99:>9.2} {max:>9.2}");
            }
        }
    }
}

/// When a lockout at [`CAST_LOCKOUT`] failures within [`CAST_INTERVAL`]
/// would lock a login that took `mean` failures in the flood's `length`
/// and takes `per_second` more from then on.
fn lockout_after(mean: f64, per_second: f64, length: Duration) -> String {
    let in_interval = mean + per_second * CAST_INTERVAL.saturating_sub(length).as_secs_f64();
    if in_interval < CAST_LOCKOUT {
        return format!("never ({in_interval:.1} per 15 min)");
    }
    let seconds = length.as_secs_f64() + (CAST_LOCKOUT - mean).max(0.0) / per_second;
    format!("after {:.1} min of flood", seconds / 60.0)
}
