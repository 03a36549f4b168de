//! Password hashes of the embedded directory are checked on a few
//! dedicated threads, not on tokio's blocking pool.
//!
//! Why: an Argon2 check needs its whole memory cost (19 MiB with the
//! defaults). Allocated per check on tokio's blocking pool, that memory
//! was not given back to the system: the saslauthd bad-input battery grew
//! the resident set by 130 to 250 MiB over 140 checks. Here one thread per
//! core each keeps one working buffer and reuses it, so memory is bounded
//! (cores × memory cost) and so is the CPU that guessing can take,
//! whatever arrives; checks queue in order instead.

use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use super::password::{self, Verdict};

/// Queued checks beyond which callers wait to enqueue.
const QUEUE: usize = 1024;

struct Job {
    stored: String,
    password: Zeroizing<Vec<u8>>,
    reply: oneshot::Sender<Verdict>,
}

static HASHER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();

fn hasher() -> &'static mpsc::Sender<Job> {
    HASHER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("mailwarrant-hash-{i}")).spawn(move || {
                // Argon2's working memory, reused by every check on this thread.
                let mut blocks = Vec::new();
                loop {
                    let job = rx.lock().unwrap_or_else(|e| e.into_inner()).blocking_recv();
                    let Some(job) = job else { return };
                    let _ = job.reply.send(password::verify_with(&job.stored, &job.password, &mut blocks));
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-hash thread");
            }
        }
        tx
    })
}

/// Checks `password` against `stored` on a hash thread. `None` when the
/// hash threads are gone (they never stop while the process runs).
pub async fn verify(stored: String, password: &[u8]) -> Option<Verdict> {
    let (reply, answer) = oneshot::channel();
    let job = Job { stored, password: Zeroizing::new(password.to_vec()), reply };
    hasher().send(job).await.ok()?;
    answer.await.ok()
}
