//! Password expiry reminders: mail-only users never see the directory's
//! own warnings, so mailwarrant writes to them before their SMTP login
//! stops working.
//!
//! `plan` decides who is due (pure); `run` sends each due mail once;
//! `schedule` runs the job daily inside `serve`, once across instances.

pub mod plan;
pub mod run;
pub mod schedule;

pub use plan::{Planned, Stage};
pub use run::{Job, Outcome, ReminderError, Report, Status};
