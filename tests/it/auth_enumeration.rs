//! docs/testing.md S3 (user enumeration): unknown user, wrong password, locked,
//! disabled and expired accounts (each with a wrong password) must read the
//! same on the wire and take the same time, with the failure-delay floor
//! on. Trials run interleaved and concurrently (the delay holds no
//! worker), each from its own client address; the latency distributions
//! are compared with a two-sample Kolmogorov–Smirnov test.
//!
//! `MAILWARRANT_S3_TRIALS` sets the trials per category (default 300; the
//! a long run uses 1,000 or 10,000).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailwarrant::testkit::dovecot_client::{Answer, DovecotClient};
use rand::seq::SliceRandom;
use tokio::sync::Semaphore;

use crate::auth_stack::{demo_ldif_directory, Stack};

/// (category, login or login prefix); each trial has its own wrong password.
const CATEGORIES: [(&str, &str); 5] =
    [("unknown", "nobody"), ("wrong", "alice"), ("locked", "frank"), ("disabled", "grace"), ("expired", "erin")];
const FLOOR: Duration = Duration::from_millis(1500);

/// Two-sample KS statistic and its asymptotic p-value (Numerical Recipes'
/// `probks` with the Stephens correction).
fn ks(a: &mut [f64], b: &mut [f64]) -> (f64, f64) {
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0, 0, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    let ne = (a.len() * b.len()) as f64 / (a.len() + b.len()) as f64;
    let lambda = (ne.sqrt() + 0.12 + 0.11 / ne.sqrt()) * d;
    let mut p = 0.0;
    for k in 1..=100 {
        let term = 2.0 * (-1f64).powi(k - 1) * (-2.0 * f64::from(k * k) * lambda * lambda).exp();
        p += term;
        if term.abs() < 1e-10 {
            break;
        }
    }
    (d, p.clamp(0.0, 1.0))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn auth_failures_are_indistinguishable_by_bytes_and_time() {
    let trials: usize = std::env::var("MAILWARRANT_S3_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let stack = Stack::start(
        &demo_ldif_directory(),
        &format!(
            "failure_delay = \"{}ms\"\n[auth.throttle]\nper_login = 1000000\nper_client = 1000000\n",
            FLOOR.as_millis()
        ),
    );
    let address = SocketAddr::from(([127, 0, 0, 1], stack.dovecot_port));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let results = rt.block_on(async {
        // 50 at a time: every trial costs an Argon2 check (a real one, or
        // the decoy for the unknown, locked and disabled logins), and at
        // 100 at a time the two hash threads of a 2-core machine ran at
        // their limit, so answers spread over the scheduler's noise past
        // the floor and the comparison failed on noise.
        let slots = Arc::new(Semaphore::new(50));
        // In a random order, so that no category always follows the same
        // other one through the slots (and its load).
        let mut order: Vec<(usize, usize)> =
            (0..trials).flat_map(|t| (0..CATEGORIES.len()).map(move |c| (t, c))).collect();
        order.shuffle(&mut rand::rng());
        let mut tasks = Vec::new();
        for (t, c) in order {
            let slots = slots.clone();
            let login = CATEGORIES[c].1;
            let login = if c == 0 { format!("{login}{t}") } else { login.to_owned() };
            let rip = IpAddr::from([127, 20 + c as u8, (t / 250) as u8, (t % 250) as u8 + 1]);
            tasks.push(tokio::spawn(async move {
                let _slot = slots.acquire_owned().await.unwrap();
                let mut client = DovecotClient::connect(address).await.expect("handshake");
                let started = Instant::now();
                let answer = client.plain(&login, &format!("Wrong-{t}-Password!"), rip).await.unwrap();
                (c, login, answer, started.elapsed())
            }));
        }
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.unwrap());
        }
        out
    });

    let mut times: Vec<Vec<f64>> = vec![Vec::new(); CATEGORIES.len()];
    for (c, login, answer, elapsed) in results {
        let Answer::Fail { line } = &answer else { panic!("{login}: {answer:?}") };
        // The bytes after the request id, with the echoed login made generic.
        let rest = line.split_once('\t').and_then(|(_, r)| r.split_once('\t')).map(|(_, r)| r).unwrap_or_default();
        assert_eq!(
            rest.replace(&format!("user={login}"), "user=LOGIN"),
            "user=LOGIN\treason=Authentication failed",
            "{}: {line}",
            CATEGORIES[c].0
        );
        assert!(
            elapsed >= FLOOR - Duration::from_millis(5),
            "{} answered before the floor: {elapsed:?}",
            CATEGORIES[c].0
        );
        times[c].push(elapsed.as_secs_f64() * 1000.0);
    }
    let mut reference = times[1].clone();
    let reference_median = median(&mut reference);
    for (c, (name, _)) in CATEGORIES.iter().enumerate().filter(|(c, _)| *c != 1) {
        let mut other = times[c].clone();
        let signed = median(&mut other) - reference_median;
        let gap = signed.abs();
        let (d, p) = ks(&mut reference.clone(), &mut other);
        // On a quiet machine every answer lands on the floor and the gap is
        // ~0. On a loaded one answers spread over seconds and a median is
        // only known to within its standard error (≈ 0.93 IQR / √n); a gap
        // inside three standard errors of the difference is noise, not a
        // signal an attacker could use.
        let noise =
            3.0 * std::f64::consts::SQRT_2 * 0.93 * (iqr(&reference) + iqr(&other)) / 2.0 / (trials as f64).sqrt();
        eprintln!(
            "S3 {name} vs wrong password: median gap {signed:+.2} ms (noise bound {noise:.2} ms), KS D = {d:.3}, p = {p:.3} ({trials} trials each)"
        );
        assert!(gap < noise.max(5.0), "{name}: median latency differs by {gap:.2} ms (noise {noise:.2} ms)");
        assert!(p > 0.01, "{name}: latency distributions differ (KS D = {d:.3}, p = {p:.4})");
    }
}

/// Interquartile range of sorted samples.
fn iqr(sorted: &[f64]) -> f64 {
    sorted[sorted.len() * 3 / 4] - sorted[sorted.len() / 4]
}

#[test]
fn the_ks_test_tells_shifted_samples_apart() {
    let mut a: Vec<f64> = (0..300).map(|i| 1500.0 + f64::from(i % 17)).collect();
    let mut same: Vec<f64> = (0..300).map(|i| 1500.0 + f64::from((i * 7) % 17)).collect();
    let mut shifted: Vec<f64> = (0..300).map(|i| 1508.0 + f64::from(i % 17)).collect();
    assert!(ks(&mut a.clone(), &mut same).1 > 0.5);
    assert!(ks(&mut a, &mut shifted).1 < 0.001);
}

/// Through the throttle, attempt by attempt, on the Dovecot auth and the
/// saslauthd front ends: a known login (password not cached), an unknown
/// one, a locked and a disabled account answer with the same bytes at the
/// same step, both for one wrong password repeated and for many different
/// ones, up to and past the point where the answer becomes "try later".
#[test]
fn throttled_states_read_the_same_on_the_wire() {
    use std::io::{Read, Write};

    use mailwarrant::protocols::saslauthd::codec::encode_request;

    let stack = Stack::start(
        &demo_ldif_directory(),
        "failure_delay = \"10ms\"\n[auth.throttle]\nper_login = 6\nper_login_client = 4\nper_client = 1000\n",
    );
    let address = SocketAddr::from(([127, 0, 0, 1], stack.dovecot_port));
    let passwords: Vec<String> =
        (0..10).map(|_| "Wrong-Password-0".to_owned()).chain((1..=10).map(|i| format!("Wrong-Password-{i}"))).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let logins = ["bob", "nobody", "frank", "grace"];
    let mut dovecot = Vec::new();
    for (n, login) in logins.iter().enumerate() {
        let rip = IpAddr::from([127, 0, 9, n as u8 + 1]);
        let seen: Vec<String> = rt.block_on(async {
            let mut out = Vec::new();
            let mut c = DovecotClient::connect(address).await.unwrap();
            for p in &passwords {
                let answer = c.plain(login, p, rip).await.unwrap();
                if answer == Answer::Closed {
                    c = DovecotClient::connect(address).await.unwrap();
                }
                // The reply echoes the typed login and the request id.
                let text = format!("{answer:?}").replace(login, "LOGIN");
                out.push(text.split("\\t").filter(|f| f.parse::<u32>().is_err()).collect::<Vec<_>>().join("\t"));
            }
            out
        });
        dovecot.push((login, seen));
    }
    for (login, seen) in &dovecot[1..] {
        assert_eq!(seen, &dovecot[0].1, "Dovecot: {login} differs from {}", dovecot[0].0);
    }
    assert!(dovecot[0].1.iter().any(|a| a.contains("Closed")), "the budget was reached: {:?}", dovecot[0].1);
    assert!(dovecot[0].1.iter().any(|a| a.contains("Fail")), "{:?}", dovecot[0].1);

    // saslauthd carries no client address: only the login's budget counts.
    let mut saslauthd = Vec::new();
    for login in ["carol", "nobody2", "frank", "grace"] {
        let seen: Vec<Vec<u8>> = passwords
            .iter()
            .map(|p| {
                let mut s = std::os::unix::net::UnixStream::connect(&stack.saslauthd_socket).unwrap();
                s.write_all(&encode_request(&[login.as_bytes(), p.as_bytes(), b"smtp", b""])).unwrap();
                let mut reply = Vec::new();
                s.read_to_end(&mut reply).unwrap();
                reply
            })
            .collect();
        saslauthd.push((login, seen));
    }
    for (login, seen) in &saslauthd[1..] {
        assert_eq!(seen, &saslauthd[0].1, "saslauthd: {login} differs from {}", saslauthd[0].0);
    }
    let distinct: std::collections::HashSet<_> = saslauthd[0].1.iter().collect();
    assert_eq!(distinct.len(), 2, "a refusal, then a try-later text: {:?}", saslauthd[0].1);
}
