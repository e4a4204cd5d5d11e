//! The profile compiler against the BPF interpreter: actions, argument comparisons on the
//! full 64 bits, rule order, includes/excludes, and the errors of bad profiles.

use super::*;
use crate::seccomp::interp::run;

fn nr(name: &str) -> u32 {
    syscall_number(name).unwrap()
}

fn compile(json: &str, caps: u64) -> Compiled {
    Profile::parse(json).unwrap().compile(caps, (6, 1)).unwrap()
}

const ERRNO_EPERM: u32 = SECCOMP_RET_ERRNO | libc::EPERM as u32;

#[test]
fn the_name_table_is_sorted_and_knows_the_usual_calls() {
    let t = syscall_table();
    assert!(t.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(syscall_number("read"), Some(libc::SYS_read as u32));
    assert_eq!(syscall_number("clone3"), Some(libc::SYS_clone3 as u32));
    assert_eq!(syscall_number("futex_requeue"), Some(456));
    assert_eq!(syscall_number("no_such_call"), None);
}

#[test]
fn an_allowlist_allows_its_calls_and_returns_the_default_for_the_rest() {
    let p = compile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,
            "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]}],
            "syscalls":[{"names":["read","write","exit_group","no_such_call"],"action":"SCMP_ACT_ALLOW","comment":"basics"},
                        {"name":"getpid","action":"SCMP_ACT_ALLOW"}]}"#,
        0,
    );
    for n in ["read", "write", "exit_group", "getpid"] {
        assert_eq!(
            run(&p.program, AUDIT_ARCH, nr(n), [0; 6]),
            SECCOMP_RET_ALLOW,
            "{n}"
        );
    }
    let enosys = SECCOMP_RET_ERRNO | 38;
    assert_eq!(run(&p.program, AUDIT_ARCH, nr("mount"), [0; 6]), enosys);
    assert_eq!(p.unknown, vec!["no_such_call".to_string()]);
    // Whatever the profile: foreign architectures die, x32 numbers are refused.
    assert_eq!(
        run(&p.program, 0x4000_0003, nr("read"), [0; 6]),
        SECCOMP_RET_KILL_PROCESS
    );
    assert_eq!(
        run(&p.program, AUDIT_ARCH, X32_SYSCALL_BIT | nr("read"), [0; 6]),
        ERRNO_EPERM
    );
}

#[test]
fn a_denylist_over_an_allow_default_and_several_actions() {
    let p = compile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["mount","umount2","pivot_root"],"action":"SCMP_ACT_ERRNO"},
            {"names":["reboot"],"action":"SCMP_ACT_KILL_PROCESS"},
            {"names":["kexec_load"],"action":"SCMP_ACT_ERRNO","errnoRet":13},
            {"names":["mount"],"action":"SCMP_ACT_ALLOW","comment":"never reached: first match wins"}]}"#,
        0,
    );
    let r = |n| run(&p.program, AUDIT_ARCH, nr(n), [0; 6]);
    assert_eq!(r("mount"), ERRNO_EPERM);
    assert_eq!(r("pivot_root"), ERRNO_EPERM);
    assert_eq!(r("reboot"), SECCOMP_RET_KILL_PROCESS);
    assert_eq!(r("kexec_load"), SECCOMP_RET_ERRNO | 13);
    assert_eq!(r("read"), SECCOMP_RET_ALLOW);
    assert_eq!(r("futex_requeue"), SECCOMP_RET_ALLOW);
}

/// Every comparison against a reference evaluation, on values either side of the 32-bit
/// halves (where a 32-bit-only comparison would go wrong).
#[test]
fn argument_comparisons_hold_on_the_full_64_bits() {
    let values = [
        0u64,
        1,
        5,
        0xffff_fffe,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0005,
        0x5_0000_0000,
        u64::MAX - 1,
        u64::MAX,
    ];
    /// (argument, value, valueTwo) → whether the condition holds.
    type Holds = fn(u64, u64, u64) -> bool;
    let ops: [(&str, Holds); 7] = [
        ("SCMP_CMP_EQ", |a, v, _| a == v),
        ("SCMP_CMP_NE", |a, v, _| a != v),
        ("SCMP_CMP_LT", |a, v, _| a < v),
        ("SCMP_CMP_LE", |a, v, _| a <= v),
        ("SCMP_CMP_GT", |a, v, _| a > v),
        ("SCMP_CMP_GE", |a, v, _| a >= v),
        ("SCMP_CMP_MASKED_EQ", |a, m, d| a & m == d),
    ];
    for (op, want) in ops {
        for &v in &values {
            let v2 = v & 0x1_0000_0005;
            let json = format!(
                r#"{{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{{"names":["ioctl"],"action":"SCMP_ACT_ALLOW","args":[{{"index":2,"value":{v},"valueTwo":{v2},"op":"{op}"}}]}}]}}"#
            );
            let p = compile(&json, 0);
            for &a in &values {
                let got = run(&p.program, AUDIT_ARCH, nr("ioctl"), [0, 0, a, 0, 0, 0]);
                let expect = if want(a, v, v2) {
                    SECCOMP_RET_ALLOW
                } else {
                    ERRNO_EPERM
                };
                assert_eq!(got, expect, "{op} arg {a:#x} against {v:#x}/{v2:#x}");
            }
        }
    }
}

#[test]
fn rules_of_one_call_are_tried_in_order_and_conditions_of_a_rule_all_hold() {
    let p = compile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"SCMP_CMP_EQ"}]},
            {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
            {"names":["socket"],"action":"SCMP_ACT_ERRNO","errnoRet":97,"args":[{"index":0,"value":40,"op":"SCMP_CMP_EQ"},{"index":1,"value":1,"op":"SCMP_CMP_EQ"}]},
            {"names":["socket"],"action":"SCMP_ACT_ALLOW"}]}"#,
        0,
    );
    let r = |n, a: [u64; 6]| run(&p.program, AUDIT_ARCH, nr(n), a);
    assert_eq!(r("personality", [0; 6]), SECCOMP_RET_ALLOW);
    assert_eq!(r("personality", [8, 0, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
    assert_eq!(r("personality", [0x40000, 0, 0, 0, 0, 0]), ERRNO_EPERM);
    assert_eq!(r("socket", [40, 1, 0, 0, 0, 0]), SECCOMP_RET_ERRNO | 97);
    assert_eq!(r("socket", [40, 2, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
    assert_eq!(r("socket", [2, 1, 0, 0, 0, 0]), SECCOMP_RET_ALLOW);
}

#[test]
fn includes_and_excludes_follow_capabilities_architecture_and_kernel() {
    let json = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
        {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
        {"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,"op":"SCMP_CMP_MASKED_EQ"}],"excludes":{"caps":["CAP_SYS_ADMIN"],"arches":["s390x"]}},
        {"names":["clone"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
        {"names":["getpid"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["s390x"]}},
        {"names":["gettid"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["amd64","arm64"]}},
        {"names":["getppid"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"99.0"}},
        {"names":["getuid"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"4.8"}}]}"#;
    let profile = Profile::parse(json).unwrap();
    let admin = 1u64 << 21;
    let plain = profile.compile(0, (6, 1)).unwrap().program;
    let root = profile.compile(admin, (6, 1)).unwrap().program;
    let r = |p: &[SockFilter], n, a0| run(p, AUDIT_ARCH, nr(n), [a0, 0, 0, 0, 0, 0]);
    assert_eq!(r(&plain, "mount", 0), ERRNO_EPERM);
    assert_eq!(r(&root, "mount", 0), SECCOMP_RET_ALLOW);
    let newns = libc::CLONE_NEWNS as u64;
    assert_eq!(r(&plain, "clone", 0x11), SECCOMP_RET_ALLOW);
    assert_eq!(r(&plain, "clone", newns), ERRNO_EPERM);
    assert_eq!(r(&root, "clone", newns), SECCOMP_RET_ALLOW);
    assert_eq!(r(&plain, "getpid", 0), ERRNO_EPERM);
    assert_eq!(r(&plain, "gettid", 0), SECCOMP_RET_ALLOW);
    assert_eq!(r(&plain, "getppid", 0), ERRNO_EPERM);
    assert_eq!(r(&plain, "getuid", 0), SECCOMP_RET_ALLOW);
    let old_kernel = profile.compile(0, (4, 4)).unwrap().program;
    assert_eq!(r(&old_kernel, "getuid", 0), ERRNO_EPERM);
}

#[test]
fn bad_profiles_are_refused_saying_what_is_wrong() {
    for (json, says) in [
        ("not json", "not valid JSON"),
        (r#"{"syscalls":[]}"#, "defaultAction"),
        (r#"{"defaultAction":"SCMP_ACT_MAYBE"}"#, "unknown action"),
        (r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#, "seccomp agent"),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":5000}"#,
            "out of range",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","flags":["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}"#,
            "flag",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_S390X"]}"#,
            "this host is",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":[],"action":"SCMP_ACT_ALLOW"}]}"#,
            "syscalls[0]: names no syscall",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":6,"value":0,"op":"SCMP_CMP_EQ"}]}]}"#,
            "index 6",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"SCMP_CMP_ABOUT"}]}]}"#,
            "unknown comparison",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_FLY"]}}]}"#,
            "unknown capability",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"new"}}]}"#,
            "minKernel",
        ),
    ] {
        let e = Profile::parse(json).unwrap_err().to_string();
        assert!(e.contains(says), "{json}: {e}");
    }
    let big = format!(
        r#"{{"defaultAction":"SCMP_ACT_ERRNO","comment":"{}"}}"#,
        "x".repeat(MAX_PROFILE_BYTES)
    );
    assert!(matches!(
        Profile::parse(&big),
        Err(ProfileError::TooLarge { .. })
    ));
}

#[test]
fn kernel_versions_parse_like_uname_prints_them() {
    assert_eq!(kernel_version("6.1.0-28-cloud-amd64\n"), Some((6, 1)));
    assert_eq!(kernel_version("4.8"), Some((4, 8)));
    assert_eq!(kernel_version("5"), Some((5, 0)));
    assert_eq!(kernel_version("x"), None);
}
