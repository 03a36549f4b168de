//! Password check benchmark (issue 5): the live check endpoint's latency
//! for a 64-character password with a 1,000,000-line blocklist loaded,
//! and that blocklist's memory.
//!
//! Runs the real service (`serve::run` with the `[http]` listener, LDIF
//! directory, SQLite store) on loopback and sends sequential requests from
//! a plain HTTP client, so the figure includes HTTP, JSON, the identity
//! cache, the store's rate-limit counter, zxcvbn and the blocklist.
//!
//! `cargo bench --bench password` (release build). Prints a summary for
//! BENCHMARKS.md.

use std::path::Path;
use std::time::{Duration, Instant};

use mailwarrant::config::Config;
use mailwarrant::password::{check, Blocklist, Candidate, Facts, UserContext};
use mailwarrant::serve::{self, App};
use mailwarrant::testkit::{free_port, wait_for_port};

const LINES: usize = 1_000_000;
const REQUESTS: usize = 2_000;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// A 64-character password, different each time (so no layer can cache it).
fn candidate(i: usize) -> String {
    let base = format!("Vivid-Cactus-Lantern-{i:06}-Harbor-Meadow-Quiet-Orchard-Compass-");
    base.chars().cycle().take(64).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join("config/demo-directory.ldif"), dir.path().join("people.ldif")).unwrap();
    // A million distinct lines, like a breached-password list.
    let list: String = (0..LINES).map(|i| format!("leaked-{i:07}-pw\n")).collect();
    std::fs::write(dir.path().join("blocklist.txt"), &list).unwrap();
    drop(list);

    let rss_before = rss_kib();
    let started = Instant::now();
    let loaded = Blocklist::load(&dir.path().join("blocklist.txt")).unwrap();
    let load_time = started.elapsed();
    let rss_after = rss_kib();
    println!(
        "blocklist: {} lines loaded in {:.0} ms; {:.1} MiB held (8 bytes/entry); RSS grew {:.1} MiB",
        loaded.len(),
        load_time.as_secs_f64() * 1e3,
        loaded.memory_bytes() as f64 / 1048576.0,
        rss_after.saturating_sub(rss_before) as f64 / 1024.0
    );

    // The engine alone.
    let ctx = UserContext::from_login("alice");
    let policy = mailwarrant::password::PolicySet::default();
    let facts = Facts {
        context: &ctx,
        blocklist: &loaded,
        history: None,
        changed_at: None,
        forced: false,
        now: time::OffsetDateTime::now_utc(),
    };
    let mut engine: Vec<Duration> = (0..REQUESTS)
        .map(|i| {
            let pw = candidate(i);
            let t = Instant::now();
            std::hint::black_box(check(policy.default_policy(), Candidate(&pw), &facts));
            t.elapsed()
        })
        .collect();
    engine.sort();
    println!(
        "engine check (64 chars): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&engine, 0.5).as_secs_f64() * 1e3,
        percentile(&engine, 0.99).as_secs_f64() * 1e3,
        engine.last().unwrap().as_secs_f64() * 1e3
    );
    drop(loaded);

    // The endpoint, over HTTP.
    let port = free_port();
    let config = format!(
        "[directory]\nkind = \"ldif\"\n[directory.ldif]\npath = \"people.ldif\"\n[store]\npath = \"state.sqlite\"\n\
         [auth.dovecot]\nlisten = [\"127.0.0.1:0\"]\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\npublic_base_url = \"http://127.0.0.1:{port}\"\n\
         [password]\nblocklist_file = \"blocklist.txt\"\n"
    );
    std::fs::write(dir.path().join("bench.toml"), config).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config = Config::load(&dir.path().join("bench.toml")).unwrap();
    let app = rt.block_on(App::build(config)).unwrap();
    let store = app.store.clone();
    let (stop, shutdown) = serve::shutdown::channel();
    let server = rt.spawn(serve::run(app, shutdown));
    wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(10)).unwrap();
    let url = format!("http://127.0.0.1:{port}/password/check");
    let agent = ureq::AgentBuilder::new().build();
    let mut http: Vec<Duration> = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS + 100 {
        let body = serde_json::json!({"login": "alice", "password": candidate(i)});
        let t = Instant::now();
        let r = agent.post(&url).send_json(body);
        let took = t.elapsed();
        // 300 checks a minute per client are allowed; the benchmark is one client.
        match r {
            Ok(r) => {
                let _ = r.into_string();
                if i >= 100 {
                    http.push(took);
                }
            }
            Err(ureq::Error::Status(429, _)) => {
                // Rate limited: reset this client's counter and go on.
                rt.block_on(store.delete("password:check:client:127.0.0.1")).unwrap();
            }
            Err(e) => panic!("check failed: {e}"),
        }
    }
    http.sort();
    println!(
        "check endpoint over HTTP (64 chars, {} requests, 1M-line blocklist): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        http.len(),
        percentile(&http, 0.5).as_secs_f64() * 1e3,
        percentile(&http, 0.99).as_secs_f64() * 1e3,
        http.last().unwrap().as_secs_f64() * 1e3
    );
    assert!(percentile(&http, 0.99) < Duration::from_millis(50), "p99 must stay under 50 ms");
    stop.fire();
    let _ = rt.block_on(server);
}
