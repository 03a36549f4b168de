//! End to end through real Postfix (issue 20): what mailwarrant costs a
//! submission server, against the same Postfix with no policy at all.
//!
//! Run: `cargo bench --bench e2e` (release build; as root, with Debian's
//! `postfix slapd ldap-utils`). One run starts a test slapd with the
//! generated users and one `mailwarrant serve` (the release binary) whose
//! Dovecot auth, policy and milter listeners each listen on TCP and on a
//! UNIX socket; every user's password is cached first (one Dovecot AUTH
//! each). Then, per row, a private Postfix 3.x (`testkit::postfix`) is
//! started with:
//!
//! - **AUTH only**: `smtpd_sasl_type = dovecot` on mailwarrant, no policy,
//!   no milter: the ceiling, Postfix with no policy at all;
//! - **do-nothing policy + milter**: the next row's Postfix settings, but
//!   the policy service and the milter are servers in this process that
//!   answer `DUNNO` and `continue` without looking (the milter negotiates
//!   the same steps and "no reply" flags as mailwarrant's): what Postfix
//!   itself spends on delegating, the ceiling of any policy server;
//! - **+ policy**: mailwarrant's policy service, `check_policy_service` in
//!   the recipient and end-of-data restrictions (a `1000000/1d` rate limit
//!   charged per message);
//! - **+ milter**: also mailwarrant's milter in `smtpd_milters` (protocol 6);
//!
//! each over TCP (`inet:127.0.0.1:PORT`) and over UNIX sockets. The client
//! is Rust, a new SMTP session per message like a mail client: EHLO, AUTH
//! PLAIN, MAIL, 1–3 RCPT (external, relayed to `smtp-sink`), DATA of ~1 KiB
//! with a `From:` header, QUIT; `E2E_CONCURRENCY` sessions at once (default
//! 4). Latency counts from connect to the answer to QUIT. mailwarrant's CPU
//! is `utime + stime` from `/proc/PID/stat` over the timed window (Linux
//! clock ticks of 10 ms).
//!
//! The rows run in turn, `E2E_ROUNDS` times (default 3), each for
//! `E2E_SECONDS` (default 5), and each row's figures are over all its
//! windows: on a shared machine a neighbour's burst then falls on every row
//! alike. `E2E_USERS` sets the
//! users (default 1000), `E2E_MAILWARRANT` another binary (e.g. an older
//! build, to compare), `E2E_ROWS=tcp` or `unix` one transport only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use mailwarrant::testkit::dovecot_client::{Answer, DovecotClient};
use mailwarrant::testkit::postfix::Postfix;
use mailwarrant::testkit::slapd::{Slapd, GENERATED_PASSWORD};
use mailwarrant::testkit::{free_port, spawn_serve, wait_for_port, ChildGuard};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Sessions opened before the clock starts count nothing.
const WARM_UP: Duration = Duration::from_secs(2);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What Postfix is told to use.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stack {
    Auth,
    /// Policy and milter delegated to the do-nothing servers.
    Null,
    Policy,
    Milter,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Unix,
}

struct Server {
    dir: tempfile::TempDir,
    process: ChildGuard,
    auth: u16,
    policy: u16,
    milter: u16,
    null: NullPorts,
}

/// Where the do-nothing servers listen.
struct NullPorts {
    policy: u16,
    milter: u16,
}

impl Server {
    fn socket(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `(utime + stime)` in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let pid = self.process.id().unwrap_or(0);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the `(comm)`, which may hold spaces: state is 3rd,
        // utime the 14th and stime the 15th of the whole line.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        field(11) + field(12)
    }

    /// Postfix's `main.cf` lines for one row.
    fn postfix_settings(&self, stack: Stack, transport: Transport) -> Vec<(&'static str, String)> {
        let null = stack == Stack::Null;
        let (policy, milter) = if null { (self.null.policy, self.null.milter) } else { (self.policy, self.milter) };
        let (policy_sock, milter_sock) =
            if null { ("null-policy.sock", "null-milter.sock") } else { ("policy.sock", "milter.sock") };
        let at = |port: u16, sock: &str| match transport {
            Transport::Tcp => format!("inet:127.0.0.1:{port}"),
            Transport::Unix => format!("unix:{}", self.socket(sock).display()),
        };
        let auth = match transport {
            Transport::Tcp => format!("inet:127.0.0.1:{}", self.auth),
            // Postfix's Dovecot client takes a bare path for a UNIX socket.
            Transport::Unix => self.socket("auth.sock").display().to_string(),
        };
        let mut s = vec![
            ("smtpd_sasl_auth_enable", "yes".to_owned()),
            ("smtpd_sasl_type", "dovecot".to_owned()),
            ("smtpd_sasl_path", auth),
            ("smtpd_sasl_security_options", "noanonymous".to_owned()),
            ("smtpd_tls_auth_only", "no".to_owned()),
            ("mynetworks", "127.0.0.0/8".to_owned()),
            ("smtpd_relay_restrictions", "permit_sasl_authenticated, reject".to_owned()),
        ];
        if stack != Stack::Auth {
            let policy = format!("check_policy_service {}", at(policy, policy_sock));
            s.push(("smtpd_recipient_restrictions", format!("{policy}, permit")));
            s.push(("smtpd_end_of_data_restrictions", format!("{policy}, permit")));
        }
        if matches!(stack, Stack::Milter | Stack::Null) {
            s.push(("smtpd_milters", at(milter, milter_sock)));
            s.push(("milter_protocol", "6".to_owned()));
            s.push(("milter_default_action", "tempfail".to_owned()));
        }
        s
    }
}

fn start_server(slapd: &Slapd, null_runtime: &tokio::runtime::Runtime) -> Server {
    let dir = tempfile::tempdir().unwrap();
    // Postfix's daemons (user postfix) reach the UNIX sockets in here.
    set_mode(dir.path(), 0o755);
    let (auth, policy, milter) = (free_port(), free_port(), free_port());
    let sock = |name: &str| format!("unix_socket = {:?}\nsocket_mode = \"0666\"\n", dir.path().join(name));
    let config = format!(
        "{directory}\n[identity]\ncache_ttl = \"1h\"\nrefresh_after = \"50m\"\n\
         [store]\npath = \"state.sqlite\"\n\
         [auth.dovecot]\nlisten = [\"127.0.0.1:{auth}\"]\n{auth_sock}\
         [auth.cache]\nttl = \"1h\"\n[auth.throttle]\nper_login = 1000\nper_client = 100000\n\
         [policy]\nlisten = \"127.0.0.1:{policy}\"\n{policy_sock}organisation_domains = [\"example.com\"]\n\
         [policy.profiles.default]\nallowed_sender_domains = [\"example.com\"]\nrequire_sender_match = true\n\
         max_recipients = 100\nmay_send_external = true\nrate_limits = [{{ rate = \"1000000/1d\" }}]\n\
         [milter]\nlisten = \"127.0.0.1:{milter}\"\n{milter_sock}",
        directory = slapd.config_toml(),
        auth_sock = sock("auth.sock"),
        policy_sock = sock("policy.sock"),
        milter_sock = sock("milter.sock"),
    );
    let file = dir.path().join("bench.toml");
    std::fs::write(&file, config).unwrap();
    let binary = std::env::var("E2E_MAILWARRANT").unwrap_or_else(|_| env!("CARGO_BIN_EXE_mailwarrant").to_owned());
    let log = std::fs::File::create(dir.path().join("mailwarrant.log")).unwrap();
    let process = spawn_serve(Path::new(&binary), &file, Some(log)).unwrap();
    for port in [auth, policy, milter] {
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(30)).expect("mailwarrant listens");
    }
    eprintln!("mailwarrant: auth :{auth}, policy :{policy}, milter :{milter}");
    let null = start_null_servers(dir.path(), null_runtime);
    Server { dir, process, auth, policy, milter, null }
}

/// The do-nothing policy service and milter, on TCP and UNIX sockets in
/// `dir`, served by `rt` (its own thread, not the client's).
fn start_null_servers(dir: &Path, rt: &tokio::runtime::Runtime) -> NullPorts {
    rt.block_on(async {
        let policy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let milter = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ports =
            NullPorts { policy: policy.local_addr().unwrap().port(), milter: milter.local_addr().unwrap().port() };
        eprintln!("do-nothing: policy :{}, milter :{}", ports.policy, ports.milter);
        let unix = |name: &str| {
            let path = dir.join(name);
            let l = tokio::net::UnixListener::bind(&path).unwrap();
            set_mode(&path, 0o666);
            l
        };
        let (policy_unix, milter_unix) = (unix("null-policy.sock"), unix("null-milter.sock"));
        tokio::spawn(async move {
            loop {
                let (s, _) = policy.accept().await.unwrap();
                s.set_nodelay(true).unwrap();
                tokio::spawn(null_policy(s));
            }
        });
        tokio::spawn(async move {
            loop {
                let (s, _) = policy_unix.accept().await.unwrap();
                tokio::spawn(null_policy(s));
            }
        });
        tokio::spawn(async move {
            loop {
                let (s, _) = milter.accept().await.unwrap();
                s.set_nodelay(true).unwrap();
                tokio::spawn(null_milter(s, true));
            }
        });
        tokio::spawn(async move {
            loop {
                let (s, _) = milter_unix.accept().await.unwrap();
                tokio::spawn(null_milter(s, false));
            }
        });
        ports
    })
}

/// Answers `DUNNO` to every request, reading only up to its empty line.
async fn null_policy<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: S) {
    let mut io = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match io.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\n" => {
                if io.get_mut().write_all(b"action=DUNNO\n\n").await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
        }
    }
}

/// Negotiates as mailwarrant's milter does and answers `continue` to each
/// end of message; everything else is read and dropped. Over TCP it
/// acknowledges every read at once, as mailwarrant does (else Postfix's
/// Nagle waits on our delayed ACK).
async fn null_milter<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + AsRawTcp>(mut stream: S, tcp: bool) {
    use mailwarrant::protocols::milter::codec::{decode, encode, Command, Reply};
    use mailwarrant::protocols::milter::session::{NO_REPLY, SKIP};
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(8192);
    loop {
        while let Ok(Some(command)) = decode(&mut buf) {
            let reply = match command {
                Command::OptNeg { protocol, .. } => {
                    Reply::OptNeg { version: 6, actions: 0, protocol: protocol & (SKIP | NO_REPLY), macros: Vec::new() }
                }
                Command::EndOfBody(_) => Reply::Continue,
                Command::Quit => return,
                _ => continue,
            };
            if stream.write_all(&encode(&reply)).await.is_err() {
                return;
            }
        }
        buf.reserve(8192);
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) if tcp => stream.quick_ack(),
            Ok(_) => {}
        }
    }
}

/// `TCP_QUICKACK` for the do-nothing milter's TCP streams.
trait AsRawTcp {
    fn quick_ack(&self) {}
}
impl AsRawTcp for tokio::net::UnixStream {}
impl AsRawTcp for TcpStream {
    fn quick_ack(&self) {
        let _ = self.set_quickack(true);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn login(i: usize) -> String {
    format!("user{:05}", i + 1)
}

/// One Dovecot AUTH per user: identities and credentials cached.
async fn prime(address: SocketAddr, users: usize) {
    let mut tasks = Vec::new();
    for w in 0..8 {
        tasks.push(tokio::spawn(async move {
            let mut client = DovecotClient::connect(address).await.expect("auth handshake");
            for i in (w..users).step_by(8) {
                let answer = client.plain(&login(i), GENERATED_PASSWORD, [127, 0, 0, 1].into()).await;
                assert!(matches!(answer, Ok(Answer::Ok { .. })), "{answer:?}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("priming");
    }
}

/// A line-reading SMTP client session.
struct Smtp {
    io: BufReader<TcpStream>,
    line: String,
}

impl Smtp {
    /// Reads a (multi-line) reply; `Err` unless its code starts with `want`.
    async fn expect(&mut self, want: &str) -> Result<(), String> {
        loop {
            self.line.clear();
            if self.io.read_line(&mut self.line).await.map_err(|e| e.to_string())? == 0 {
                return Err("connection closed".into());
            }
            if !self.line.starts_with(want) {
                return Err(format!("wanted {want}, got {}", self.line.trim_end()));
            }
            if self.line.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    }

    async fn say(&mut self, text: &str, want: &str) -> Result<(), String> {
        self.io.get_mut().write_all(text.as_bytes()).await.map_err(|e| e.to_string())?;
        self.expect(want).await
    }
}

/// One message in its own session.
async fn session(port: u16, user: usize, recipients: usize, seq: u64) -> Result<(), String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut s = Smtp { io: BufReader::new(stream), line: String::new() };
    let login = login(user);
    s.expect("220").await?;
    s.say("EHLO client.example.com\r\n", "250").await?;
    let blob = base64::engine::general_purpose::STANDARD.encode(format!("\0{login}\0{GENERATED_PASSWORD}"));
    s.say(&format!("AUTH PLAIN {blob}\r\n"), "235").await?;
    s.say(&format!("MAIL FROM:<{login}@example.com>\r\n"), "250").await?;
    for r in 0..recipients {
        s.say(&format!("RCPT TO:<partner{r}.{seq}@example.net>\r\n"), "250").await?;
    }
    s.say("DATA\r\n", "354").await?;
    let body = "This is a benchmark message of about one kilobyte.\r\n".repeat(18);
    let message = format!(
        "From: Load User <{login}@example.com>\r\nTo: partner0.{seq}@example.net\r\nSubject: bench {seq}\r\n\
         Message-ID: <{seq}.{user}@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n{body}.\r\n"
    );
    s.say(&message, "250").await?;
    s.say("QUIT\r\n", "221").await
}

struct Row {
    rate: f64,
    p50: f64,
    p99: f64,
    cpu_per_1000: f64,
    errors: usize,
    first_error: Option<String>,
}

async fn load(port: u16, users: usize, concurrency: usize, window: Duration) -> (Vec<Duration>, Vec<String>, Duration) {
    let start = Instant::now() + WARM_UP;
    let end = start + window;
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), Vec::new());
            let mut seq = w as u64;
            while Instant::now() < end {
                seq += concurrency as u64;
                let began = Instant::now();
                let result = session(port, (seq as usize * 7919) % users, 1 + (seq % 3) as usize, seq).await;
                if began >= start && Instant::now() <= end {
                    match result {
                        Ok(()) => lat.push(began.elapsed()),
                        Err(e) => errors.push(e),
                    }
                }
            }
            (lat, errors)
        }));
    }
    let (mut lat, mut errors) = (Vec::new(), Vec::new());
    for t in tasks {
        let (l, e) = t.await.expect("load task");
        lat.extend(l);
        errors.extend(e);
    }
    (lat, errors, window)
}

/// One row's samples, summed over rounds.
#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    errors: Vec<String>,
    seconds: f64,
    cpu_ticks: u64,
}

impl Samples {
    fn row(mut self) -> Row {
        self.latencies.sort();
        let lat = &self.latencies;
        let q = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied();
        let ms = |d: Option<Duration>| d.unwrap_or_default().as_secs_f64() * 1000.0;
        let n = lat.len().max(1) as f64;
        Row {
            rate: lat.len() as f64 / self.seconds.max(f64::MIN_POSITIVE),
            p50: ms(q(0.5)),
            p99: ms(q(0.99)),
            // Linux reports CPU time in ticks of 1/100 s (USER_HZ).
            cpu_per_1000: self.cpu_ticks as f64 / 100.0 / n * 1000.0,
            errors: self.errors.len(),
            first_error: self.errors.into_iter().next(),
        }
    }
}

/// One window of one row, added to `into`.
fn run(server: &Server, stack: Stack, transport: Transport, rt: &tokio::runtime::Runtime, into: &mut Samples) {
    let settings = server.postfix_settings(stack, transport);
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let postfix = Postfix::start(&settings).expect("postfix starts");
    let (users, concurrency) = (env_or("E2E_USERS", 1000), env_or("E2E_CONCURRENCY", 4));
    let window = Duration::from_secs_f64(env_or("E2E_SECONDS", 5.0));
    let port = postfix.port;
    let (lat, errors, window, cpu) = rt.block_on(async {
        let load = tokio::spawn(load(port, users, concurrency, window));
        // The CPU window is the timed window: sampled after the warm-up.
        tokio::time::sleep(WARM_UP).await;
        let before = server.cpu_ticks();
        tokio::time::sleep(window).await;
        let cpu = server.cpu_ticks().saturating_sub(before);
        let (lat, errors, window) = load.await.expect("load");
        (lat, errors, window, cpu)
    });
    if lat.is_empty() {
        eprintln!("no message went through; maillog:\n{}", postfix.maillog());
    }
    into.latencies.extend(lat);
    into.errors.extend(errors);
    into.seconds += window.as_secs_f64();
    into.cpu_ticks += cpu;
}

const STACKS: [(Stack, &str); 4] = [
    (Stack::Auth, "AUTH by mailwarrant, no policy"),
    (Stack::Null, "+ do-nothing policy and milter"),
    (Stack::Policy, "+ policy (RCPT, END-OF-MESSAGE)"),
    (Stack::Milter, "+ milter"),
];

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let users = env_or("E2E_USERS", 1000);
    eprintln!("starting slapd with {users} users …");
    let slapd = Slapd::start_quiet_with_users(users).expect("slapd starts (scripts/test.sh installs it)");
    let null_runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let server = start_server(&slapd, &null_runtime);
    rt.block_on(prime(SocketAddr::from(([127, 0, 0, 1], server.auth)), users));
    let transports = match std::env::var("E2E_ROWS").as_deref() {
        Ok("tcp") => vec![Transport::Tcp],
        Ok("unix") => vec![Transport::Unix],
        _ => vec![Transport::Tcp, Transport::Unix],
    };
    let rounds: usize = env_or("E2E_ROUNDS", 3);
    // Rounds of every row in turn, so a neighbour's load on this shared
    // machine falls on every row alike, not on whichever ran then.
    let mut samples: Vec<Vec<Samples>> =
        transports.iter().map(|_| STACKS.iter().map(|_| Samples::default()).collect()).collect();
    for round in 0..rounds {
        for (t, transport) in transports.iter().enumerate() {
            for (r, (stack, what)) in STACKS.iter().enumerate() {
                eprintln!("round {}/{rounds}: {} {what} …", round + 1, name(*transport));
                run(&server, *stack, *transport, &rt, &mut samples[t][r]);
            }
        }
    }
    println!(
        "\nconcurrency {}, {rounds} rounds of {} s per row, a new session per message, 1–3 recipients\n",
        env_or("E2E_CONCURRENCY", 4),
        env_or("E2E_SECONDS", 5.0)
    );
    println!(
        "| transport | Postfix with | msg/s | p50 ms | p99 ms | × no policy | mailwarrant CPU s / 1,000 msg | errors |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let mut summary = Vec::new();
    for (transport, rows) in transports.iter().zip(samples) {
        let rows: Vec<Row> = rows.into_iter().map(Samples::row).collect();
        let name = name(*transport);
        for (row, (_, what)) in rows.iter().zip(STACKS) {
            println!(
                "| {name} | {what} | {:.0} | {:.1} | {:.1} | {:.2} | {:.2} | {} |",
                row.rate,
                row.p50,
                row.p99,
                row.rate / rows[0].rate,
                row.cpu_per_1000,
                row.errors
            );
            if let Some(e) = &row.first_error {
                eprintln!("  {name} {what}: first error: {e}");
            }
        }
        let (auth, null, policy, milter) = (&rows[0], &rows[1], &rows[2], &rows[3]);
        summary.push(format!(
            "{name}: full stack {:.2}× no policy (goal ≥ 0.85), {:.2}× the do-nothing servers; \
             the milter adds {:+.1} ms at p50 (goal ≤ 3 ms)",
            milter.rate / auth.rate,
            milter.rate / null.rate,
            milter.p50 - policy.p50
        ));
    }
    println!();
    for line in summary {
        println!("{line}");
    }
}

fn name(transport: Transport) -> &'static str {
    match transport {
        Transport::Tcp => "TCP",
        Transport::Unix => "UNIX",
    }
}
