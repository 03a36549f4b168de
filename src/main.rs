//! The `mailwarrant` command line: a thin edge over the library.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{CommandFactory, Parser, Subcommand};
use mailwarrant::config::Config;
use mailwarrant::directory::AddressOwner;
use mailwarrant::identity::Address;
use mailwarrant::serve::{self, App};
use mailwarrant::telemetry::{self, LogFormat};

/// Where the Debian package puts the config; every subcommand reads it
/// unless `--config` or [`CONFIG_ENV`] names another.
const DEFAULT_CONFIG: &str = "/etc/mailwarrant/mailwarrant.toml";
const CONFIG_ENV: &str = "MAILWARRANT_CONFIG";

#[derive(Parser)]
#[command(name = "mailwarrant", version, about = "The corporate directory decides who may send mail, and how much")]
struct Cli {
    /// Log as human text or as one JSON object per line.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every configured listener until SIGTERM or SIGINT.
    Serve {
        /// The config file.
        #[arg(long, short, env = CONFIG_ENV, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate a config file and print it with secrets redacted.
    CheckConfig {
        /// The config file.
        #[arg(long, short, env = CONFIG_ENV, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Also connect to the store (Redis: a PING round trip; SQLite:
        /// open the file) and report whether it answers, and read the
        /// directory's lockout settings: exit 4 when an AUTH budget could
        /// let the directory lock an account.
        #[arg(long)]
        connect: bool,
    },
    /// Print what the directory says about a login or address, as JSON.
    Lookup {
        /// The config file.
        #[arg(long, short, env = CONFIG_ENV, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// A login (`alice`) or an address (`a.smith@example.com`).
        who: String,
    },
    /// Explain the send policy: what a login gets (`explain LOGIN`), what a
    /// message would get (`--from A --to B,C --size N`), or what a refusal
    /// reference means (`--ref ID`). Never counts anything.
    Explain {
        /// The config file.
        #[arg(long, short, env = CONFIG_ENV, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The login to explain (not needed with --ref).
        login: Option<String>,
        /// Envelope sender of a message to simulate.
        #[arg(long)]
        from: Option<String>,
        /// Recipients of the simulated message, comma-separated.
        #[arg(long, value_delimiter = ',')]
        to: Vec<String>,
        /// Size in bytes of the simulated message.
        #[arg(long, default_value_t = 0)]
        size: u64,
        /// Client address, for per-address counters.
        #[arg(long)]
        client_address: Option<String>,
        /// A reference from a refusal text: `(ref 3f9c2a7b41d0)`.
        #[arg(long = "ref")]
        reference: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Send the password expiry reminders that are due (once per user and
    /// stage), or list them with --dry-run.
    Remind {
        /// The config file.
        #[arg(long, short, env = CONFIG_ENV, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// List who would get which mail; send and record nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the result as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Pretend it is this instant (RFC 3339), for rehearsals and tests.
        #[arg(long, value_parser = parse_instant)]
        now: Option<time::OffsetDateTime>,
    },
    /// Read a candidate password from standard input and print the verdict
    /// of each rule of the login's password policy (history included).
    /// Exits 0 when every rule passes, 1 when one fails.
    PasswordCheck {
        /// The config file.
        #[arg(long, short, env = CONFIG_ENV, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long)]
        login: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Clear a login's AUTH failure budget in the store, so the directory
    /// is asked again at its next AUTH (on every instance sharing a Redis
    /// store). Audited with the operator's name. Exits 3 when the store
    /// cannot answer.
    Unlock {
        /// The config file.
        #[arg(long, short, env = CONFIG_ENV, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The login, as users type it; resolved to the canonical one.
        login: String,
    },
    /// Read a password from standard input and print its `{ARGON2}` hash,
    /// for LDIF directories.
    HashPassword,
    /// Make an API token `ID.SECRET` and print it with its
    /// `[[http.tokens]]` entry (the id picks the entry, so invented tokens
    /// cost no hash).
    NewToken {
        /// The public key id (letters, digits, '-', '_'), e.g. `webmail`.
        #[arg(long)]
        id: String,
    },
    /// Print the JSON Schema of the config file.
    #[command(hide = true)]
    ConfigSchema,
    /// Write the man pages (mailwarrant.1, mailwarrant-serve.1, …) into a
    /// folder; scripts/package.sh ships them.
    #[command(hide = true)]
    GenerateMan { dir: PathBuf },
    /// Print the shell completion script for SHELL.
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mailwarrant: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::CheckConfig { config, connect } => {
            let code = check_config(&config);
            if !connect || code != ExitCode::SUCCESS {
                return Ok(code);
            }
            let config = Config::load(&config)?;
            runtime()?.block_on(async {
                let store = check_store(&config).await?;
                let lockout = check_lockout(config).await?;
                Ok(if store != ExitCode::SUCCESS { store } else { lockout })
            })
        }
        Command::ConfigSchema => {
            print!("{}", mailwarrant::config::json_schema());
            Ok(ExitCode::SUCCESS)
        }
        Command::HashPassword => hash_password(),
        Command::GenerateMan { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("while creating {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("while writing the man pages into {}", dir.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "mailwarrant", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::NewToken { id } => {
            if id.is_empty()
                || id.len() > 32
                || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                bail!("--id: 1 to 32 letters, digits, '-' or '_'");
            }
            let (token, hash) = mailwarrant::http::api::tokens::new_token(&id);
            eprintln!("the token (give it to the client; it is not shown again):");
            println!("{token}");
            eprintln!("\nits entry for the config file:");
            println!("\n[[http.tokens]]\nname = \"{id}\"\nid = \"{id}\"\nhash = \"{hash}\"\nscopes = [\"lookup\"]");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            runtime()?.block_on(serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { config, login, from, to, size, client_address, reference, json } => {
            use mailwarrant::policy_service::explain::Query;
            let query = match (reference, login, from) {
                (Some(r), _, _) => Query::Reference(r),
                (None, Some(login), Some(from)) => Query::Message { login, from, to, size },
                (None, Some(login), None) => Query::Policy { login, client_address },
                (None, None, _) => bail!("name a login, or give --ref"),
            };
            let config = Config::load(&config)?;
            runtime()?.block_on(explain(config, query, json))
        }
        Command::Remind { config, dry_run, json, now } => {
            let config = Config::load(&config)?;
            runtime()?.block_on(remind(config, dry_run, json, now))
        }
        Command::PasswordCheck { config, login, json } => {
            let config = Config::load(&config)?;
            let candidate = read_secret_line("type the candidate password, then Enter:")?;
            runtime()?.block_on(password_check(config, &login, &candidate, json))
        }
        Command::Unlock { config, login } => {
            let config = Config::load(&config)?;
            runtime()?.block_on(unlock(config, &login))
        }
        Command::Lookup { config, who } => {
            let config = Config::load(&config)?;
            runtime()?.block_on(lookup(config, &who))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("while starting the async runtime")
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            print!("{}", config.redacted_toml());
            for w in &config.warnings {
                eprintln!("warning: {w}");
            }
            eprintln!("{}: OK ({} warning(s))", path.display(), config.warnings.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// `check-config --connect`: the directory's own lockout settings against
/// the AUTH throttle's budgets (an error when a budget could let the
/// directory lock an account).
async fn check_lockout(config: Config) -> anyhow::Result<ExitCode> {
    let app = App::build(config).await.context("while opening the directory and the store")?;
    let auth =
        mailwarrant::auth::Authenticator::new(app.identities.clone(), app.store.clone(), app.config.auth.clone());
    match auth.lockout_risks().await {
        Ok(risks) if risks.is_empty() => {
            eprintln!("directory: lockout settings read; the AUTH budgets stay below them");
            Ok(ExitCode::SUCCESS)
        }
        Ok(risks) => {
            for r in &risks {
                eprintln!("error: {r}");
            }
            Ok(ExitCode::from(4))
        }
        Err(e) => {
            eprintln!("directory: lockout settings not read: {e}");
            Ok(ExitCode::from(3))
        }
    }
}

/// `check-config --connect`: one round trip to the configured store.
async fn check_store(config: &Config) -> anyhow::Result<ExitCode> {
    let (what, result) = match &config.store {
        mailwarrant::config::StoreSettings::Redis(redis) => {
            (format!("Redis at {}", redis.url), mailwarrant::store::redis::RedisStore::connect(redis).await.map(|_| ()))
        }
        mailwarrant::config::StoreSettings::Sqlite { path, .. } => (
            format!("SQLite at {}", path.display()),
            match serve::open_store(&config.store) {
                Ok(store) => store.check_health().await,
                Err(e) => Err(e),
            },
        ),
    };
    match result {
        Ok(()) => {
            eprintln!("store: {what} answers");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("store: {what} does not answer: {e}");
            Ok(ExitCode::from(3))
        }
    }
}

fn hash_password() -> anyhow::Result<ExitCode> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("type the password, then Enter:");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).context("while reading the password")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("an empty password cannot be hashed");
    }
    let hash = mailwarrant::directory::ldif::password::hash(password.as_bytes())
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    for w in &config.warnings {
        tracing::warn!(key = %w.path, "{}", w.message);
    }
    // Signal handlers go in before anything can report "ready": a signal
    // that arrived earlier would take its default action (terminate).
    // SIGHUP is handled by `serve::run`; until then one is ignored.
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate()).context("while installing the SIGTERM handler")?;
    let _early_hup = signal(SignalKind::hangup()).context("while installing the SIGHUP handler")?;
    let app = App::build(config).await.context("while starting")?;
    let (trigger, shutdown) = serve::shutdown::channel();
    let mut server = tokio::spawn(serve::run(app, shutdown));
    tokio::select! {
        stop = wait_for_stop_signal(term) => stop?,
        // A front end that cannot start (a port in use) ends the process
        // with its reason, instead of leaving it up and deaf.
        ended = &mut server => {
            ended.context("while serving")?.context("while serving")?;
            return Ok(());
        }
    }
    trigger.fire();
    server.await.context("while stopping")??;
    Ok(())
}

async fn wait_for_stop_signal(mut term: tokio::signal::unix::Signal) -> anyhow::Result<()> {
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        r = tokio::signal::ctrl_c() => { r.context("while waiting for SIGINT")?; tracing::info!("SIGINT received") }
    }
    Ok(())
}

/// One line from standard input without its line ending, zeroized on drop.
fn read_secret_line(prompt: &str) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("{prompt}");
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    stdin.lock().read_line(&mut line).context("while reading standard input")?;
    let trimmed = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(trimmed);
    Ok(line)
}

async fn password_check(config: Config, login: &str, candidate: &str, json: bool) -> anyhow::Result<ExitCode> {
    use mailwarrant::password::{Outcome, PasswordService};
    let app = App::build(config).await.context("while opening the directory and the store")?;
    let service = PasswordService::new(
        app.identities.clone(),
        app.store.clone(),
        app.config.password.clone(),
        app.config.http.as_ref().map(|h| h.public_base_url.clone()).unwrap_or_default(),
        std::sync::Arc::new(mailwarrant::auth::Authenticator::new(
            app.identities.clone(),
            app.store.clone(),
            app.config.auth.clone(),
        )),
    );
    let Some(report) = service.admin_check(login, candidate, time::OffsetDateTime::now_utc()).await? else {
        eprintln!("{login}: not found in the directory");
        return Ok(ExitCode::from(2));
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("policy: {}", report.policy);
        for v in &report.verdicts {
            let tag = match v.outcome {
                Outcome::Pass => "PASS",
                Outcome::Fail => "FAIL",
                Outcome::NotChecked => "SKIP",
                Outcome::Info => "INFO",
            };
            let why = v.message.as_deref().map(|m| format!(" — {m}")).unwrap_or_default();
            println!("{tag}  {:<18} {}{why}", v.rule, v.requirement);
        }
        if let Some(s) = &report.strength {
            let advice: Vec<&str> =
                s.warning.iter().map(String::as_str).chain(s.suggestions.iter().map(String::as_str)).collect();
            println!(
                "strength: {}/4{}",
                s.score,
                if advice.is_empty() { String::new() } else { format!(" — {}", advice.join(" ")) }
            );
        }
        let failed = report.failures().count();
        println!(
            "{}",
            if failed == 0 {
                "verdict: accepted".to_owned()
            } else {
                format!("verdict: refused ({failed} rule(s) failed)")
            }
        );
    }
    Ok(if report.accepted() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn explain(
    config: Config,
    query: mailwarrant::policy_service::explain::Query,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let app = App::build(config).await.context("while opening the directory and the store")?;
    let Some(service) = app.policy else { bail!("the config has no [policy] section") };
    let now = time::OffsetDateTime::now_utc();
    match mailwarrant::policy_service::explain::answer(&service, &query, json, now).await {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}

async fn lookup(config: Config, who: &str) -> anyhow::Result<ExitCode> {
    let directory = mailwarrant::directory::open(&config.directory).await.context("while opening the directory")?;
    let found = match directory.lookup(who).await? {
        Some(identity) => Some(serde_json::to_string_pretty(&identity)?),
        None => match Address::parse(who) {
            Ok(address) => match directory.lookup_address(&address).await? {
                Some(AddressOwner::User { identity }) => Some(serde_json::to_string_pretty(&*identity)?),
                Some(owner @ AddressOwner::List { .. }) => Some(serde_json::to_string_pretty(&owner)?),
                None => None,
            },
            Err(_) => None,
        },
    };
    match found {
        Some(json) => {
            println!("{json}");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("{who}: not found in the directory");
            Ok(ExitCode::from(1))
        }
    }
}

/// `unlock LOGIN`: the same clear and audit as the API and the admin page,
/// with the directory and store of the config file.
async fn unlock(config: Config, login: &str) -> anyhow::Result<ExitCode> {
    use mailwarrant::auth::unlock::{self, Surface};
    use mailwarrant::auth::Authenticator;

    let login = login.trim();
    if login.is_empty() || login.len() > mailwarrant::auth::MAX_LOGIN_LEN || login.chars().any(char::is_control) {
        bail!("a login is 1 to {} printable characters", mailwarrant::auth::MAX_LOGIN_LEN);
    }
    let directory = mailwarrant::directory::open(&config.directory).await.context("while opening the directory")?;
    let store = serve::open_store(&config.store).context("while opening the store")?;
    let identities = mailwarrant::identity::IdentityCache::new(directory, config.identity.clone());
    let auth = Authenticator::new(identities, store, config.auth.clone());
    let done = match unlock::unlock(&auth, login, &format!("cli:{}", operator()), Surface::Cli).await {
        Ok(done) => done,
        Err(e) => {
            eprintln!("store: {e}; nothing was unlocked");
            return Ok(ExitCode::from(3));
        }
    };
    if done.budget_live {
        println!("{}: failure budget cleared", done.login);
    } else {
        println!("{}: no failures counted; nothing to clear", done.login);
    }
    if matches!(config.store, mailwarrant::config::StoreSettings::Sqlite { .. }) {
        eprintln!(
            "note: with the SQLite store a running `mailwarrant serve` keeps its counters in memory and does not \
             see this; unlock through POST /v1/identities/{{login}}/unlock or the admin page while it runs"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Who runs the command, for the audit trail: the user behind `sudo`, else
/// the login name, else the numeric uid.
fn operator() -> String {
    for var in ["SUDO_USER", "USER", "LOGNAME"] {
        if let Some(name) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
            return name;
        }
    }
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Uid:").and_then(|u| u.split_whitespace().next().map(str::to_owned)))
        })
        .map(|uid| format!("uid {uid}"))
        .unwrap_or_else(|| "unknown".into())
}

fn parse_instant(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|e| e.to_string())
}

async fn remind(
    config: Config,
    dry_run: bool,
    json: bool,
    now: Option<time::OffsetDateTime>,
) -> anyhow::Result<ExitCode> {
    use mailwarrant::reminders::{Job, Status};

    let Some(settings) = config.reminders.clone() else {
        bail!("{}: no [reminders] section; add one to send reminders", config.file.display());
    };
    let directory = mailwarrant::directory::open(&config.directory).await.context("while opening the directory")?;
    let store = serve::open_store(&config.store).context("while opening the store")?;
    let mailer = match (&config.mailer, dry_run) {
        (Some(m), false) => Some(mailwarrant::mailer::Mailer::new(m).context("while setting up the mailer")?),
        _ => None,
    };
    let job = Job { directory: &*directory, store: &*store, settings: &settings, mailer: mailer.as_ref() };
    let report = job.run(now.unwrap_or_else(time::OffsetDateTime::now_utc)).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{:<20} {:<32} {:<9} {:>9}  {:<17} STATUS", "LOGIN", "ADDRESS", "STAGE", "DAYS LEFT", "EXPIRES");
        for o in &report.outcomes {
            let stage = match o.mail.stage {
                mailwarrant::reminders::Stage::Warning(d) => format!("{d}d"),
                mailwarrant::reminders::Stage::Expired => "expired".into(),
            };
            let status = match &o.status {
                Status::WouldSend => "would send".to_owned(),
                Status::Sent => "sent".to_owned(),
                Status::AlreadySent => "already sent".to_owned(),
                Status::Failed(e) => format!("FAILED: {e}"),
            };
            println!(
                "{:<20} {:<32} {:<9} {:>9}  {:<17} {status}",
                o.mail.login, o.mail.address, stage, o.mail.days_left, o.expires_on
            );
        }
        println!(
            "{} users scanned, {} due: {} sent, {} would send, {} already sent, {} failed",
            report.users_scanned,
            report.outcomes.len(),
            report.count(&Status::Sent),
            report.count(&Status::WouldSend),
            report.count(&Status::AlreadySent),
            report.failed()
        );
    }
    Ok(if report.failed() > 0 { ExitCode::from(3) } else { ExitCode::SUCCESS })
}
