//! Docker's engine on this machine as a client of the cluster registry: the cluster CA in
//! `/etc/docker/certs.d/<registry>/`, a `docker login` with a login token into a private
//! config directory, and the removal of both (and of the images pulled) when a test ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use swarm_testkit::Cluster;

/// A skopeo/Docker cert dir with the cluster CA and, with `with_client`, an admin client
/// certificate (mutual TLS), from node `i`'s `cluster ca client-bundle`.
pub fn cert_dir(c: &Cluster, i: usize, root: &Path, with_client: bool) -> PathBuf {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let bundle = root.join(format!("bundle-{i}-{n}"));
    c.ctl(
        i,
        &["cluster", "ca", "client-bundle", bundle.to_str().unwrap()],
    )
    .unwrap();
    let dir = root.join(format!("certs-{i}-{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(bundle.join("ca.pem"), dir.join("ca.crt")).unwrap();
    if with_client {
        std::fs::copy(bundle.join("cert.pem"), dir.join("client.cert")).unwrap();
        std::fs::copy(bundle.join("key.pem"), dir.join("client.key")).unwrap();
    }
    dir
}

/// Docker logged in to node `i`'s registry; undone on drop.
pub struct DockerLogin {
    /// The registry's address (`host:port`).
    pub registry: String,
    /// `docker --config` of this login.
    pub config: PathBuf,
    certs_d: PathBuf,
    /// Images to remove from Docker's store at the end.
    pub images: Vec<String>,
}

impl DockerLogin {
    /// Trusts the cluster CA for node `i`'s registry and logs in with a login token
    /// (`--push` when `push`); `tmp` holds the config directory.
    pub fn new(c: &Cluster, i: usize, tmp: &Path, push: bool) -> DockerLogin {
        let registry = c.nodes[i].registry.clone();
        let certs = cert_dir(c, i, tmp, false);
        let certs_d = PathBuf::from("/etc/docker/certs.d").join(&registry);
        std::fs::create_dir_all(&certs_d).unwrap();
        std::fs::copy(certs.join("ca.crt"), certs_d.join("ca.crt")).unwrap();
        let config = tmp.join(format!("docker-config-{i}"));
        std::fs::create_dir_all(&config).unwrap();
        let login = DockerLogin {
            registry,
            config,
            certs_d,
            images: Vec::new(),
        };
        let mut args = vec!["registry", "login-token", "--expires", "10m"];
        if push {
            args.push("--push");
        }
        let token = c.ctl(i, &args).unwrap();
        let mut child = Command::new("docker")
            .arg("--config")
            .arg(&login.config)
            .args(["login", &login.registry, "-u", "swarm", "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker login (Docker is on every CI machine)");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(token.trim().as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "docker login: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        login
    }

    /// `docker --config <this login> args…`; its stdout, failing the test on an error.
    pub fn docker(&self, args: &[&str]) -> String {
        let o = Command::new("docker")
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run docker");
        assert!(
            o.status.success(),
            "docker {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for DockerLogin {
    fn drop(&mut self) {
        for i in &self.images {
            let _ = Command::new("docker").args(["rmi", "-f", i]).output();
        }
        let _ = Command::new("docker")
            .arg("--config")
            .arg(&self.config)
            .args(["logout", &self.registry])
            .output();
        let _ = std::fs::remove_dir_all(&self.certs_d);
    }
}
