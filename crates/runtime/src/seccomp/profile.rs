//! Seccomp profiles written as JSON in Docker's format (`docker run --security-opt
//! seccomp=FILE`; the OCI runtime spec's `linux.seccomp` is the same shape): parsed and
//! checked ([`Profile::parse`]), then compiled for this architecture and a capability set
//! ([`Profile::compile`]) into a classic-BPF program.
//!
//! Semantics, where libseccomp leaves room: the rules of one syscall are tried in the order of
//! the profile and the first whose argument conditions all hold decides; none holding means
//! the default action. Conditions compare the full 64-bit argument. Names this host does not
//! know are skipped (as runc does) and reported by [`Compiled::unknown`]. A foreign
//! architecture is killed and x32 numbers are refused whatever the profile says, which closes
//! the usual bypasses.

use serde::Deserialize;

use super::*;

/// Largest profile accepted (Docker's default is about 20 KiB).
pub const MAX_PROFILE_BYTES: usize = 128 * 1024;

const BPF_ALU: u16 = 0x04;
const BPF_AND: u16 = 0x50;
const BPF_JGT: u16 = 0x20;

const SECCOMP_RET_KILL_THREAD: u32 = 0;
const SECCOMP_RET_TRAP: u32 = 0x0003_0000;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
const SECCOMP_RET_LOG: u32 = 0x7ffc_0000;

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProfileError {
    #[error("seccomp profile is {len} bytes, more than {MAX_PROFILE_BYTES}")]
    TooLarge { len: usize },
    #[error("seccomp profile is not valid JSON in Docker's format: {0}")]
    Json(String),
    #[error("seccomp profile: {0}")]
    Invalid(String),
    #[error("seccomp profile needs {len} BPF instructions, more than the kernel's 4096: merge rules or use fewer argument conditions")]
    TooLong { len: usize },
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub arch_map: Vec<ArchMap>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub listener_path: String,
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub names: Vec<String>,
    /// Docker's older single-name form.
    #[serde(default)]
    pub name: String,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Vec<Arg>,
    #[serde(default)]
    pub includes: Filter,
    #[serde(default)]
    pub excludes: Filter,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// When a rule applies (Docker's `includes` / `excludes`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default)]
    pub caps: Vec<String>,
    #[serde(default)]
    pub arches: Vec<String>,
    #[serde(default)]
    pub min_kernel: String,
}

/// A compiled profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    pub program: Vec<SockFilter>,
    /// Syscall names of the profile this host does not know (skipped).
    pub unknown: Vec<String>,
}

/// Names of this architecture in profiles: libseccomp's, Go's (Docker's `arches`) and the
/// kernel's.
#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: &[&str] = &["SCMP_ARCH_X86_64", "amd64", "x86_64"];
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: &[&str] = &["SCMP_ARCH_AARCH64", "arm64", "aarch64"];

/// Syscall names of this architecture (sorted by name).
#[cfg(target_arch = "x86_64")]
fn syscall_table() -> &'static [(&'static str, u32)] {
    super::names_x86_64::SYSCALLS
}
#[cfg(not(target_arch = "x86_64"))]
fn syscall_table() -> &'static [(&'static str, u32)] {
    &[]
}

/// The number of syscall `name` on this architecture.
pub fn syscall_number(name: &str) -> Option<u32> {
    let t = syscall_table();
    t.binary_search_by(|(n, _)| n.cmp(&name))
        .ok()
        .map(|i| t[i].1)
}

/// The return value of `action` (`errno` for `SCMP_ACT_ERRNO`/`SCMP_ACT_TRACE`).
fn action_value(action: &str, errno: Option<u32>) -> Result<u32, ProfileError> {
    let errno = errno.unwrap_or(libc::EPERM as u32);
    if errno > 4095 {
        return Err(ProfileError::Invalid(format!(
            "errno {errno} is out of range (0 to 4095)"
        )));
    }
    Ok(match action {
        "SCMP_ACT_ALLOW" => SECCOMP_RET_ALLOW,
        "SCMP_ACT_ERRNO" => SECCOMP_RET_ERRNO | errno,
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => SECCOMP_RET_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS" => SECCOMP_RET_KILL_PROCESS,
        "SCMP_ACT_TRAP" => SECCOMP_RET_TRAP,
        "SCMP_ACT_TRACE" => SECCOMP_RET_TRACE | errno,
        "SCMP_ACT_LOG" => SECCOMP_RET_LOG,
        "SCMP_ACT_NOTIFY" => {
            return Err(ProfileError::Invalid(
                "SCMP_ACT_NOTIFY needs a seccomp agent, which swarm-runtime does not run: use another action".into(),
            ))
        }
        other => {
            return Err(ProfileError::Invalid(format!(
                "unknown action {other:?}: use SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, SCMP_ACT_KILL_PROCESS, SCMP_ACT_TRAP, SCMP_ACT_TRACE or SCMP_ACT_LOG"
            )))
        }
    })
}

const OPS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_GT",
    "SCMP_CMP_GE",
    "SCMP_CMP_MASKED_EQ",
];

/// `"4.8"` as (4, 8).
fn kernel_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.trim().split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor = it
        .next()
        .map(|m| {
            m.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    Some((major, minor))
}

/// This kernel's version, from uname (0.0 when unreadable: every `minKernel` rule is left out).
pub fn running_kernel() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|s| kernel_version(&s))
        .unwrap_or((0, 0))
}

impl Profile {
    /// Parses and checks a profile (everything but the syscall names, which depend on the host).
    pub fn parse(json: &str) -> Result<Profile, ProfileError> {
        if json.len() > MAX_PROFILE_BYTES {
            return Err(ProfileError::TooLarge { len: json.len() });
        }
        let p: Profile =
            serde_json::from_str(json).map_err(|e| ProfileError::Json(e.to_string()))?;
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<(), ProfileError> {
        let bad = |s: String| Err(ProfileError::Invalid(s));
        action_value(&self.default_action, self.default_errno_ret)?;
        if let Some(f) = self.flags.first() {
            return bad(format!(
                "flag {f:?} is not supported: swarm-runtime installs filters without flags; remove \"flags\""
            ));
        }
        if !self.listener_path.is_empty() {
            return bad(
                "listenerPath needs a seccomp agent, which swarm-runtime does not run".into(),
            );
        }
        let arches: Vec<&String> = self
            .architectures
            .iter()
            .chain(self.arch_map.iter().map(|a| &a.architecture))
            .collect();
        if !arches.is_empty() && !arches.iter().any(|a| NATIVE_ARCH.contains(&a.as_str())) {
            return bad(format!(
                "the profile is for {} only; this host is {}",
                arches
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                NATIVE_ARCH[0]
            ));
        }
        for (i, r) in self.syscalls.iter().enumerate() {
            let at = |s: String| ProfileError::Invalid(format!("syscalls[{i}]: {s}"));
            if r.names.is_empty() && r.name.is_empty() {
                return Err(at("names no syscall".into()));
            }
            action_value(&r.action, r.errno_ret).map_err(|e| at(e.to_string()))?;
            if r.args.len() > 6 {
                return Err(at(format!(
                    "{} argument conditions; a syscall has 6 arguments",
                    r.args.len()
                )));
            }
            for a in &r.args {
                if a.index > 5 {
                    return Err(at(format!(
                        "argument index {} is out of range (0 to 5)",
                        a.index
                    )));
                }
                if !OPS.contains(&a.op.as_str()) {
                    return Err(at(format!(
                        "unknown comparison {:?}: use one of {}",
                        a.op,
                        OPS.join(", ")
                    )));
                }
            }
            for caps in [&r.includes.caps, &r.excludes.caps] {
                for c in caps {
                    if crate::caps::cap_number(&c.to_ascii_uppercase()).is_none() {
                        return Err(at(format!("unknown capability {c:?}")));
                    }
                }
            }
            if !r.includes.min_kernel.is_empty() && kernel_version(&r.includes.min_kernel).is_none()
            {
                return Err(at(format!(
                    "minKernel {:?} is not a kernel version such as 4.8",
                    r.includes.min_kernel
                )));
            }
        }
        Ok(())
    }

    /// Whether rule `r` applies to a container holding `caps` on kernel `kernel`.
    fn applies(r: &Rule, caps: u64, kernel: (u32, u32)) -> bool {
        let held = |c: &String| {
            crate::caps::cap_number(&c.to_ascii_uppercase())
                .is_some_and(|n| caps & (1u64 << n) != 0)
        };
        let native = |a: &String| NATIVE_ARCH.contains(&a.as_str());
        (r.includes.caps.iter().all(held))
            && !r.excludes.caps.iter().any(held)
            && (r.includes.arches.is_empty() || r.includes.arches.iter().any(native))
            && !r.excludes.arches.iter().any(native)
            && (r.includes.min_kernel.is_empty()
                || kernel_version(&r.includes.min_kernel).is_some_and(|v| kernel >= v))
    }

    /// The program for a container holding capabilities `caps` on kernel `kernel`.
    pub fn compile(&self, caps: u64, kernel: (u32, u32)) -> Result<Compiled, ProfileError> {
        if syscall_table().is_empty() {
            return Err(ProfileError::Invalid(format!(
                "custom profiles need a syscall name table for {}, which swarm-runtime does not have yet",
                NATIVE_ARCH[0]
            )));
        }
        let default = action_value(&self.default_action, self.default_errno_ret)?;
        // Per syscall, its applicable rules in profile order.
        let mut per: std::collections::BTreeMap<u32, Vec<&Rule>> = Default::default();
        let mut unknown = Vec::new();
        for r in self
            .syscalls
            .iter()
            .filter(|r| Self::applies(r, caps, kernel))
        {
            let names = r
                .names
                .iter()
                .chain((!r.name.is_empty()).then_some(&r.name));
            for n in names {
                match syscall_number(n) {
                    Some(nr) => per.entry(nr).or_default().push(r),
                    None => unknown.push(n.clone()),
                }
            }
        }
        unknown.sort();
        unknown.dedup();
        let mut p = vec![
            stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARCH),
            jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
            stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
            stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR),
            jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1),
            stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        ];
        // Syscalls whose first applicable rule is unconditional reduce to one action.
        let mut simple: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
        for (nr, rules) in &per {
            if rules[0].args.is_empty() {
                simple
                    .entry(action_value(&rules[0].action, rules[0].errno_ret)?)
                    .or_default()
                    .push(*nr);
                continue;
            }
            let mut block = Vec::new();
            let mut closed = false;
            for r in rules {
                let ret = action_value(&r.action, r.errno_ret)?;
                if r.args.is_empty() {
                    block.push(stmt(BPF_RET | BPF_K, ret));
                    closed = true;
                    break;
                }
                conditions(&r.args, ret, &mut block)?;
            }
            if !closed {
                block.push(stmt(BPF_RET | BPF_K, default));
            }
            p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, *nr, 1, 0));
            p.push(stmt(BPF_JMP | BPF_JA, block.len() as u32));
            p.extend(block);
        }
        // The smaller groups first, each falling through to the next when the number is
        // not in it; the largest last, its miss being the default action.
        let mut groups: Vec<(u32, Vec<u32>)> = simple.into_iter().collect();
        groups.sort_by_key(|(_, nrs)| nrs.len());
        let last = groups.pop();
        for (ret, nrs) in &groups {
            let misses = search_to(nrs, *ret, Miss::Next, &mut p);
            let end = p.len();
            for m in misses {
                p[m].k = (end - m - 1) as u32;
            }
        }
        match last {
            Some((ret, nrs)) => {
                search_to(&nrs, ret, Miss::Return(default), &mut p);
            }
            None => p.push(stmt(BPF_RET | BPF_K, default)),
        }
        if p.len() > 4096 {
            return Err(ProfileError::TooLong { len: p.len() });
        }
        Ok(Compiled {
            program: p,
            unknown,
        })
    }
}

/// The argument conditions of one rule, then `RET ret`; any failing condition jumps past the
/// `RET` (to the next rule). The syscall number in A is not needed afterwards.
fn conditions(args: &[Arg], ret: u32, block: &mut Vec<SockFilter>) -> Result<(), ProfileError> {
    /// A jump target inside one condition: relative, or "the next rule" (patched).
    const FAIL: u8 = u8::MAX;
    let start = block.len();
    for a in args {
        let lo = OFF_ARG0_LO + 8 * a.index;
        let hi = lo + 4;
        let (v, v2) = (a.value, a.value_two);
        let (v_lo, v_hi) = (v as u32, (v >> 32) as u32);
        let ld = |off| stmt(BPF_LD | BPF_W | BPF_ABS, off);
        let j = |op: u16, k, jt, jf| jump(BPF_JMP | op | BPF_K, k, jt, jf);
        match a.op.as_str() {
            "SCMP_CMP_EQ" => block.extend([
                ld(hi),
                j(BPF_JEQ, v_hi, 0, FAIL),
                ld(lo),
                j(BPF_JEQ, v_lo, 0, FAIL),
            ]),
            "SCMP_CMP_NE" => block.extend([
                ld(hi),
                j(BPF_JEQ, v_hi, 0, 2),
                ld(lo),
                j(BPF_JEQ, v_lo, FAIL, 0),
            ]),
            "SCMP_CMP_MASKED_EQ" => block.extend([
                ld(hi),
                stmt(BPF_ALU | BPF_AND | BPF_K, v_hi),
                j(BPF_JEQ, (v2 >> 32) as u32, 0, FAIL),
                ld(lo),
                stmt(BPF_ALU | BPF_AND | BPF_K, v_lo),
                j(BPF_JEQ, v2 as u32, 0, FAIL),
            ]),
            // Unsigned 64-bit order: the high words decide unless they are equal.
            "SCMP_CMP_GT" | "SCMP_CMP_GE" => block.extend([
                ld(hi),
                j(BPF_JGT, v_hi, 3, 0),
                j(BPF_JEQ, v_hi, 0, FAIL),
                ld(lo),
                if a.op == "SCMP_CMP_GT" {
                    j(BPF_JGT, v_lo, 0, FAIL)
                } else {
                    j(BPF_JGE, v_lo, 0, FAIL)
                },
            ]),
            "SCMP_CMP_LT" | "SCMP_CMP_LE" => block.extend([
                ld(hi),
                j(BPF_JGE, v_hi, 0, 3),
                j(BPF_JEQ, v_hi, 0, FAIL),
                ld(lo),
                if a.op == "SCMP_CMP_LT" {
                    j(BPF_JGE, v_lo, FAIL, 0)
                } else {
                    j(BPF_JGT, v_lo, FAIL, 0)
                },
            ]),
            other => {
                return Err(ProfileError::Invalid(format!(
                    "unknown comparison {other:?}"
                )))
            }
        }
    }
    block.push(stmt(BPF_RET | BPF_K, ret));
    // FAIL: past the RET, to the next rule.
    let next = block.len();
    for (i, ins) in block.iter_mut().enumerate().skip(start) {
        for t in [&mut ins.jt, &mut ins.jf] {
            if *t == FAIL && ins.code & 0x07 == BPF_JMP {
                let off = next - i - 1;
                *t = u8::try_from(off).map_err(|_| ProfileError::TooLong { len: off })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
}
