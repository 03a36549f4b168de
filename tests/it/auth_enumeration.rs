//! RELIABILITY S3 (user enumeration): unknown user, wrong password, locked,
//! disabled and expired accounts (each with a wrong password) must read the
//! same on the wire and take the same time, with the failure-delay floor
//! on. Trials run interleaved and concurrently (the delay holds no
//! worker), each from its own client address; the latency distributions
//! are compared with a two-sample Kolmogorov–Smirnov test.
//!
//! `MAILWARRANT_S3_TRIALS` sets the trials per category (default 300; the
//! long run of RELIABILITY.md uses 1,000 or 10,000).

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
        order.shuffle(&mut rand::thread_rng());
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
