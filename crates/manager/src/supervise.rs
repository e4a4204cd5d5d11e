//! Supervision of the manager's long-running loops (orchestration, node monitor): a loop that
//! panics or returns before shutdown is logged and started again with a back-off, so a bug
//! in one pass never leaves a leader that no longer orchestrates. Owns no state of the loops:
//! each restart builds its loop afresh (they are idempotent reconcilers).

use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// First and longest pause before a failed loop starts again.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Runs the loop `make` builds until `shutdown` turns true, restarting it whenever it panics
/// or ends early. Returns the supervisor's handle.
pub fn spawn<F, Fut>(
    name: &'static str,
    mut make: F,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut pause = BACKOFF.0;
        loop {
            let outcome = tokio::spawn(make()).await;
            if *shutdown.borrow() {
                return;
            }
            match outcome {
                Ok(()) => tracing::error!(task = name, "loop ended before shutdown; restarting it"),
                Err(e) if e.is_panic() => {
                    let p = e.into_panic();
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "(no message)".into());
                    tracing::error!(task = name, panic = %msg, "loop panicked; restarting it");
                }
                // Cancelled: the runtime is shutting down.
                Err(_) => return,
            }
            restarts_inc();
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(BACKOFF.1);
        }
    })
}

static RESTARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn restarts_inc() {
    RESTARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// How many times supervised loops were restarted in this process (a metric).
pub fn restarts() -> u64 {
    RESTARTS.load(std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_panicking_loop_is_restarted_until_shutdown() {
        let runs = Arc::new(AtomicU32::new(0));
        let (tx, rx) = watch::channel(false);
        let r = runs.clone();
        let rx_loop = rx.clone();
        let h = spawn(
            "test",
            move || {
                let n = r.fetch_add(1, Ordering::SeqCst);
                let mut rx = rx_loop.clone();
                async move {
                    if n < 2 {
                        panic!("pass {n} failed");
                    }
                    // The third run behaves: it runs until shutdown.
                    let _ = rx.changed().await;
                }
            },
            rx,
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "loop was not restarted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .expect("supervisor stops at shutdown")
            .unwrap();
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "a clean shutdown is not restarted"
        );
    }
}
