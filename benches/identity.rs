//! Identity lookups against a real slapd with 10,000 generated users.
//!
//! Three measurements in one run, at the same concurrency, so their ratios
//! mean something on a shared machine:
//! (a) slapd alone: the user search mailwarrant sends, by a plain ldap3
//!     client on as many connections as mailwarrant's pool;
//! (b) cold: `LdapDirectory::lookup` (no identity cache): one search plus
//!     mailwarrant's mapping, group and policy resolution;
//! (c) warm: `IdentityCache::get` on cached users.
//!
//! Targets: warm > 1,000,000 lookups/s; cold ≥ 0.5 × slapd alone.
//! Run: `cargo bench --bench identity` (env BENCH_SECONDS, BENCH_TASKS).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3::{DerefAliases, Ldap, LdapConnAsync, Scope, SearchEntry, SearchOptions};
use mailwarrant::config::IdentitySettings;
use mailwarrant::directory::ldap::LdapDirectory;
use mailwarrant::directory::template::FilterTemplate;
use mailwarrant::directory::Directory;
use mailwarrant::identity::IdentityCache;
use mailwarrant::testkit::slapd::{Slapd, SERVICE_DN, SERVICE_PASSWORD};

const USERS: usize = 10_000;

/// The attributes `LdapDirectory` asks for with the fixture's settings.
const USER_ATTRIBUTES: [&str; 12] = [
    "objectClass",
    "cn",
    "uid",
    "mail",
    "mailAlternateAddress",
    "mailwarrantSendAs",
    "memberOf",
    "pwdChangedTime",
    "pwdAccountLockedTime",
    "pwdReset",
    "pwdPolicySubentry",
    "mailwarrantAccountDisabled",
];

struct Run {
    name: &'static str,
    ops: usize,
    elapsed: Duration,
    /// CPU time this process used meanwhile (client side only; slapd is
    /// another process).
    cpu: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Lookups per CPU-second of this process: what the client side costs,
    /// independent of how many cores other programs took meanwhile.
    fn per_cpu_second(&self) -> f64 {
        self.ops as f64 / self.cpu.as_secs_f64().max(1e-3)
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i]
    }
}

/// Every how many calls one is timed: reading the clock twice per call
/// would cost more than a warm lookup.
const SAMPLE_EVERY: usize = 8;

/// One task's loop body. Each task owns its worker, so the loop clones no
/// shared `Arc` per call (contended reference counts would dominate the
/// warm measurement).
trait Worker: Send + 'static {
    fn call(&mut self, i: usize) -> impl std::future::Future<Output = ()> + Send + '_;
}

/// Runs `tasks` workers for `seconds`, timing a sample of the calls.
async fn measure<W: Worker>(name: &'static str, tasks: usize, seconds: f64, make: impl Fn(usize) -> W) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = process_cpu_time();
    let started = Instant::now();
    let mut handles = Vec::new();
    for task in 0..tasks {
        let mut worker = make(task);
        let stop = stop.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                if i % SAMPLE_EVERY == 0 {
                    let t = Instant::now();
                    worker.call(i).await;
                    latencies.push(t.elapsed());
                } else {
                    worker.call(i).await;
                }
                i += 1;
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            (i, latencies)
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut ops = 0;
    for h in handles {
        let (n, sample) = h.await.expect("bench task");
        ops += n;
        latencies.extend(sample);
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu_time().saturating_sub(cpu_before);
    latencies.sort_unstable();
    Run { name, ops, elapsed, cpu, latencies }
}

/// User + system time of this process, from /proc/self/stat (Linux).
fn process_cpu_time() -> Duration {
    const TICKS_PER_SECOND: u64 = 100;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
}

/// (a) The same search, by a plain ldap3 client.
struct PlainSearch {
    ldap: Ldap,
    base: String,
    template: FilterTemplate,
    task: usize,
}

impl Worker for PlainSearch {
    async fn call(&mut self, i: usize) {
        let filter = self.template.render(&login(self.task, i));
        let options = SearchOptions::new().deref(DerefAliases::Never).sizelimit(2);
        let (entries, _) = self
            .ldap
            .with_search_options(options)
            .search(&self.base, Scope::Subtree, &filter, USER_ATTRIBUTES.to_vec())
            .await
            .expect("search")
            .success()
            .expect("search result");
        assert_eq!(entries.into_iter().map(SearchEntry::construct).count(), 1);
    }
}

/// (b) Through the backend, no cache.
struct Cold {
    directory: Arc<LdapDirectory>,
    task: usize,
}

impl Worker for Cold {
    async fn call(&mut self, i: usize) {
        let found = self.directory.lookup(&login(self.task, i)).await.expect("lookup");
        assert!(found.is_some());
    }
}

/// (c) Through the identity cache, every user cached.
struct Warm {
    cache: IdentityCache,
    logins: Arc<Vec<String>>,
    task: usize,
}

impl Worker for Warm {
    async fn call(&mut self, i: usize) {
        let hit = self.cache.get(&self.logins[index(self.task, i)]).await.expect("cached");
        assert!(hit.is_some());
    }
}

/// A user index spread over the population, different per task.
fn index(task: usize, i: usize) -> usize {
    (task * 7919 + i * 104_729) % USERS
}

fn login(task: usize, i: usize) -> String {
    format!("user{:05}", index(task, i) + 1)
}

async fn plain_connections(url: &str, n: usize) -> Vec<Ldap> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (conn, mut ldap) = LdapConnAsync::new(url).await.expect("connect");
        tokio::spawn(async move {
            let _ = conn.drive().await;
        });
        ldap.simple_bind(SERVICE_DN, SERVICE_PASSWORD).await.expect("bind").success().expect("bound");
        out.push(ldap);
    }
    out
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let seconds: f64 = env_or("BENCH_SECONDS", 4.0);
    let tasks: usize = env_or("BENCH_TASKS", 32);
    eprintln!("starting slapd with {USERS} generated users…");
    let slapd = Slapd::start_quiet_with_users(USERS).expect("slapd starts");
    let settings = slapd.ldap_settings();
    let url = slapd.url();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let directory = Arc::new(LdapDirectory::connect(&settings).await.expect("directory"));
        let probe = directory.lookup("user00001").await.expect("lookup").expect("user00001 exists");
        assert!(probe.in_group("loadtest"), "generated users are in loadtest: {:?}", probe.groups);

        // (a) slapd alone.
        let connections = plain_connections(&url, settings.pool_size).await;
        let slapd_run = measure("slapd alone (ldap3 search)", tasks, seconds, |task| PlainSearch {
            ldap: connections[task % connections.len()].clone(),
            base: settings.base_dn.clone(),
            template: settings.user_filter.clone(),
            task,
        })
        .await;

        // (b) cold: every call goes to the directory.
        let cold_run =
            measure("cold LdapDirectory::lookup", tasks, seconds, |task| Cold { directory: directory.clone(), task })
                .await;

        // (c) warm: every user cached first.
        let identity_settings = IdentitySettings {
            cache_ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(60),
            refresh_after: Duration::from_secs(3600),
            capacity: 100_000,
        };
        let cache = IdentityCache::new(directory.clone(), identity_settings);
        let logins: Arc<Vec<String>> = Arc::new((1..=USERS).map(|n| format!("user{n:05}")).collect());
        for login in logins.iter() {
            cache.get(login).await.expect("warm-up").expect("exists");
        }
        let warm_run = measure("warm IdentityCache::get", tasks, seconds, |task| Warm {
            cache: cache.clone(),
            logins: logins.clone(),
            task,
        })
        .await;

        println!();
        println!(
            "identity lookups: {USERS} users, {tasks} concurrent tasks, {seconds} s each, pool_size {}",
            settings.pool_size
        );
        println!("| measurement                  | lookups/s  | p50         | p99         | per client CPU-s |");
        println!("|------------------------------|-----------:|------------:|------------:|-----------------:|");
        for run in [&slapd_run, &cold_run, &warm_run] {
            println!(
                "| {:<28} | {:>10.0} | {:>11.1?} | {:>11.1?} | {:>16.0} |",
                run.name,
                run.rate(),
                run.percentile(0.50),
                run.percentile(0.99),
                run.per_cpu_second()
            );
        }
        let ratio = cold_run.rate() / slapd_run.rate();
        println!();
        println!("cold / slapd alone = {ratio:.2} (target ≥ 0.50)");
        println!("warm = {:.0}/s (target > 1,000,000/s)", warm_run.rate());
    });
    drop(slapd);
}
