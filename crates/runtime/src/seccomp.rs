//! The default seccomp profile: a classic-BPF allowlist equivalent to Docker's default profile,
//! built by hand (no libseccomp). What it does not list is refused with `EPERM`, syscalls newer
//! than it was written for with `ENOSYS`; capabilities add what Docker's profile adds for
//! them. See [`build_default_program`] for the program's shape.

use std::io;

#[cfg(target_arch = "x86_64")]
mod names_x86_64;
mod profile;
mod table;
pub use profile::*;
pub use table::*;

/// Classic BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// Errors of seccomp installation.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp program has {len} instructions, more than the kernel's 4096")]
    TooLong { len: usize },
    #[error("cannot install the seccomp filter (kernel needs CONFIG_SECCOMP_FILTER): {source}")]
    Install { source: io::Error },
}

pub const BPF_LD: u16 = 0x00;
pub const BPF_W: u16 = 0x00;
pub const BPF_ABS: u16 = 0x20;
pub const BPF_JMP: u16 = 0x05;
pub const BPF_JEQ: u16 = 0x10;
pub const BPF_JSET: u16 = 0x40;
pub const BPF_JGE: u16 = 0x30;
pub const BPF_K: u16 = 0x00;
pub const BPF_RET: u16 = 0x06;

pub const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
pub const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

/// Offsets in `struct seccomp_data`.
pub const OFF_NR: u32 = 0;
pub const OFF_ARCH: u32 = 4;
pub const OFF_ARG0_LO: u32 = 16;

#[cfg(target_arch = "x86_64")]
pub const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
pub const AUDIT_ARCH: u32 = 0xC000_00B7;

const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Namespace flags refused in clone/unshare.
pub const NS_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u32;

/// `personality(2)` values Docker allows (Linux, UNAME26, READ_IMPLIES_EXEC combos, query).
const PERSONALITIES: [u32; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

pub const BPF_JA: u16 = 0x00;

/// The start of every program we build: a foreign audit architecture is killed (which also
/// closes the i386/x32 bypasses) and x32 numbers get `EPERM`; A then holds the syscall number.
fn prologue() -> Vec<SockFilter> {
    vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR),
        jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
    ]
}

/// The default profile for a container holding capabilities `caps` (a mask by number): an
/// allowlist equivalent to Docker's default, so a syscall the kernel adds later is refused
/// until it is reviewed here.
///
/// Program shape: check the audit architecture (a foreign arch is killed, which also closes
/// the i386/x32 bypasses), refuse x32 numbers, `ENOSYS` above [`REVIEWED_UP_TO`]; then the
/// calls with argument rules — `clone`/`unshare` only without namespace flags and `clone3`
/// `ENOSYS` (its flags live in memory BPF cannot read; libc falls back to `clone`) unless
/// CAP_SYS_ADMIN, `personality` with Docker's values; then a binary search over the allowed
/// numbers (about 20 instructions per call instead of one comparison per syscall).
pub fn build_default_program(caps: u64) -> Vec<SockFilter> {
    let eperm = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let enosys = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    let admin = caps & (1 << 21) != 0;
    let mut p = prologue();
    p.extend([
        jump(BPF_JMP | BPF_JGE | BPF_K, REVIEWED_UP_TO as u32 + 1, 0, 1),
        stmt(BPF_RET | BPF_K, enosys),
    ]);
    let mut allowed = allowed_syscalls();
    for (cap, calls) in allowed_with_capability() {
        if caps & (1u64 << cap) != 0 {
            allowed.extend(calls);
        }
    }
    if admin {
        allowed.extend([libc::SYS_clone, libc::SYS_clone3, libc::SYS_unshare]);
    } else {
        p.push(jump(
            BPF_JMP | BPF_JEQ | BPF_K,
            libc::SYS_clone3 as u32,
            0,
            1,
        ));
        p.push(stmt(BPF_RET | BPF_K, enosys));
        // clone(flags, ...) and unshare(flags): without namespace flags (arg0, low 32 bits).
        for nr in [libc::SYS_clone, libc::SYS_unshare] {
            p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, nr as u32, 0, 4));
            p.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARG0_LO));
            p.push(jump(BPF_JMP | BPF_JSET | BPF_K, NS_FLAGS, 0, 1));
            p.push(stmt(BPF_RET | BPF_K, eperm));
            p.push(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
        }
    }
    // personality(persona): Docker's values only.
    p.push(jump(
        BPF_JMP | BPF_JEQ | BPF_K,
        libc::SYS_personality as u32,
        0,
        (PERSONALITIES.len() * 2 + 2) as u8,
    ));
    p.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARG0_LO));
    for v in PERSONALITIES {
        p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, v, 0, 1));
        p.push(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    }
    p.push(stmt(BPF_RET | BPF_K, eperm));
    let mut nrs: Vec<u32> = allowed.into_iter().map(|n| n as u32).collect();
    nrs.sort_unstable();
    nrs.dedup();
    search(&nrs, eperm, &mut p);
    p
}

/// What a search does with a number it does not find.
#[derive(Debug, Clone, Copy)]
enum Miss {
    /// Return this action.
    Return(u32),
    /// Jump past the search (the caller patches the returned `JA`s).
    Next,
}

/// A binary search over `nrs` (sorted) on the syscall number in A: `ALLOW` when found,
/// `deny` when not.
fn search(nrs: &[u32], deny: u32, p: &mut Vec<SockFilter>) {
    search_to(nrs, SECCOMP_RET_ALLOW, Miss::Return(deny), p);
}

/// A binary search over `nrs` (sorted) on the syscall number in A, returning `found` when
/// the number is there. Ranges of up to 8 are compared one by one; larger ones split with a
/// `JGE` on their middle and a long jump (`BPF_JA`, 32-bit offset) over the lower half.
/// Returns the `JA`s of [`Miss::Next`] leaves, to be pointed past the search.
fn search_to(nrs: &[u32], found: u32, miss: Miss, p: &mut Vec<SockFilter>) -> Vec<usize> {
    if nrs.len() <= 8 {
        for &nr in nrs {
            p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1));
            p.push(stmt(BPF_RET | BPF_K, found));
        }
        return match miss {
            Miss::Return(deny) => {
                p.push(stmt(BPF_RET | BPF_K, deny));
                Vec::new()
            }
            Miss::Next => {
                p.push(stmt(BPF_JMP | BPF_JA, 0));
                vec![p.len() - 1]
            }
        };
    }
    let (low, high) = nrs.split_at(nrs.len() / 2);
    // A >= high[0] → the upper half (after the jump), else fall into the lower half.
    p.push(jump(BPF_JMP | BPF_JGE | BPF_K, high[0], 0, 1));
    let ja = p.len();
    p.push(stmt(BPF_JMP | BPF_JA, 0));
    let mut misses = search_to(low, found, miss, p);
    p[ja].k = (p.len() - ja - 1) as u32;
    misses.extend(search_to(high, found, miss, p));
    misses
}

/// Installs `prog` for the calling thread (no_new_privs must be set already, or the caller
/// must have CAP_SYS_ADMIN).
pub fn install(prog: &[SockFilter]) -> Result<(), SeccompError> {
    if prog.len() > 4096 {
        return Err(SeccompError::TooLong { len: prog.len() });
    }
    let f = SockFprog {
        len: prog.len() as u16,
        filter: prog.as_ptr(),
    };
    // SAFETY: `f` points at `prog`, which outlives the call; the kernel copies the program.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &f as *const SockFprog,
            0,
            0,
        )
    };
    if r != 0 {
        return Err(SeccompError::Install {
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod interp;

#[cfg(test)]
mod tests {
    use super::*;

    fn run(prog: &[SockFilter], arch: u32, nr: u32, arg0: u64) -> u32 {
        interp::run(prog, arch, nr, [arg0, 0, 0, 0, 0, 0])
    }

    const EPERM: u32 = SECCOMP_RET_ERRNO | libc::EPERM as u32;

    const ENOSYS: u32 = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    #[test]
    fn allows_what_docker_allows_and_refuses_the_rest() {
        let p = build_default_program(crate::caps::default_mask());
        for nr in allowed_syscalls() {
            assert_eq!(run(&p, AUDIT_ARCH, nr as u32, 0), SECCOMP_RET_ALLOW, "{nr}");
        }
        for (nr, name) in [
            (libc::SYS_mount, "mount"),
            (libc::SYS_umount2, "umount2"),
            (libc::SYS_bpf, "bpf"),
            (libc::SYS_kexec_load, "kexec_load"),
            (libc::SYS_init_module, "init_module"),
            (libc::SYS_setns, "setns"),
            (libc::SYS_keyctl, "keyctl"),
            (libc::SYS_add_key, "add_key"),
            (libc::SYS_userfaultfd, "userfaultfd"),
            (libc::SYS_open_by_handle_at, "open_by_handle_at"),
            (libc::SYS_pivot_root, "pivot_root"),
            (libc::SYS_reboot, "reboot"),
            (libc::SYS_settimeofday, "settimeofday"),
        ] {
            assert_eq!(run(&p, AUDIT_ARCH, nr as u32, 0), EPERM, "{name}");
        }
        // Every number up to the reviewed one is either listed or refused; none falls through.
        let listed: std::collections::BTreeSet<i64> = allowed_syscalls().into_iter().collect();
        for nr in 0..=REVIEWED_UP_TO {
            let r = run(&p, AUDIT_ARCH, nr as u32, 0);
            let special = [
                libc::SYS_clone,
                libc::SYS_clone3,
                libc::SYS_unshare,
                libc::SYS_personality,
            ];
            if listed.contains(&nr) {
                assert_eq!(r, SECCOMP_RET_ALLOW, "{nr}");
            } else if !special.contains(&nr) {
                assert!(r == EPERM || nr == libc::SYS_chroot, "{nr}: {r:#x}");
            }
        }
        // A syscall added to the kernel after this profile: ENOSYS until reviewed.
        assert_eq!(run(&p, AUDIT_ARCH, REVIEWED_UP_TO as u32 + 1, 0), ENOSYS);
        assert_eq!(run(&p, AUDIT_ARCH, 1000, 0), ENOSYS);
        // CAP_SYS_CHROOT is a default capability: chroot is allowed.
        assert_eq!(
            run(&p, AUDIT_ARCH, libc::SYS_chroot as u32, 0),
            SECCOMP_RET_ALLOW
        );
        assert!(p.len() < 4096);
    }

    #[test]
    fn capabilities_add_what_docker_adds_for_them() {
        let none = build_default_program(0);
        assert_eq!(run(&none, AUDIT_ARCH, libc::SYS_chroot as u32, 0), EPERM);
        let admin = build_default_program(crate::caps::default_mask() | 1 << 21);
        for nr in [libc::SYS_mount, libc::SYS_setns, libc::SYS_umount2] {
            assert_eq!(
                run(&admin, AUDIT_ARCH, nr as u32, 0),
                SECCOMP_RET_ALLOW,
                "{nr}"
            );
        }
        // With CAP_SYS_ADMIN namespaces may be made, clone3 included.
        let ns = libc::CLONE_NEWNS as u64;
        assert_eq!(
            run(&admin, AUDIT_ARCH, libc::SYS_unshare as u32, ns),
            SECCOMP_RET_ALLOW
        );
        assert_eq!(
            run(&admin, AUDIT_ARCH, libc::SYS_clone3 as u32, 0),
            SECCOMP_RET_ALLOW
        );
        let time = build_default_program(1 << 25);
        assert_eq!(
            run(&time, AUDIT_ARCH, libc::SYS_settimeofday as u32, 0),
            SECCOMP_RET_ALLOW
        );
    }

    #[test]
    fn personality_takes_dockers_values_only() {
        let p = build_default_program(crate::caps::default_mask());
        let nr = libc::SYS_personality as u32;
        for v in [0u64, 8, 0x20000, 0xffff_ffff] {
            assert_eq!(run(&p, AUDIT_ARCH, nr, v), SECCOMP_RET_ALLOW, "{v:#x}");
        }
        // ADDR_NO_RANDOMIZE would turn off ASLR.
        assert_eq!(run(&p, AUDIT_ARCH, nr, 0x0040000), EPERM);
    }

    #[test]
    fn foreign_arch_and_x32_are_blocked() {
        let p = build_default_program(crate::caps::default_mask());
        assert_eq!(run(&p, 0x4000_0003, 1, 0), SECCOMP_RET_KILL_PROCESS);
        assert_eq!(run(&p, AUDIT_ARCH, X32_SYSCALL_BIT | 1, 0), EPERM);
        assert!(p.len() < 4096);
    }
}
