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
        let mut p = prologue();
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
mod tests;
