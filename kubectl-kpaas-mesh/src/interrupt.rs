//! SIGINT and SIGTERM: the action under way finishes (a helm child runs in its own process
//! group, so a terminal's Ctrl-C does not cut it off mid-release), waits are abandoned, no
//! further action starts, and the command ends through its normal error path — so its Lease is
//! released — with what was done, what was not, and exit code 130 (SIGINT) or 143 (SIGTERM). A
//! second signal exits at once.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
use tokio::sync::Notify;

static SIGNAL: AtomicI32 = AtomicI32::new(0);
static NOTIFY: Notify = Notify::const_new();
static DONE: Mutex<Vec<String>> = Mutex::new(Vec::new());

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

fn name(sig: i32) -> &'static str {
    if sig == SIGTERM { "SIGTERM" } else { "SIGINT" }
}

/// The exit code for a run stopped by `sig` (128 + its number, as shells report it).
pub fn exit_code(sig: i32) -> u8 {
    (128 + sig) as u8
}

/// Listens for SIGINT and SIGTERM (call once, inside the runtime).
pub fn install() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::spawn(async move {
        loop {
            let sig = tokio::select! {
                _ = int.recv() => SIGINT,
                _ = term.recv() => SIGTERM,
            };
            if SIGNAL.swap(sig, Ordering::SeqCst) != 0 {
                eprintln!("{}: stopping now", name(sig));
                std::process::exit(i32::from(exit_code(sig)));
            }
            eprintln!(
                "{}: finishing the action under way, then stopping (again to stop at once)",
                name(sig)
            );
            NOTIFY.notify_waiters();
        }
    });
}

/// The signal received, if any.
pub fn received() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Records a finished action for the interruption report.
pub fn record(what: String) {
    DONE.lock().expect("done list").push(what);
}

fn stopped(sig: i32, while_doing: &str) -> String {
    let done = DONE.lock().expect("done list");
    let last = done
        .last()
        .map(|w| format!(", the last: {w}"))
        .unwrap_or_default();
    format!(
        "interrupted by {} {while_doing}: {} action(s) done{last}; nothing further was started. Run the same command again to finish (it plans from what the clusters hold)",
        name(sig),
        done.len()
    )
}

/// `Err` (one line) once a signal came: checked before each action.
pub fn check(next: &str) -> Result<(), String> {
    match received() {
        None => Ok(()),
        Some(sig) => Err(stopped(sig, &format!("before {next}"))),
    }
}

/// Runs `fut` unless a signal comes first (then it is dropped: waits are abandoned).
pub async fn abandonable<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    check(what)?;
    tokio::select! {
        r = fut => r,
        _ = NOTIFY.notified() => {
            Err(stopped(received().unwrap_or(SIGINT), &format!("while waiting for {what}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_shells() {
        assert_eq!(exit_code(SIGINT), 130);
        assert_eq!(exit_code(SIGTERM), 143);
        assert_eq!(name(SIGTERM), "SIGTERM");
        assert!(check("anything").is_ok(), "no signal, no stop");
    }
}
