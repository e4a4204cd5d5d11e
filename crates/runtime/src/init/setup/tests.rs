//! P1's setup order, recorded without root.

use super::*;
use crate::spec::{ProcessSpec, RootfsSpec};

#[derive(Default)]
struct Recorder {
    calls: Vec<String>,
    fail: Option<&'static str>,
}

impl Recorder {
    fn call(&mut self, name: &'static str, args: String) -> Result<(), InitError> {
        self.calls.push(format!("{name}({args})"));
        if self.fail == Some(name) {
            return Err(InitError::Sys {
                what: name.into(),
                source: io::Error::from_raw_os_error(libc::EPERM),
            });
        }
        Ok(())
    }
}

impl SetupSys for Recorder {
    fn unshare(&mut self, flags: i32) -> Result<(), InitError> {
        let net = if flags & libc::CLONE_NEWNET != 0 {
            "+net"
        } else {
            ""
        };
        self.call("unshare", format!("mnt,uts,ipc,cgroup{net}"))
    }
    fn setsid(&mut self) {
        let _ = self.call("setsid", String::new());
    }
    fn join_new_session_keyring(&mut self) -> Result<(), InitError> {
        self.call("keyring", String::new())
    }
    fn write_sysctl(&mut self, key: &str, value: &str) -> Result<(), InitError> {
        self.call("sysctl", format!("{key}={value}"))
    }
    fn make_root_slave(&mut self) -> Result<(), InitError> {
        self.call("rslave", String::new())
    }
    fn mount_rootfs(
        &mut self,
        _spec: &ContainerSpec,
        _sd: &StateDir,
        idmap: Option<&mounts::Idmap>,
    ) -> Result<(), InitError> {
        let how = if idmap.is_some() { "idmapped" } else { "plain" };
        self.call("rootfs", how.into())
    }
    fn apply_mounts(
        &mut self,
        _rootfs: &Path,
        ops: &[mounts::MountOp],
        owner: Option<(u32, u32)>,
    ) -> Result<(), InitError> {
        self.call("mounts", format!("{} ops, owner {owner:?}", ops.len()))
    }
    fn sethostname(&mut self, name: &str) -> Result<(), InitError> {
        self.call("hostname", name.into())
    }
    fn loopback_up(&mut self) -> Result<(), InitError> {
        self.call("lo", String::new())
    }
    fn pivot(&mut self, _rootfs: &Path) -> Result<(), InitError> {
        self.call("pivot", String::new())
    }
    fn readonly_root(&mut self) -> Result<(), InitError> {
        self.call("readonly", String::new())
    }
}

fn spec() -> ContainerSpec {
    let mut s = ContainerSpec::new(
        "c1",
        RootfsSpec::Layers { lower: vec![] },
        ProcessSpec {
            args: vec!["true".into()],
            env: vec![],
            cwd: "/".into(),
            user: "0".into(),
        },
    );
    s.hostname = Some("web".into());
    s
}

fn names(r: &Recorder) -> Vec<&str> {
    r.calls
        .iter()
        .map(|c| c.split('(').next().unwrap())
        .collect()
}

#[test]
fn a_private_network_container_is_set_up_in_order() {
    let mut s = spec();
    s.options
        .sysctls
        .insert("net.core.somaxconn".into(), "512".into());
    let mut r = Recorder::default();
    enter_namespaces(&mut r, &s, false).unwrap();
    let sd = StateDir::new("/state/c1".into());
    assert_eq!(build_root(&mut r, &sd, &s, None).unwrap(), "web");
    assert_eq!(
        r.calls,
        [
            "unshare(mnt,uts,ipc,cgroup+net)",
            "setsid()",
            "keyring()",
            "sysctl(net.core.somaxconn=512)",
            "rslave()",
            "rootfs(plain)",
            format!("mounts({} ops, owner None)", mounts::plan(&s).len()).as_str(),
            "hostname(web)",
            "lo()",
            "pivot()",
        ]
    );
}

#[test]
fn host_network_keyring_and_read_only_root_change_what_runs() {
    let mut s = spec();
    s.network = NetworkMode::Host;
    s.options.no_new_keyring = true;
    s.readonly_rootfs = true;
    s.hostname = None;
    let mut r = Recorder::default();
    enter_namespaces(&mut r, &s, true).unwrap();
    let host = build_root(&mut r, &StateDir::new("/state/c1".into()), &s, None).unwrap();
    assert_eq!(host, "c1", "the id's first 12 characters");
    assert_eq!(
        names(&r),
        ["unshare", "setsid", "rslave", "rootfs", "mounts", "hostname", "pivot", "readonly"]
    );
    assert_eq!(r.calls[0], "unshare(mnt,uts,ipc,cgroup)");
}

#[test]
fn a_remapped_container_may_bind_low_ports_unless_it_says_otherwise() {
    let mut r = Recorder::default();
    enter_namespaces(&mut r, &spec(), true).unwrap();
    assert!(
        r.calls.contains(&format!("sysctl({PORTS}=0)")),
        "{:?}",
        r.calls
    );
    let mut s = spec();
    s.options.sysctls.insert(PORTS.into(), "1024".into());
    let mut r = Recorder::default();
    enter_namespaces(&mut r, &s, true).unwrap();
    let port_writes: Vec<_> = r.calls.iter().filter(|c| c.contains(PORTS)).collect();
    assert_eq!(port_writes, [&format!("sysctl({PORTS}=1024)")]);
    let mut r = Recorder::default();
    enter_namespaces(&mut r, &spec(), false).unwrap();
    assert!(!r.calls.iter().any(|c| c.contains(PORTS)));
}

#[test]
fn a_failed_step_stops_the_setup_before_pivot() {
    for step in ["rootfs", "mounts", "hostname", "lo"] {
        let mut r = Recorder {
            fail: Some(step),
            ..Default::default()
        };
        let e = build_root(&mut r, &StateDir::new("/state/c1".into()), &spec(), None);
        assert!(e.is_err(), "{step}");
        assert_eq!(*names(&r).last().unwrap(), step);
        assert!(!names(&r).contains(&"pivot"), "{step}");
    }
}
