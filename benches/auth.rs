//! AUTH benchmark: mailwarrant's Dovecot auth front end against plain LDAP
//! binds on the same slapd, in one run.
//!
//! Run: `cargo bench --bench auth` (release build). Starts a throwaway
//! slapd with 10,000 generated users, then for concurrency 1, 8 and 32:
//! plain binds (ldap3, one connection per worker), mailwarrant with the
//! credential cache off (cold) over TCP and over a UNIX socket (how
//! Postfix usually reaches its SASL server: `smtpd_sasl_path =
//! private/auth`), with it on and primed (warm), and warm
//! with 10% wrong passwords and the default 2 s failure delay, twice:
//! wrong attempts on persistent connections of other smtpd processes
//! (Postfix), and each on a new connection (Exim). Client addresses are spread over 127.0.0.0/8. Finally the
//! idle RSS of the server holding 10,000 cached identities. mailwarrant
//! runs as the release binary (`mailwarrant serve`), so its RSS is its own.
//!
//! `AUTH_BENCH_SECONDS` sets each measurement's length (default 4);
//! `AUTH_BENCH_CONCURRENCY` the levels (default `1,8,32`);
//! `AUTH_BENCH_FAILURE_DELAY` the failure delay (default `2s`): the same
//! run with `0s` tells the cost of the delay from the cost of the wrong
//! attempts themselves (a connection, a bind and two counter updates each).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3::LdapConnAsync;
use mailwarrant::testkit::dovecot_client::{Answer, DovecotClient};
use mailwarrant::testkit::slapd::{Slapd, GENERATED_PASSWORD};
use mailwarrant::testkit::{free_port, spawn_serve, wait_for_port, ChildGuard};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncWrite};

const USERS: usize = 10_000;
/// `AUTH_BENCH_CONCURRENCY=8,32` measures only those levels.
fn concurrency() -> Vec<usize> {
    std::env::var("AUTH_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.split(',').map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 8, 32])
}

fn seconds() -> Duration {
    let s = std::env::var("AUTH_BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(4.0);
    Duration::from_secs_f64(s)
}

/// Connections and pools open before the timed window.
const WARM_UP: Duration = Duration::from_millis(300);

fn failure_delay_setting() -> String {
    std::env::var("AUTH_BENCH_FAILURE_DELAY").unwrap_or_else(|_| "2s".into())
}

fn failure_delay() -> Duration {
    humantime::parse_duration(&failure_delay_setting()).expect("AUTH_BENCH_FAILURE_DELAY as a duration, e.g. 2s")
}

fn user(i: usize) -> String {
    format!("user{:05}", i % USERS + 1)
}

fn random_rip(rng: &mut impl Rng) -> IpAddr {
    IpAddr::from([127, rng.random_range(1..=254), rng.random_range(0..=255), rng.random_range(1..=254)])
}

/// Runs `workers` tasks until the deadline; returns good operations per
/// second, counted after `warm_up` (connections and pools open first).
async fn measure<F, Fut>(workers: usize, warm_up: Duration, work: F) -> f64
where
    F: Fn(usize, Arc<AtomicBool>, Arc<AtomicU64>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..workers).map(|w| tokio::spawn(work(w, stop.clone(), done.clone()))).collect();
    tokio::time::sleep(warm_up).await;
    let start_count = done.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(seconds()).await;
    let count = done.load(Ordering::Relaxed) - start_count;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.await;
    }
    count as f64 / elapsed.as_secs_f64()
}

async fn plain_binds(url: String, workers: usize) -> f64 {
    measure(workers, WARM_UP, move |w, stop, done| {
        let url = url.clone();
        async move {
            let (conn, mut ldap) = LdapConnAsync::new(&url).await.expect("slapd answers");
            ldap3::drive!(conn);
            let mut i = w * 7919;
            while !stop.load(Ordering::Relaxed) {
                let dn = format!("uid={},ou=people,dc=example,dc=com", user(i));
                let r = ldap.simple_bind(&dn, GENERATED_PASSWORD).await.expect("bind runs");
                assert_eq!(r.rc, 0, "plain bind refused");
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            let _ = ldap.unbind().await;
        }
    })
    .await
}

/// How wrong passwords reach mailwarrant in the failure scenarios.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wrong {
    /// Each on a new connection (Exim: one connection per AUTH).
    NewConnection,
    /// On persistent connections of other smtpd processes (Postfix: each
    /// smtpd keeps its auth connection; the one serving the guessing
    /// client waits out the delay, the others go on).
    Persistent,
}

/// Idle persistent connections of the "other smtpd processes".
type Pool = Arc<std::sync::Mutex<Vec<DovecotClient>>>;

/// One wrong attempt, on its own task so the good worker goes on.
fn wrong_attempt(address: SocketAddr, how: Wrong, pool: &Pool, login: String, wrong: String, rip: IpAddr) {
    let pool = pool.clone();
    tokio::spawn(async move {
        let idle = if how == Wrong::Persistent { pool.lock().unwrap().pop() } else { None };
        let client = match idle {
            Some(c) => Some(c),
            None => DovecotClient::connect(address).await.ok(),
        };
        if let Some(mut c) = client {
            let answered = c.plain(&login, &wrong, rip).await;
            if how == Wrong::Persistent && matches!(answered, Ok(Answer::Fail { .. })) {
                pool.lock().unwrap().push(c);
            }
        }
    });
}

/// Good logins over persistent connections; with `wrong_every`, every
/// n-th attempt is a wrong password sent as `how` says.
async fn dovecot_logins(address: SocketAddr, workers: usize, wrong_every: Option<(usize, Wrong)>) -> f64 {
    let pool: Pool = Arc::default();
    // With wrong passwords, the steady state comes once the first ones
    // have been answered: the delayed connections then recycle.
    let warm_up = if wrong_every.is_some() { WARM_UP + failure_delay() } else { WARM_UP };
    measure(workers, warm_up, move |w, stop, done| {
        let pool = pool.clone();
        async move {
            let mut client = DovecotClient::connect(address).await.expect("handshake");
            let mut rng = StdRng::from_os_rng();
            let mut i = w * 7919;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                if let Some((_, how)) = wrong_every.filter(|(n, _)| i % n == 0) {
                    let wrong = format!("Wrong-{}", rng.random::<u32>());
                    wrong_attempt(address, how, &pool, user(i + 17), wrong, random_rip(&mut rng));
                    continue;
                }
                good_login(&mut client, i, &mut rng, &done).await;
            }
        }
    })
    .await
}

/// Good logins over persistent UNIX-socket connections.
async fn unix_logins(path: PathBuf, workers: usize) -> f64 {
    measure(workers, WARM_UP, move |w, stop, done| {
        let path = path.clone();
        async move {
            let mut client = DovecotClient::connect_unix(&path).await.expect("handshake");
            let mut rng = StdRng::from_os_rng();
            let mut i = w * 7919;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                good_login(&mut client, i, &mut rng, &done).await;
            }
        }
    })
    .await
}

/// One AUTH PLAIN with the right password; anything but OK stops the run.
async fn good_login<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut DovecotClient<S>,
    i: usize,
    rng: &mut StdRng,
    done: &AtomicU64,
) {
    match client.plain(&user(i), GENERATED_PASSWORD, random_rip(rng)).await {
        Ok(Answer::Ok { .. }) => {
            done.fetch_add(1, Ordering::Relaxed);
        }
        other => panic!("a good login failed: {other:?}"),
    }
}

/// Authenticates every user once (fills the identity and credential caches).
async fn prime(address: SocketAddr) {
    let mut tasks = Vec::new();
    for w in 0..16 {
        tasks.push(tokio::spawn(async move {
            let mut client = DovecotClient::connect(address).await.expect("handshake");
            let mut rng = StdRng::from_os_rng();
            for i in (w..USERS).step_by(16) {
                let answer = client.plain(&user(i), GENERATED_PASSWORD, random_rip(&mut rng)).await;
                assert!(matches!(answer, Ok(Answer::Ok { .. })), "{answer:?}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("priming");
    }
}

struct Server {
    _dir: tempfile::TempDir,
    process: ChildGuard,
    address: SocketAddr,
    socket: PathBuf,
}

fn start_server(slapd: &Slapd, cache_ttl: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let socket = dir.path().join("auth.sock");
    let config = format!(
        "{directory}bind_pool_size = 64\npool_size = 16\n\n[identity]\ncache_ttl = \"1h\"\nrefresh_after = \"50m\"\n\
         [store]\npath = \"state.sqlite\"\n\
         [auth]\nfailure_delay = \"{delay}\"\n[auth.dovecot]\nlisten = [\"127.0.0.1:{port}\"]\nunix_socket = {socket:?}\nmax_connections = 16384\n\
         [auth.cache]\nttl = \"{cache_ttl}\"\n[auth.throttle]\nper_login = 1000\nper_client = 1000\n",
        directory = slapd.config_toml(),
        delay = failure_delay_setting(),
    );
    let file = dir.path().join("bench.toml");
    std::fs::write(&file, config).unwrap();
    let process = spawn_serve(Path::new(env!("CARGO_BIN_EXE_mailwarrant")), &file, None).unwrap();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_port(address, Duration::from_secs(30)).expect("mailwarrant listens");
    Server { _dir: dir, process, address, socket }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    eprintln!("starting slapd with {USERS} generated users…");
    let slapd = Slapd::start_with_users(USERS).expect("slapd starts (scripts/test.sh installs it)");
    let url = slapd.url();

    let mut rows = Vec::new();
    {
        let cold = start_server(&slapd, "0s");
        runtime.block_on(prime(cold.address)); // identities cached; credentials not
        for c in concurrency() {
            let plain = runtime.block_on(plain_binds(url.clone(), c));
            let cold_rate = runtime.block_on(dovecot_logins(cold.address, c, None));
            let cold_unix = runtime.block_on(unix_logins(cold.socket.clone(), c));
            rows.push((c, plain, cold_rate, cold_unix));
        }
    }
    let warm = start_server(&slapd, "1h");
    runtime.block_on(prime(warm.address));
    // Idle memory with every identity and credential cached, before the
    // failure scenario opens thousands of short connections.
    std::thread::sleep(Duration::from_secs(2));
    let rss = warm.process.id().map(rss_mib).unwrap_or(0.0);
    let mut table = Vec::new();
    for (c, plain, cold_rate, cold_unix) in rows {
        // Plain binds again right before, so each ratio compares figures
        // taken under the same load on this shared machine.
        let plain_again = runtime.block_on(plain_binds(url.clone(), c));
        let warm_rate = runtime.block_on(dovecot_logins(warm.address, c, None));
        let persistent = runtime.block_on(dovecot_logins(warm.address, c, Some((10, Wrong::Persistent))));
        let fresh = runtime.block_on(dovecot_logins(warm.address, c, Some((10, Wrong::NewConnection))));
        table.push((c, plain, cold_rate, cold_unix, plain_again, warm_rate, persistent, fresh));
    }
    std::thread::sleep(Duration::from_secs(3));
    let rss_after = warm.process.id().map(rss_mib).unwrap_or(0.0);

    println!("AUTH benchmark: {USERS} directory users, client addresses over 127.0.0.0/8, {:?} per figure", seconds());
    println!(
        "| concurrency | plain bind/s | cold auth/s (cache off) | cold ratio (≥ 0.8) | cold auth/s, UNIX socket | ratio | plain bind/s (again) | warm auth/s (cached) | warm ratio (≥ 2) | + 10% wrong, persistent conns: good/s | drop (< 10%) | + 10% wrong, new conn each: good/s | drop |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (c, plain, cold, cold_unix, plain_again, warm_rate, persistent, fresh) in table {
        println!(
            "| {c} | {plain:.0} | {cold:.0} | {:.2}× | {cold_unix:.0} | {:.2}× | {plain_again:.0} | {warm_rate:.0} | {:.2}× | {persistent:.0} | {:.1}% | {fresh:.0} | {:.1}% |",
            cold / plain,
            cold_unix / plain,
            warm_rate / plain_again,
            (1.0 - persistent / warm_rate) * 100.0,
            (1.0 - fresh / warm_rate) * 100.0
        );
    }
    println!("idle RSS of mailwarrant with {USERS} cached identities and credentials: {rss:.1} MiB (target < 64 MiB)");
    println!("RSS after the failure scenario (thousands of delayed connections): {rss_after:.1} MiB");
}
