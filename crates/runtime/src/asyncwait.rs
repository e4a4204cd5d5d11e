//! Waiting for container inits without a thread each (feature `tokio`). A pidfd becomes
//! readable when its process exits, so tokio's reactor (one epoll set per runtime) watches any
//! number of them; get the pidfd from [`crate::Runtime::init_pidfd`].

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Resolves when the process behind `pidfd` has exited (at once if it already has). Must be
/// called within a tokio runtime.
pub async fn exited(pidfd: OwnedFd) -> io::Result<()> {
    // SAFETY: tokio requires the fd to stay open and be the same file description for the
    // AsyncFd's whole life. `pidfd` is an owned, open descriptor moved into the AsyncFd, which
    // owns it until it is dropped (deregistering before the OwnedFd closes it); nothing else
    // holds it, so nothing can close or replace it meanwhile.
    let afd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }?;
    afd.readable().await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_when_the_process_exits_and_not_before() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let fd = crate::sys::pidfd_open(child.id() as i32).expect("pidfd_open");
        let wait = tokio::spawn(exited(fd));
        tokio::task::yield_now().await;
        assert!(!wait.is_finished(), "resolved while the process runs");
        child.kill().expect("kill");
        tokio::time::timeout(std::time::Duration::from_secs(10), wait)
            .await
            .expect("resolves after the exit")
            .expect("task")
            .expect("no error");
        child.wait().expect("reap");
    }
}
