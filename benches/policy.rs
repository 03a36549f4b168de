//! Policy delegation load benchmark (docs/testing.md L2).
//!
//! A Rust load client speaks the Postfix policy protocol with realistic
//! traffic: per message, one RCPT request per recipient then one
//! END-OF-MESSAGE, each a full Postfix 3.7 attribute set, over persistent
//! connections (one per simulated smtpd), users drawn from 10,000 directory
//! users. Prints requests/s, p50 and p99 per concurrency level.
//!
//! Without `--target` it starts mailwarrant in-process against a test
//! slapd seeded with the users, with SQLite counters, or with `--store
//! redis` Redis counters (a redis-server it starts, or `--redis-url`). With `--target
//! HOST:PORT` or `--target unix:PATH` it drives another policy server
//! (postfwd2, policyd-rate-limit) the same way:
//! `scripts/bench/compare-policy.sh`. `--unix` puts the in-process server
//! (or the null server) on a UNIX socket, as Postfix reaches a policy
//! service with `check_policy_service unix:…`.
//!
//! `cargo bench --bench policy -- [--target H:P|unix:PATH] [--unix] [--label NAME]
//!  [--concurrency 1,8,32] [--seconds 5] [--recipients 4] [--users 10000]
//!  [--synchronous full|normal] [--store sqlite|redis] [--redis-url URL]
//!  [--no-rate-limits] [--null] [--client-threads 2] [--server-threads 2]`

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

/// Where a policy server listens.
#[derive(Clone, Debug)]
enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for Target {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("unix:") {
            Some(path) => Ok(Target::Unix(path.into())),
            None => s.parse().map(Target::Tcp),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(addr) => write!(f, "{addr}"),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A connected policy client over either transport.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

async fn connect(target: &Target) -> std::io::Result<BufReader<Box<dyn Stream>>> {
    let stream: Box<dyn Stream> = match target {
        Target::Tcp(addr) => {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Box::new(stream)
        }
        Target::Unix(path) => Box::new(unix_connect(path).await?),
    };
    Ok(BufReader::new(stream))
}

/// A UNIX socket refuses a connection with `EAGAIN` while its listen
/// backlog is full (policyd-rate-limit listens with a backlog of 5), where
/// TCP would retransmit the SYN; so, like Postfix, try again a moment later.
async fn unix_connect(path: &Path) -> std::io::Result<UnixStream> {
    let mut tries = 0;
    loop {
        match UnixStream::connect(path).await {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && tries < 500 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

struct Args {
    target: Option<Target>,
    /// The in-process or null server on a UNIX socket instead of TCP.
    unix: bool,
    label: String,
    concurrency: Vec<usize>,
    seconds: f64,
    recipients: usize,
    users: usize,
    /// `[store] synchronous` of the in-process mailwarrant.
    synchronous: String,
    /// `[store] kind` of the in-process mailwarrant.
    store: String,
    /// A running Redis; without it `--store redis` starts one.
    redis_url: Option<String>,
    /// `--no-rate-limits`: the profile without its daily rate, so no store
    /// work at all (what the counters cost).
    rate_limits: bool,
    /// Drive a do-nothing server instead (the ceiling of this client, the
    /// kernel's loopback TCP and the machine).
    null: bool,
    /// Worker threads of the load client's runtime.
    client_threads: usize,
    /// Worker threads of the in-process server's runtime.
    server_threads: usize,
}

fn args() -> Args {
    let mut a = Args {
        target: None,
        unix: false,
        label: "mailwarrant".into(),
        concurrency: vec![1, 8, 32],
        seconds: 5.0,
        recipients: 4,
        users: 10_000,
        synchronous: "full".into(),
        store: "sqlite".into(),
        redis_url: None,
        null: false,
        rate_limits: true,
        client_threads: 2,
        server_threads: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--target" => a.target = Some(value().parse().expect("--target HOST:PORT or unix:PATH")),
            "--unix" => a.unix = true,
            "--label" => a.label = value(),
            "--concurrency" => {
                a.concurrency = value().split(',').map(|c| c.parse().expect("--concurrency 1,8,32")).collect()
            }
            "--seconds" => a.seconds = value().parse().expect("--seconds N"),
            "--recipients" => a.recipients = value().parse().expect("--recipients N"),
            "--users" => a.users = value().parse().expect("--users N"),
            "--synchronous" => a.synchronous = value(),
            "--store" => a.store = value(),
            "--redis-url" => a.redis_url = Some(value()),
            "--null" => a.null = true,
            "--no-rate-limits" => a.rate_limits = false,
            "--client-threads" => a.client_threads = value().parse().expect("--client-threads N"),
            "--server-threads" => a.server_threads = value().parse().expect("--server-threads N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// One request as Postfix 3.7 sends it (attribute set of the reference
/// capture).
fn request(state: &str, user: usize, recipient: &str, count: usize, instance: &str, client: &str) -> Vec<u8> {
    let login = format!("user{user:05}");
    let size = if state == "END-OF-MESSAGE" { 2048 } else { 0 };
    format!(
        "request=smtpd_access_policy\nprotocol_state={state}\nprotocol_name=ESMTP\nclient_address={client}\n\
         client_name=localhost\nclient_port=33076\nreverse_client_name=localhost\nserver_address=127.0.0.1\n\
         server_port=587\nhelo_name=client.example.com\nsender={login}@example.com\nrecipient={recipient}\n\
         recipient_count={count}\nqueue_id=3901C98C3C0\ninstance={instance}\nsize={size}\netrn_domain=\nstress=\n\
         sasl_method=PLAIN\nsasl_username={login}\nsasl_sender=\nccert_subject=\nccert_issuer=\nccert_fingerprint=\n\
         ccert_pubkey_fingerprint=\nencryption_protocol=\nencryption_cipher=\nencryption_keysize=0\npolicy_context=\n\n"
    )
    .into_bytes()
}

/// Sends one request and waits for its reply; `action` gets the verb
/// (`DUNNO`, `REJECT`, `450`, …).
async fn ask(
    conn: &mut BufReader<Box<dyn Stream>>,
    req: &[u8],
    line: &mut String,
    action: &mut String,
) -> std::io::Result<()> {
    conn.get_mut().write_all(req).await?;
    action.clear();
    loop {
        line.clear();
        if conn.read_line(line).await? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "server closed"));
        }
        if line == "\n" && !action.is_empty() {
            return Ok(());
        }
        if let Some(rest) = line.strip_prefix("action=") {
            action.push_str(rest.split([' ', '\n']).next().unwrap_or(""));
        }
    }
}

/// xorshift: cheap, deterministic per worker.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

struct WorkerResult {
    latencies_us: Vec<u32>,
    messages: u64,
    actions: std::collections::BTreeMap<String, u64>,
}

async fn worker(target: Target, id: usize, a: Arc<Args>, deadline: Instant, seq: Arc<AtomicU64>) -> WorkerResult {
    let mut conn = connect(&target).await.expect("connect to the policy server");
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ ((id as u64 + 1) * 0x2545_F491_4F6C_DD1D);
    let mut out = WorkerResult { latencies_us: Vec::with_capacity(1 << 16), messages: 0, actions: Default::default() };
    let mut line = String::new();
    let mut action = String::new();
    let client = format!("127.{}.{}.{}", id % 250, (id / 250) % 250, 1 + id % 200);
    while Instant::now() < deadline {
        let msg = seq.fetch_add(1, Ordering::Relaxed);
        let user = 1 + (next(&mut rng) as usize % a.users);
        let instance = format!("bench.{id}.{msg}");
        for r in 0..a.recipients {
            let rcpt = if r == 0 { "someone@example.net".to_owned() } else { format!("colleague{r}@example.com") };
            let req = request("RCPT", user, &rcpt, 0, &instance, &client);
            let t = Instant::now();
            ask(&mut conn, &req, &mut line, &mut action).await.expect("RCPT answered");
            out.latencies_us.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
        let req = request("END-OF-MESSAGE", user, "", a.recipients, &instance, &client);
        let t = Instant::now();
        ask(&mut conn, &req, &mut line, &mut action).await.expect("END-OF-MESSAGE answered");
        out.latencies_us.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
        *out.actions.entry(action.clone()).or_default() += 1;
        out.messages += 1;
    }
    out
}

struct Row {
    concurrency: usize,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    messages_per_s: f64,
    actions: String,
}

async fn run(target: &Target, a: Arc<Args>, concurrency: usize, seconds: f64) -> Row {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let seq = Arc::new(AtomicU64::new(rand_seed()));
    let tasks: Vec<_> =
        (0..concurrency).map(|id| tokio::spawn(worker(target.clone(), id, a.clone(), deadline, seq.clone()))).collect();
    let mut latencies = Vec::new();
    let mut messages = 0;
    let mut actions = std::collections::BTreeMap::new();
    for t in tasks {
        let r = t.await.expect("worker");
        latencies.extend(r.latencies_us);
        messages += r.messages;
        for (k, v) in r.actions {
            *actions.entry(k).or_insert(0u64) += v;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Row {
        concurrency,
        rps: latencies.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        messages_per_s: messages as f64 / elapsed,
        actions: actions.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(" "),
    }
}

/// Distinct instances across runs against the same counter store.
fn rand_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) << 20
}

/// mailwarrant in-process: test slapd with the users, SQLite or Redis
/// counters.
struct InProcess {
    target: Target,
    _slapd: mailwarrant::testkit::slapd::Slapd,
    _redis: Option<mailwarrant::testkit::redis::RedisServer>,
    _dir: tempfile::TempDir,
    _stop: mailwarrant::serve::ShutdownTrigger,
    _runtime: tokio::runtime::Runtime,
}

fn start_mailwarrant(a: &Args) -> InProcess {
    let users = a.users;
    eprintln!("starting slapd with {users} users …");
    let slapd = mailwarrant::testkit::slapd::Slapd::start_with_users(users)
        .expect("slapd starts (scripts/test.sh installs it)");
    let dir = tempfile::tempdir().unwrap();
    let (store, redis) = match (a.store.as_str(), &a.redis_url) {
        ("sqlite", _) => (format!("[store]\npath = \"bench.sqlite\"\nsynchronous = \"{}\"\n", a.synchronous), None),
        ("redis", Some(url)) => {
            (format!("[store]\nkind = \"redis\"\nurl = \"{url}\"\nprefix = \"bench{}:\"\n", rand_seed()), None)
        }
        ("redis", None) => {
            let redis = mailwarrant::testkit::redis::RedisServer::start()
                .expect("redis-server starts (scripts/test.sh installs it)");
            (redis.store_toml("bench:"), Some(redis))
        }
        (other, _) => panic!("--store sqlite|redis, not {other}"),
    };
    let listen = if a.unix { "listen = \"\"\nunix_socket = \"policy.sock\"" } else { "listen = \"127.0.0.1:0\"" };
    let text = format!(
        "{}\n[auth.dovecot]\nlisten = []\n[identity]\ncache_ttl = \"30m\"\nrefresh_after = \"25m\"\n{store}\
         [policy]\n{listen}\norganisation_domains = [\"example.com\"]\n\
         [policy.profiles.default]\nallowed_sender_domains = [\"example.com\"]\nrequire_sender_match = true\n\
         max_recipients = 100\nmay_send_to_lists = false\n{}",
        slapd.config_toml(),
        if a.rate_limits { "rate_limits = [{ rate = \"100000/1d\" }]\n" } else { "" }
    );
    let config =
        mailwarrant::config::Config::from_toml(&text, dir.path(), Path::new("bench.toml")).expect("bench config");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.server_threads)
        .thread_name("policy-server")
        .enable_all()
        .build()
        .unwrap();
    let (stop, shutdown) = mailwarrant::serve::shutdown::channel();
    let target = runtime.block_on(async {
        let app = mailwarrant::serve::App::build(config).await.expect("app");
        let settings = app.config.policy.clone().unwrap();
        let listeners =
            mailwarrant::protocols::policy_delegation::listener::PolicyListeners::bind(&settings).await.unwrap();
        let target = match &settings.listener.unix_socket {
            Some(path) => Target::Unix(path.clone()),
            None => Target::Tcp(listeners.local_addr().unwrap()),
        };
        tokio::spawn(listeners.serve(app.policy.clone().unwrap(), shutdown));
        target
    });
    InProcess { target, _slapd: slapd, _redis: redis, _dir: dir, _stop: stop, _runtime: runtime }
}

/// A server that answers `DUNNO` to every request without reading it:
/// what the client, the kernel's sockets and the scheduler cost on their
/// own, so no policy server can do better on this machine with this client.
struct NullServer {
    target: Target,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

fn start_null_server(threads: usize, unix: bool) -> NullServer {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("null-server")
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = runtime.block_on(async {
        if unix {
            let path = dir.path().join("null.sock");
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(answer_dunno(stream));
                }
            });
            return Target::Unix(path);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                stream.set_nodelay(true).ok();
                tokio::spawn(answer_dunno(stream));
            }
        });
        Target::Tcp(addr)
    });
    NullServer { target, _dir: dir, _runtime: runtime }
}

async fn answer_dunno<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 8192];
    let mut tail = [0u8; 2];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // A request ends with an empty line; the client waits for each
        // answer, so at most one ends here.
        let mut ends = 0;
        for &b in &buf[..n] {
            if tail == [b'\n', b'\n'] {
                tail = [0, 0];
            }
            tail = [tail[1], b];
            if tail == [b'\n', b'\n'] {
                ends += 1;
            }
        }
        for _ in 0..ends {
            if stream.write_all(b"action=DUNNO\n\n").await.is_err() {
                return;
            }
        }
    }
}

fn main() {
    let a = Arc::new(args());
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.client_threads)
        .thread_name("load-client")
        .enable_all()
        .build()
        .unwrap();
    let null = a.null.then(|| start_null_server(a.server_threads, a.unix));
    let server = if a.target.is_none() && null.is_none() { Some(start_mailwarrant(&a)) } else { None };
    let target = a
        .target
        .clone()
        .or(null.as_ref().map(|n| n.target.clone()))
        .or(server.as_ref().map(|s| s.target.clone()))
        .unwrap();
    // Warm-up: every user once (fills mailwarrant's identity cache from
    // the directory, as a running service has), not measured. Other
    // servers keep no per-user cache to warm.
    eprintln!("warming up against {target} …");
    client.block_on(async {
        if a.target.is_some() || a.null {
            return;
        }
        let per = a.users.div_ceil(32);
        let tasks: Vec<_> = (0..32)
            .map(|w| {
                let target = target.clone();
                tokio::spawn(async move {
                    let mut conn = connect(&target).await.expect("connect");
                    let (mut line, mut action) = (String::new(), String::new());
                    for user in (w * per + 1)..=((w + 1) * per) {
                        let req =
                            request("RCPT", user, "colleague@example.com", 0, &format!("warm.{user}"), "127.0.0.1");
                        ask(&mut conn, &req, &mut line, &mut action).await.expect("warm-up answered");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    println!("| server | concurrency | requests/s | p50 ms | p99 ms | messages/s | END-OF-MESSAGE actions |");
    println!("|---|---:|---:|---:|---:|---:|---|");
    for &c in &a.concurrency {
        let row = client.block_on(run(&target, a.clone(), c, a.seconds));
        println!(
            "| {} | {} | {:.0} | {:.3} | {:.3} | {:.0} | {} |",
            a.label, row.concurrency, row.rps, row.p50_ms, row.p99_ms, row.messages_per_s, row.actions
        );
    }
}
