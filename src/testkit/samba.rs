//! A throwaway Samba Active Directory domain controller for the AD tests:
//! provisioned into a temp folder (`samba-tool domain provision`), started
//! in the foreground (`samba -i`), seeded with the demo cast of docs/design.md (AD
//! groups nested), once per test process.
//!
//! Why one per process: Samba's ports are fixed (LDAP 389, LDAPS 636 on
//! 127.0.0.1), so two DCs cannot run at once. [`shared`] provisions on
//! first use and every AD test reuses it; tests that write (password
//! changes) use users of their own.
//!
//! How it stops: a static is never dropped, so no `Drop` can stop it.
//! Instead samba runs with `-i`, where it ends itself at EOF on stdin, and
//! its stdin is a pipe whose write end only this process holds. When the
//! test process exits for any reason (end of run, panic, SIGKILL), the
//! kernel closes the pipe and samba stops, children included. Its temp
//! folder is removed by the next run (folders of dead processes).
//!
//! TLS: a CA and a server certificate for `127.0.0.1`/`localhost` are made
//! with openssl and configured in smb.conf, so the tests verify
//! certificates the way production does (`ca_file`), rather than turning
//! verification off for Samba's self-signed, SAN-less certificate.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;

use super::{require_packages, wait_until};
use crate::config::{Config, DirectorySettings, LdapSettings};

pub const REALM: &str = "CORP.EXAMPLE.COM";
pub const UPN_SUFFIX: &str = "corp.example.com";
pub const DOMAIN: &str = "CORP";
pub const BASE_DN: &str = "DC=corp,DC=example,DC=com";
pub const PEOPLE_DN: &str = "OU=people,DC=corp,DC=example,DC=com";
pub const GROUPS_DN: &str = "OU=groups,DC=corp,DC=example,DC=com";
pub const ADMIN_UPN: &str = "Administrator@corp.example.com";
pub const ADMIN_PASSWORD: &str = "Admin-Demo-2026!";
pub const SERVICE_DN: &str = "CN=mailwarrant,OU=services,DC=corp,DC=example,DC=com";
pub const SERVICE_PASSWORD: &str = "Mailwarrant-Demo-2026!";
/// The domain's lockout threshold (docs/testing.md S4: 10 on the test DC).
pub const LOCKOUT_THRESHOLD: u32 = 10;
/// Samba's fixed ports.
pub const LDAP_PORT: u16 = 389;
pub const LDAPS_PORT: u16 = 636;

/// Provisioning plus start on a loaded 2-core machine.
const START_DEADLINE: Duration = Duration::from_secs(240);
/// How long to wait for another run's DC to release the fixed ports.
const PORTS_FREE_DEADLINE: Duration = Duration::from_secs(120);
/// Prefix of the instance folders under the temp dir.
const DIR_PREFIX: &str = "mw-samba-";

/// How a seeded user starts out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedState {
    Active,
    /// `pwdLastSet` backdated past the domain's maximum age.
    Expired,
    /// Locked by [`LOCKOUT_THRESHOLD`] wrong binds.
    Locked,
    /// `userAccountControl` ACCOUNTDISABLE.
    Disabled,
    /// `pwdLastSet = 0`.
    MustChange,
}

/// A seeded user: `login` is the sAMAccountName, `cn` the RDN.
#[derive(Clone, Copy, Debug)]
pub struct SeedUser {
    pub login: &'static str,
    pub cn: &'static str,
    pub groups: &'static [&'static str],
    pub aliases: &'static [&'static str],
    pub state: SeedState,
}

/// The demo cast of docs/design.md (alice … heidi), plus users that tests which
/// write own: ivan, judy, kim, mona, olga, pete, quinn, ruth (password
/// changes), lars, victor and wendy (failure counts).
pub const USERS: &[SeedUser] = &[
    SeedUser {
        login: "alice",
        cn: "Alice Smith",
        groups: &["sales"],
        aliases: &["a.smith@example.com"],
        state: SeedState::Active,
    },
    SeedUser { login: "bob", cn: "Bob Jones", groups: &["staff"], aliases: &[], state: SeedState::Active },
    SeedUser { login: "carol", cn: "Carol White", groups: &["interns"], aliases: &[], state: SeedState::Active },
    SeedUser {
        login: "dave",
        cn: "Dave Brown",
        groups: &["it-admins", "staff", "helpdesk"],
        aliases: &[],
        state: SeedState::Active,
    },
    SeedUser { login: "erin", cn: "Erin Green", groups: &["staff"], aliases: &[], state: SeedState::Expired },
    SeedUser { login: "frank", cn: "Frank Black", groups: &["staff"], aliases: &[], state: SeedState::Locked },
    SeedUser { login: "grace", cn: "Grace Hall", groups: &["staff"], aliases: &[], state: SeedState::Disabled },
    SeedUser { login: "heidi", cn: "Heidi Klein", groups: &["staff"], aliases: &[], state: SeedState::MustChange },
    SeedUser { login: "ivan", cn: "Ivan Petrov", groups: &["staff"], aliases: &[], state: SeedState::Active },
    SeedUser { login: "judy", cn: "Judy Moss", groups: &["staff"], aliases: &[], state: SeedState::Expired },
    SeedUser { login: "kim", cn: "Kim Lee", groups: &["staff"], aliases: &[], state: SeedState::MustChange },
    SeedUser { login: "lars", cn: "Lars Berg", groups: &["staff"], aliases: &[], state: SeedState::Active },
    SeedUser { login: "wendy", cn: "Wendy Cole", groups: &["staff"], aliases: &[], state: SeedState::Active },
    SeedUser { login: "mona", cn: "Mona Diaz", groups: &["staff"], aliases: &[], state: SeedState::MustChange },
    SeedUser { login: "olga", cn: "Olga Novak", groups: &["staff"], aliases: &[], state: SeedState::Active },
    SeedUser { login: "pete", cn: "Pete Quinn", groups: &["staff"], aliases: &[], state: SeedState::Expired },
    SeedUser { login: "quinn", cn: "Quinn Avery", groups: &["staff"], aliases: &[], state: SeedState::Active },
    SeedUser { login: "ruth", cn: "Ruth Olsen", groups: &["staff"], aliases: &[], state: SeedState::Expired },
    SeedUser { login: "victor", cn: "Victor Hale", groups: &["staff"], aliases: &[], state: SeedState::Active },
];

/// Groups: (name, mail, member groups), members before the groups that
/// contain them. Users join through [`SeedUser::groups`]. `sales` is nested
/// in `staff`, `staff` in the list `all-staff`.
pub const GROUPS: &[(&str, Option<&str>, &[&str])] = &[
    ("sales", None, &[]),
    ("interns", None, &[]),
    ("it-admins", None, &[]),
    ("helpdesk", Some("helpdesk@example.com"), &[]),
    ("staff", None, &["sales"]),
    ("all-staff", Some("all-staff@example.com"), &["staff"]),
];

/// The seed password of a user: `Alice-Demo-2026!` for alice.
pub fn password_of(login: &str) -> String {
    let mut chars = login.chars();
    let first = chars.next().map(|c| c.to_uppercase().collect::<String>()).unwrap_or_default();
    format!("{first}{}-Demo-2026!", chars.as_str())
}

pub fn user_dn(cn: &str) -> String {
    format!("CN={cn},{PEOPLE_DN}")
}

pub fn group_dn(name: &str) -> String {
    format!("CN={name},{GROUPS_DN}")
}

/// A running DC, seeded.
pub struct Samba {
    dir: PathBuf,
    /// Holds samba's stdin open; see the module doc.
    _child: Mutex<Child>,
}

/// The process-wide DC, provisioned by the first caller.
pub fn shared() -> Result<&'static Samba, String> {
    static SHARED: OnceLock<Result<Samba, String>> = OnceLock::new();
    SHARED.get_or_init(Samba::start).as_ref().map_err(Clone::clone)
}

impl Samba {
    fn start() -> Result<Samba, String> {
        require_packages(&[
            "samba",
            "samba-ad-provision",
            "samba-dsdb-modules",
            "samba-vfs-modules",
            "ldap-utils",
            "openssl",
        ])?;
        remove_stale_dirs();
        wait_for_free_ports()?;
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("tls")).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        make_certificates(&dir.join("tls"))?;
        provision(&dir)?;
        let log = fs::File::create(dir.join("samba.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new("/usr/sbin/samba")
            .args(["-i", "-s"])
            .arg(dir.join("etc/smb.conf"))
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start samba: {e}"))?;
        let ca = dir.join("tls/ca.pem");
        let addr = SocketAddr::from(([127, 0, 0, 1], LDAPS_PORT));
        let root_dse = ["-b", "", "-s", "base", "(objectClass=*)", "1.1"];
        let ready = wait_until(START_DEADLINE, || {
            matches!(child.try_wait(), Ok(Some(_)))
                || (TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                    && ldap_tool(&ca, "ldapsearch", &root_dse, None).is_ok())
        });
        let running = matches!(child.try_wait(), Ok(None));
        let samba = Samba { dir, _child: Mutex::new(child) };
        if !ready || !running {
            return Err(format!("samba did not start:\n{}", samba.log_tail()));
        }
        samba.seed()?;
        Ok(samba)
    }

    /// `ldaps://127.0.0.1:636`.
    pub fn url(&self) -> String {
        format!("ldaps://127.0.0.1:{LDAPS_PORT}")
    }

    /// The CA that signed the DC's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `[directory]` section mailwarrant would use for this DC.
    pub fn config_toml(&self) -> String {
        format!(
            "[directory]\nkind = \"ldap\"\n\n[directory.ldap]\nflavour = \"active_directory\"\nurls = [\"{url}\"]\n\
             ca_file = \"{ca}\"\nbind_dn = \"{SERVICE_DN}\"\nbind_password = \"{SERVICE_PASSWORD}\"\n\
             base_dn = \"{PEOPLE_DN}\"\ngroup_base_dn = \"{GROUPS_DN}\"\nsend_as_groups = [\"helpdesk\"]\n\
             connect_timeout = \"5s\"\noperation_timeout = \"15s\"\n",
            url = self.url(),
            ca = self.ca_file().display(),
        )
    }

    /// Validated settings for this DC, through the real config loader.
    pub fn ldap_settings(&self) -> LdapSettings {
        let config = Config::from_toml(&self.config_toml(), &self.dir, Path::new("samba-fixture.toml"))
            .expect("the fixture's config is valid");
        match config.directory {
            DirectorySettings::Ldap(s) => *s,
            DirectorySettings::Ldif(_) => unreachable!("the fixture config says kind = \"ldap\""),
        }
    }

    /// Applies LDIF (with `changetype`s) as the domain administrator.
    pub fn ldapmodify(&self, ldif: &str) -> Result<(), String> {
        let path = self.dir.join("change.ldif");
        fs::write(&path, ldif).map_err(|e| e.to_string())?;
        self.ldap_tool("ldapmodify", &["-D", ADMIN_UPN, "-w", ADMIN_PASSWORD, "-f"], Some(&path)).map(|_| ())
    }

    /// One simple bind (and a read of the root DSE); true when it
    /// succeeded. Not ldapwhoami: Samba lacks the Who Am I operation.
    pub fn bind_succeeds(&self, who: &str, password: &str) -> bool {
        self.ldap_tool(
            "ldapsearch",
            &["-D", who, "-w", password, "-b", "", "-s", "base", "(objectClass=*)", "1.1"],
            None,
        )
        .is_ok()
    }

    /// The first value of an attribute of an entry, read as the domain
    /// administrator (e.g. `badPwdCount`, which the service account may
    /// not see).
    pub fn read_attribute(&self, dn: &str, attribute: &str) -> Result<Option<String>, String> {
        let out = self.ldap_tool(
            "ldapsearch",
            &[
                "-LLL",
                "-o",
                "ldif_wrap=no",
                "-D",
                ADMIN_UPN,
                "-w",
                ADMIN_PASSWORD,
                "-b",
                dn,
                "-s",
                "base",
                "(objectClass=*)",
                attribute,
            ],
            None,
        )?;
        let prefix = format!("{attribute}: ");
        Ok(out.lines().find_map(|l| l.strip_prefix(&prefix)).map(str::to_owned))
    }

    /// The last lines samba logged.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.join("samba.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(30).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn ldap_tool(&self, tool: &str, args: &[&str], file: Option<&Path>) -> Result<String, String> {
        ldap_tool(&self.ca_file(), tool, args, file)
    }

    fn seed(&self) -> Result<(), String> {
        self.ldapmodify(&seed_ldif())?;
        let conf = self.dir.join("etc/smb.conf");
        let sam = self.dir.join("private/sam.ldb");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/samba/seed.py");
        let python = |args: &[&str]| {
            run(Command::new("/usr/bin/python3").arg(&script).arg(&conf).arg(&sam).args(args), "scripts/samba/seed.py")
        };
        // Changed 100 days ago: past the domain's default maximum age (42 days).
        let long_ago = time::OffsetDateTime::now_utc() - time::Duration::days(100);
        let ticks = crate::directory::ldap::filetime::from_datetime(long_ago).unwrap_or_default().to_string();
        for user in USERS.iter().filter(|u| u.state == SeedState::Expired) {
            python(&["expire", &user_dn(user.cn), &ticks])?;
        }
        python(&["grant-reset", PEOPLE_DN, SERVICE_DN])?;
        for user in USERS.iter().filter(|u| u.state == SeedState::Locked) {
            let upn = format!("{}@{UPN_SUFFIX}", user.login);
            for _ in 0..LOCKOUT_THRESHOLD {
                let _ = self.bind_succeeds(&upn, "Not-The-Password-1");
            }
        }
        Ok(())
    }
}

/// The seed as LDIF: OUs, users, groups, domain policy.
fn seed_ldif() -> String {
    let b64 = |p: &str| {
        let bytes: Vec<u8> = format!("\"{p}\"").encode_utf16().flat_map(u16::to_le_bytes).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let mut out = String::new();
    for ou in ["people", "groups", "services"] {
        out += &format!("dn: OU={ou},{BASE_DN}\nchangetype: add\nobjectClass: organizationalUnit\n\n");
    }
    out += &format!(
        "dn: {SERVICE_DN}\nchangetype: add\nobjectClass: user\nsAMAccountName: mailwarrant\n\
         unicodePwd:: {}\nuserAccountControl: 66048\n\n",
        b64(SERVICE_PASSWORD)
    );
    for u in USERS {
        let (first, last) = u.cn.split_once(' ').unwrap_or((u.cn, ""));
        out += &format!(
            "dn: {dn}\nchangetype: add\nobjectClass: user\nsAMAccountName: {login}\n\
             userPrincipalName: {login}@{UPN_SUFFIX}\ngivenName: {first}\nsn: {last}\ndisplayName: {cn}\n\
             mail: {login}@example.com\nproxyAddresses: SMTP:{login}@example.com\n",
            dn = user_dn(u.cn),
            login = u.login,
            cn = u.cn,
        );
        for alias in u.aliases {
            out += &format!("proxyAddresses: smtp:{alias}\n");
        }
        // A non-SMTP address type, to be skipped.
        out += &format!("proxyAddresses: SIP:{}@example.com\n", u.login);
        let uac = if u.state == SeedState::Disabled { 514 } else { 512 };
        out += &format!("unicodePwd:: {}\nuserAccountControl: {uac}\n", b64(&password_of(u.login)));
        if u.state == SeedState::MustChange {
            out += "pwdLastSet: 0\n";
        }
        out += "\n";
    }
    for (name, mail, member_groups) in GROUPS {
        out += &format!("dn: {}\nchangetype: add\nobjectClass: group\nsAMAccountName: {name}\n", group_dn(name));
        if let Some(m) = mail {
            out += &format!("mail: {m}\n");
        }
        for u in USERS.iter().filter(|u| u.groups.contains(name)) {
            out += &format!("member: {}\n", user_dn(u.cn));
        }
        for g in *member_groups {
            out += &format!("member: {}\n", group_dn(g));
        }
        out += "\n";
    }
    out + &format!(
        "dn: {BASE_DN}\nchangetype: modify\nreplace: lockoutThreshold\nlockoutThreshold: {LOCKOUT_THRESHOLD}\n-\n\
         replace: minPwdAge\nminPwdAge: 0\n-\n"
    )
}

/// Runs an OpenLDAP client tool against the DC over LDAPS, verifying its certificate.
fn ldap_tool(ca: &Path, tool: &str, args: &[&str], file: Option<&Path>) -> Result<String, String> {
    let mut command = Command::new(format!("/usr/bin/{tool}"));
    command.env("LDAPTLS_CACERT", ca).args(["-x", "-H", &format!("ldaps://127.0.0.1:{LDAPS_PORT}")]).args(args);
    if let Some(f) = file {
        command.arg(f);
    }
    run(&mut command, tool)
}

fn run(command: &mut Command, what: &str) -> Result<String, String> {
    let out = command.stdin(Stdio::null()).output().map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A CA and a server certificate for 127.0.0.1 and localhost (2 days).
fn make_certificates(tls: &Path) -> Result<(), String> {
    let openssl = |args: &[&str]| run(Command::new("/usr/bin/openssl").current_dir(tls).args(args), "openssl");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=mailwarrant test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "cert.csr",
    ])?;
    fs::write(
        tls.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| e.to_string())?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "cert.pem",
        "-extfile",
        "ext.cnf",
    ])?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Samba refuses a key file others can read.
        fs::set_permissions(tls.join("key.pem"), fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn provision(dir: &Path) -> Result<(), String> {
    let tls = dir.join("tls");
    let opt = |k: &str, v: &Path| format!("--option={k}={}", v.display());
    run(
        Command::new("/usr/bin/samba-tool")
            .args(["domain", "provision", "--server-role=dc", "--dns-backend=NONE"])
            .arg(format!("--targetdir={}", dir.display()))
            .arg(format!("--realm={REALM}"))
            .arg(format!("--domain={DOMAIN}"))
            .arg(format!("--adminpass={ADMIN_PASSWORD}"))
            .args(["--option=interfaces=lo", "--option=bind interfaces only=yes"])
            // LDAP only: no winbindd (not installed), no SMB, no KDC.
            .arg("--option=server services=ldap")
            .arg("--option=tls enabled=yes")
            .arg(opt("tls keyfile", &tls.join("key.pem")))
            .arg(opt("tls certfile", &tls.join("cert.pem")))
            .arg(opt("tls cafile", &tls.join("ca.pem"))),
        "samba-tool domain provision",
    )
    .map(|_| ())?;
    // An old password keeps working for simple binds for 60 minutes by
    // default; the tests check that a changed one is gone at once. (The
    // provision does not write this option, so it is added here.)
    let conf = dir.join("etc/smb.conf");
    let text = fs::read_to_string(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
    let text = text.replacen("[global]\n", "[global]\n\told password allowed period = 0\n", 1);
    fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))
}

/// Removes folders left by earlier runs whose process is gone.
fn remove_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(DIR_PREFIX) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Waits for 389 and 636 to be free (another run's DC may be ending), and
/// fails with a clear message if they stay taken.
fn wait_for_free_ports() -> Result<(), String> {
    let taken = || {
        [LDAP_PORT, LDAPS_PORT]
            .into_iter()
            .filter(|p| {
                TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], *p)), Duration::from_millis(200)).is_ok()
            })
            .collect::<Vec<_>>()
    };
    if wait_until(PORTS_FREE_DEADLINE, || taken().is_empty()) {
        Ok(())
    } else {
        Err(format!(
            "something already listens on 127.0.0.1 port(s) {:?}: Samba's LDAP ports are fixed, so the AD tests need \
             them free. Another test run's DC (it stops when that run ends), or a local slapd/samba: stop it \
             (`ss -ltnp | grep -E ':(389|636) '` names it)",
            taken()
        ))
    }
}
