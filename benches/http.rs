//! HTTP API load benchmark (issue 9): `POST /v1/policy/check` and
//! `GET /v1/identities/{login}` with a warm identity cache, driven by
//! `wrk` (Debian package `wrk`) over keep-alive connections.
//!
//! Starts mailwarrant in-process (2 runtime workers) against a quiet test
//! slapd with generated users, warms the cache, then runs wrk per
//! concurrency level and prints requests/s and p50/p99. Each policy check
//! carries one recipient, so one HTTP request is three policy stages
//! (RCPT, DATA, END-OF-MESSAGE). The profile has no rate limits, so no
//! counter is charged either way; both the real check and `dry_run=true`
//! are measured.
//!
//! The machine is shared, so besides requests/s it prints the server's
//! CPU use during each run (`/proc/self/stat`; wrk is a separate process)
//! and requests per server CPU-second: what one core sustains.
//!
//! `cargo bench --bench http -- [--concurrency 32] [--seconds 5] [--users 1000]`

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mailwarrant::auth::Authenticator;
use mailwarrant::http::{self, HttpState};

const TOKEN: &str = "bench-token-5f2c81";

struct Args {
    concurrency: Vec<usize>,
    seconds: u64,
    users: usize,
}

fn args() -> Args {
    let mut a = Args { concurrency: vec![32], seconds: 5, users: 1000 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--concurrency" => a.concurrency = value().split(',').map(|c| c.parse().expect("1,8,32")).collect(),
            "--seconds" => a.seconds = value().parse().expect("--seconds N"),
            "--users" => a.users = value().parse().expect("--users N"),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// A wrk Lua script that walks through the users.
fn script(dir: &Path, name: &str, users: usize, policy: bool) -> std::path::PathBuf {
    let body = if policy {
        format!(
            "counter = 0\nwrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"Authorization\"] = \"Bearer {TOKEN}\"\n\
             request = function()\n  counter = counter % {users} + 1\n  local u = string.format(\"user%05d\", counter)\n\
               local body = '{{\"login\":\"' .. u .. '\",\"sender\":\"' .. u .. '@example.com\",\"recipients\":[\"bob@example.com\"],\"size\":2048}}'\n\
               return wrk.format(nil, nil, nil, body)\nend\n"
        )
    } else {
        format!(
            "counter = 0\nwrk.headers[\"Authorization\"] = \"Bearer {TOKEN}\"\n\
             request = function()\n  counter = counter % {users} + 1\n\
               return wrk.format(\"GET\", string.format(\"/v1/identities/user%05d\", counter))\nend\n"
        )
    };
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().write_all(body.as_bytes()).unwrap();
    path
}

/// Runs wrk; returns (requests/s, p50, p99, non-2xx) from its report.
fn wrk(url: &str, script: &Path, concurrency: usize, seconds: u64) -> (f64, String, String, String) {
    let out = Command::new("wrk")
        .args(["-t", "2", "-c", &concurrency.to_string(), "-d", &format!("{seconds}s"), "--latency", "-s"])
        .arg(script)
        .arg(url)
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| "?".into())
    };
    let rps = field("Requests/sec:").parse().unwrap_or(0.0);
    let errors = field("Non-2xx or 3xx responses:");
    (rps, field("50%"), field("99%"), if errors == "?" { "0".into() } else { errors })
}

/// CPU seconds this process (the server; wrk is another process) used so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime), counted from 1 with pid and comm.
    let ticks = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) + ticks(15)) / 100.0
}

fn main() {
    let a = args();
    mailwarrant::testkit::require_program("/usr/bin/wrk", "wrk").unwrap();
    eprintln!("starting slapd with {} users …", a.users);
    let slapd = mailwarrant::testkit::slapd::Slapd::start_quiet_with_users(a.users).expect("slapd starts");
    let dir = tempfile::tempdir().unwrap();
    let hash = mailwarrant::directory::ldif::password::hash(TOKEN.as_bytes()).unwrap();
    let text = format!(
        "{}\n[auth.dovecot]\nlisten = []\n[identity]\ncache_ttl = \"30m\"\nrefresh_after = \"25m\"\n\
         [store]\npath = \"bench.sqlite\"\n\
         [policy]\nlisten = \"127.0.0.1:0\"\norganisation_domains = [\"example.com\"]\n\
         [policy.profiles.default]\nallowed_sender_domains = [\"example.com\"]\nrequire_sender_match = true\nmax_recipients = 100\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[[http.tokens]]\nname = \"bench\"\nhash = \"{hash}\"\nscopes = [\"lookup\"]\n",
        slapd.config_toml()
    );
    let config = mailwarrant::config::Config::from_toml(&text, dir.path(), Path::new("bench.toml")).expect("config");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let addr: SocketAddr = runtime.block_on(async {
        let app = mailwarrant::serve::App::build(config).await.expect("app");
        let settings = app.config.http.clone().unwrap();
        let auth = Arc::new(Authenticator::new(app.identities.clone(), app.store.clone(), app.config.auth.clone()));
        let router = http::router(HttpState::from_app(&app, &settings, Some(auth)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
        });
        // Warm: every user once.
        for i in 1..=a.users {
            app.identities.get(&format!("user{i:05}")).await.unwrap().expect("generated user");
        }
        addr
    });
    std::thread::sleep(Duration::from_millis(200));
    let base = format!("http://{addr}");
    let identities = script(dir.path(), "identities.lua", a.users, false);
    let policy = script(dir.path(), "policy.lua", a.users, true);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    println!(
        "{:<40} {:>5} {:>10} {:>9} {:>9} {:>7} {:>11} {:>15}",
        "endpoint", "conc", "req/s", "p50", "p99", "non-2xx", "server CPU", "req/CPU-second"
    );
    for &c in &a.concurrency {
        for (label, url, s) in [
            ("GET /v1/identities/{login} (warm)", format!("{base}/v1/identities/x"), &identities),
            ("POST /v1/policy/check?dry_run=true", format!("{base}/v1/policy/check?dry_run=true"), &policy),
            ("POST /v1/policy/check", format!("{base}/v1/policy/check"), &policy),
        ] {
            let cpu_before = cpu_seconds();
            let (rps, p50, p99, errors) = wrk(&url, s, c, a.seconds);
            let cpu = cpu_seconds() - cpu_before;
            let per_cpu = rps * a.seconds as f64 / cpu.max(0.01);
            println!(
                "{label:<40} {c:>5} {rps:>10.0} {p50:>9} {p99:>9} {errors:>7} {:>10.0}% {per_cpu:>15.0}",
                100.0 * cpu / a.seconds as f64
            );
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average after: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    drop(runtime);
}
