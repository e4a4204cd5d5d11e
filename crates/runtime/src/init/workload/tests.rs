//! The workload's hardening order, recorded without root: what [`harden_and_exec`] calls, in
//! which order, and where it stops.

use super::*;

/// Records every call; fails the one named in `fail`; reports `bounding` as the bounding set
/// and `cwd` as where chdir landed.
struct Recorder {
    calls: Vec<String>,
    fail: Option<&'static str>,
    bounding: u64,
    cwd: Option<PathBuf>,
}

impl Recorder {
    fn new(bounding: u64) -> Recorder {
        Recorder {
            calls: Vec::new(),
            fail: None,
            bounding,
            cwd: Some(PathBuf::from("/srv")),
        }
    }
    fn call(&mut self, name: &'static str, args: String) -> io::Result<()> {
        self.calls.push(format!("{name}({args})"));
        if self.fail == Some(name) {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
        Ok(())
    }
}

impl WorkloadSys for Recorder {
    fn set_oom_score_adj(&mut self, v: i32) {
        let _ = self.call("oom_score_adj", v.to_string());
    }
    fn setrlimit(&mut self, res: u32, soft: u64, hard: u64) -> io::Result<()> {
        self.call("setrlimit", format!("{res},{soft},{hard}"))
    }
    fn enter_userns(&mut self, ns: RawFd) -> io::Result<()> {
        self.call("enter_userns", ns.to_string())
    }
    fn bounding_set(&mut self) -> u64 {
        let _ = self.call("bounding_set", String::new());
        self.bounding
    }
    fn drop_bounding(&mut self, keep: u64) -> io::Result<()> {
        self.call("drop_bounding", format!("{keep:#x}"))
    }
    fn clear_ambient(&mut self) -> io::Result<()> {
        self.call("clear_ambient", String::new())
    }
    fn setgroups(&mut self, gids: &[u32]) -> io::Result<()> {
        self.call("setgroups", format!("{gids:?}"))
    }
    fn setgid(&mut self, gid: u32) -> io::Result<()> {
        self.call("setgid", gid.to_string())
    }
    fn setuid(&mut self, uid: u32) -> io::Result<()> {
        self.call("setuid", uid.to_string())
    }
    fn set_caps(&mut self, effective: u64, permitted: u64) -> io::Result<()> {
        self.call("set_caps", format!("{effective:#x},{permitted:#x}"))
    }
    fn no_new_privs(&mut self) -> io::Result<()> {
        self.call("no_new_privs", String::new())
    }
    fn close_fds_from(&mut self, first: u32, keep: RawFd) -> io::Result<()> {
        self.call("close_fds_from", format!("{first},keep {keep}"))
    }
    fn chdir(&mut self, dir: &str) -> io::Result<()> {
        self.call("chdir", dir.to_string())
    }
    fn current_dir(&mut self) -> Option<PathBuf> {
        let _ = self.call("current_dir", String::new());
        self.cwd.clone()
    }
    fn install_seccomp(&mut self, mode: &SeccompMode, caps: u64) -> Result<(), InitError> {
        let _ = self.call("seccomp", format!("{mode:?},{caps:#x}"));
        Ok(())
    }
    fn execve(&mut self, p: &PreparedProcess) -> InitError {
        let _ = self.call("execve", p.exe.to_string_lossy().into_owned());
        InitError::NotRunning
    }
}

fn prepared(uid: u32, caps: u64, userns: Option<RawFd>) -> PreparedProcess {
    PreparedProcess {
        exe: CString::new("/bin/app").unwrap(),
        argv: vec![CString::new("app").unwrap()],
        envp: vec![],
        cwd: "/srv".into(),
        user: ResolvedUser {
            uid,
            gid: uid,
            additional_gids: vec![10],
            home: "/".into(),
        },
        caps,
        rlimits: vec![(7, 100, 200)],
        oom_score_adj: 5,
        tty: false,
        seccomp: SeccompMode::Default,
        userns,
    }
}

#[test]
fn root_is_hardened_in_order_and_seccomp_comes_last_before_exec() {
    let mut r = Recorder::new(0xff);
    let e = harden_and_exec(&mut r, &prepared(0, 0x0f, Some(7)), 9).unwrap_err();
    assert!(
        matches!(e, InitError::NotRunning),
        "the exec's own error: {e}"
    );
    assert_eq!(
        r.calls,
        [
            "oom_score_adj(5)",
            "setrlimit(7,100,200)",
            "enter_userns(7)",
            "bounding_set()",
            "drop_bounding(0xf)",
            "clear_ambient()",
            "setgroups([10])",
            "setgid(0)",
            "setuid(0)",
            "set_caps(0xf,0xf)",
            "no_new_privs()",
            "close_fds_from(3,keep 9)",
            "chdir(/srv)",
            "current_dir()",
            "seccomp(Default,0xf)",
            "execve(/bin/app)",
        ]
    );
}

#[test]
fn a_user_keeps_no_capabilities_and_root_only_what_the_host_left() {
    let mut r = Recorder::new(0x3);
    let _ = harden_and_exec(&mut r, &prepared(1000, 0x0f, None), 9);
    assert!(!r.calls.iter().any(|c| c.starts_with("enter_userns")));
    assert!(r.calls.contains(&"drop_bounding(0x3)".to_string()));
    assert!(r.calls.contains(&"set_caps(0x0,0x0)".to_string()));
    let mut r = Recorder::new(0x3);
    let _ = harden_and_exec(&mut r, &prepared(0, 0x0f, None), 9);
    assert!(r.calls.contains(&"set_caps(0x3,0x3)".to_string()));
}

#[test]
fn a_failed_step_stops_the_sequence_and_nothing_execs() {
    for step in [
        "enter_userns",
        "drop_bounding",
        "setgroups",
        "setgid",
        "setuid",
        "set_caps",
    ] {
        let mut r = Recorder::new(0xff);
        r.fail = Some(step);
        let e = harden_and_exec(&mut r, &prepared(1000, 0x0f, Some(7)), 9)
            .unwrap_err()
            .to_string();
        assert!(
            r.calls.last().unwrap().starts_with(step),
            "{step}: stopped at {:?}",
            r.calls.last()
        );
        assert!(!r.calls.iter().any(|c| c.starts_with("execve")), "{step}");
        assert!(e.contains("Operation not permitted"), "{step}: {e}");
    }
}

#[test]
fn a_workdir_that_resolves_outside_the_container_is_refused_before_seccomp() {
    let mut r = Recorder::new(0xff);
    r.cwd = Some(PathBuf::from("(unreachable)/srv"));
    let e = harden_and_exec(&mut r, &prepared(0, 0x0f, None), 9).unwrap_err();
    assert!(matches!(e, InitError::WorkdirEscape { .. }), "{e}");
    assert_eq!(r.calls.last().unwrap(), "current_dir()");
}
