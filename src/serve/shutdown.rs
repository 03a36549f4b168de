//! A shutdown signal every task can wait on, and the drain that follows.
//!
//! One [`ShutdownTrigger`] fires; any number of [`Shutdown`] clones see
//! it. Listeners stop accepting at once; connections finish the request
//! they are on and then close.

use tokio::sync::watch;

/// Fires the shutdown; dropping it fires too, so a panicking owner still
/// stops the service.
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Cheap to clone; `wait` resolves once the trigger fires.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    pub async fn wait(&mut self) {
        // An error means the trigger is gone, which is also a shutdown.
        let _ = self.0.wait_for(|fired| *fired).await;
    }
}
