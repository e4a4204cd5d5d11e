//! The default seccomp profile: a classic-BPF denylist in the spirit of Docker's profile, built
//! by hand (no libseccomp), returning `EPERM` for dangerous syscalls.
//!
//! Program shape: check the audit architecture (a foreign arch is killed, which also closes the
//! i386/x32 bypasses), refuse x32 syscall numbers, then one `JEQ` per denied syscall; `clone`
//! and `unshare` are only refused when their flags ask for new namespaces, `clone3` gets
//! `ENOSYS` (its flags live in memory BPF cannot read, and libc falls back to `clone`).

use std::io;

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

/// Syscalls refused outright with EPERM.
pub fn denied_syscalls() -> Vec<(i64, &'static str)> {
    let mut v: Vec<(i64, &'static str)> = vec![
        (libc::SYS_acct, "acct"),
        (libc::SYS_add_key, "add_key"),
        (libc::SYS_bpf, "bpf"),
        (libc::SYS_clock_adjtime, "clock_adjtime"),
        (libc::SYS_clock_settime, "clock_settime"),
        (libc::SYS_delete_module, "delete_module"),
        (libc::SYS_finit_module, "finit_module"),
        (libc::SYS_fsconfig, "fsconfig"),
        (libc::SYS_fsmount, "fsmount"),
        (libc::SYS_fsopen, "fsopen"),
        (libc::SYS_fspick, "fspick"),
        (libc::SYS_init_module, "init_module"),
        (libc::SYS_kexec_file_load, "kexec_file_load"),
        (libc::SYS_kexec_load, "kexec_load"),
        (libc::SYS_keyctl, "keyctl"),
        (libc::SYS_lookup_dcookie, "lookup_dcookie"),
        (libc::SYS_mount, "mount"),
        (libc::SYS_mount_setattr, "mount_setattr"),
        (libc::SYS_move_mount, "move_mount"),
        (libc::SYS_name_to_handle_at, "name_to_handle_at"),
        (libc::SYS_open_by_handle_at, "open_by_handle_at"),
        (libc::SYS_open_tree, "open_tree"),
        (libc::SYS_perf_event_open, "perf_event_open"),
        (libc::SYS_pivot_root, "pivot_root"),
        (libc::SYS_process_vm_readv, "process_vm_readv"),
        (libc::SYS_process_vm_writev, "process_vm_writev"),
        (libc::SYS_ptrace, "ptrace"),
        (libc::SYS_quotactl, "quotactl"),
        (libc::SYS_reboot, "reboot"),
        (libc::SYS_request_key, "request_key"),
        (libc::SYS_setns, "setns"),
        (libc::SYS_settimeofday, "settimeofday"),
        (libc::SYS_swapoff, "swapoff"),
        (libc::SYS_swapon, "swapon"),
        (libc::SYS_syslog, "syslog"),
        (libc::SYS_umount2, "umount2"),
        (libc::SYS_userfaultfd, "userfaultfd"),
        (libc::SYS_vhangup, "vhangup"),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        (libc::SYS_iopl, "iopl"),
        (libc::SYS_ioperm, "ioperm"),
        (libc::SYS_uselib, "uselib"),
        (libc::SYS_nfsservctl, "nfsservctl"),
        (libc::SYS_sysfs, "sysfs"),
        (libc::SYS__sysctl, "_sysctl"),
        (libc::SYS_ustat, "ustat"),
    ]);
    v
}

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

/// Builds the default profile.
pub fn build_default_program() -> Vec<SockFilter> {
    let eperm = SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let enosys = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    let mut p = vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR),
        jump(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET | BPF_K, eperm),
    ];
    for (nr, _) in denied_syscalls() {
        p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, nr as u32, 0, 1));
        p.push(stmt(BPF_RET | BPF_K, eperm));
    }
    p.push(jump(
        BPF_JMP | BPF_JEQ | BPF_K,
        libc::SYS_clone3 as u32,
        0,
        1,
    ));
    p.push(stmt(BPF_RET | BPF_K, enosys));
    // clone(flags, ...) and unshare(flags): refuse namespace flags (arg0, low 32 bits).
    for nr in [libc::SYS_clone, libc::SYS_unshare] {
        p.push(jump(BPF_JMP | BPF_JEQ | BPF_K, nr as u32, 0, 3));
        p.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_ARG0_LO));
        p.push(jump(BPF_JMP | BPF_JSET | BPF_K, NS_FLAGS, 0, 1));
        p.push(stmt(BPF_RET | BPF_K, eperm));
        // Reload the syscall number (A may hold arg0 now; harmless if it falls through to the
        // next check, which compares against syscall numbers).
        p.push(stmt(BPF_LD | BPF_W | BPF_ABS, OFF_NR));
    }
    p.push(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    p
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
mod tests {
    use super::*;

    /// A tiny classic-BPF interpreter for the instructions we emit.
    fn run(prog: &[SockFilter], arch: u32, nr: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[16..24].copy_from_slice(&arg0.to_ne_bytes());
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            match i.code {
                c if c == BPF_LD | BPF_W | BPF_ABS => {
                    let o = i.k as usize;
                    a = u32::from_ne_bytes(data[o..o + 4].try_into().unwrap());
                    pc += 1;
                }
                c if c == BPF_RET | BPF_K => return i.k,
                c if c & 0x07 == BPF_JMP => {
                    let taken = match c & 0xf0 {
                        BPF_JEQ => a == i.k,
                        BPF_JGE => a >= i.k,
                        BPF_JSET => a & i.k != 0,
                        _ => panic!("unexpected jump {c:#x}"),
                    };
                    pc += 1 + usize::from(if taken { i.jt } else { i.jf });
                }
                c => panic!("unexpected op {c:#x}"),
            }
        }
    }

    const EPERM: u32 = SECCOMP_RET_ERRNO | libc::EPERM as u32;

    #[test]
    fn denies_dangerous_and_allows_ordinary() {
        let p = build_default_program();
        for (nr, name) in denied_syscalls() {
            assert_eq!(run(&p, AUDIT_ARCH, nr as u32, 0), EPERM, "{name}");
        }
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_execve,
            libc::SYS_openat,
        ] {
            assert_eq!(run(&p, AUDIT_ARCH, nr as u32, 0), SECCOMP_RET_ALLOW);
        }
    }

    #[test]
    fn namespace_flags_are_refused_in_clone_and_unshare() {
        let p = build_default_program();
        let fork_flags = (libc::CLONE_CHILD_SETTID | libc::SIGCHLD) as u64;
        assert_eq!(
            run(&p, AUDIT_ARCH, libc::SYS_clone as u32, fork_flags),
            SECCOMP_RET_ALLOW
        );
        let ns = (libc::CLONE_NEWUSER as u64) | fork_flags;
        assert_eq!(run(&p, AUDIT_ARCH, libc::SYS_clone as u32, ns), EPERM);
        assert_eq!(
            run(
                &p,
                AUDIT_ARCH,
                libc::SYS_unshare as u32,
                libc::CLONE_NEWNS as u64
            ),
            EPERM
        );
        assert_eq!(
            run(
                &p,
                AUDIT_ARCH,
                libc::SYS_unshare as u32,
                libc::CLONE_FILES as u64
            ),
            SECCOMP_RET_ALLOW
        );
        assert_eq!(
            run(&p, AUDIT_ARCH, libc::SYS_clone3 as u32, 0),
            SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
    }

    #[test]
    fn foreign_arch_and_x32_are_blocked() {
        let p = build_default_program();
        assert_eq!(run(&p, 0x4000_0003, 1, 0), SECCOMP_RET_KILL_PROCESS);
        assert_eq!(run(&p, AUDIT_ARCH, X32_SYSCALL_BIT | 1, 0), EPERM);
        assert!(p.len() < 4096);
    }
}
