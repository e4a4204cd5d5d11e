//! Linux capabilities: Docker's default set and the calls that apply it (bounding set drop,
//! capset of effective/permitted/inheritable, ambient cleared).
//!
//! Docker semantics: the bounding set is the default set for every user; root gets
//! effective = permitted = the default set; a non-root user gets no effective/permitted caps
//! (the kernel clears them on setuid); inheritable and ambient are empty (CVE-2022-24769).

use std::io;

/// Docker's default capabilities, by number.
pub const DEFAULT_CAPS: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (10, "CAP_NET_BIND_SERVICE"),
    (13, "CAP_NET_RAW"),
    (18, "CAP_SYS_CHROOT"),
    (27, "CAP_MKNOD"),
    (29, "CAP_AUDIT_WRITE"),
    (31, "CAP_SETFCAP"),
];

/// The default set as a 64-bit mask.
pub fn default_mask() -> u64 {
    DEFAULT_CAPS.iter().fold(0, |m, (n, _)| m | (1u64 << n))
}

/// Parses a capability name (`CAP_NET_ADMIN` or `NET_ADMIN`) into its number.
pub fn cap_number(name: &str) -> Option<u32> {
    let n = name.strip_prefix("CAP_").unwrap_or(name);
    NAMES.iter().position(|c| *c == n).map(|p| p as u32)
}

/// The name of capability number `n` (without `CAP_`).
pub fn cap_name(n: u32) -> Option<&'static str> {
    NAMES.get(n as usize).copied()
}

/// Capability names by number.
const NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The highest capability number the running kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// The calling thread's bounding set: what it can still give a workload (`ALL` means these,
/// as with Docker in a restricted host).
pub fn bounding_set() -> u64 {
    (0..=last_cap().min(63)).fold(0, |m, cap| {
        // SAFETY: prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        if r == 1 {
            m | (1u64 << cap)
        } else {
            m
        }
    })
}

/// Drops every capability not in `keep` from the bounding set (needs CAP_SETPCAP).
pub fn drop_bounding(keep: u64) -> io::Result<()> {
    for cap in 0..=last_cap() {
        if keep & (1u64 << cap) == 0 {
            // SAFETY: prctl with integer arguments.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if r != 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINVAL) {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Clears the ambient set.
pub fn clear_ambient() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

/// Sets effective, permitted and inheritable sets of the calling thread.
pub fn set_caps(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    let mut h = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let d = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: inheritable as u32,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: (inheritable >> 32) as u32,
        },
    ];
    // SAFETY: header and a two-element data array laid out as the kernel's v3 structs.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut h as *mut CapHeader, d.as_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Applies Docker's capability model for a process about to exec as `uid` (call after
/// setuid): bounding = `mask`; root keeps eff = perm = `mask`; everyone loses inheritable and
/// ambient.
pub fn apply(mask: u64, uid: u32) -> io::Result<()> {
    drop_bounding(mask)?;
    clear_ambient()?;
    if uid == 0 {
        set_caps(mask, mask, 0)
    } else {
        set_caps(0, 0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mask_matches_docker() {
        // CapBnd of a default `docker run` on x86_64.
        assert_eq!(default_mask(), 0x0000_0000_a804_25fb);
        assert_eq!(cap_number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(cap_number("NET_RAW"), Some(13));
        for (n, name) in DEFAULT_CAPS {
            assert_eq!(cap_number(name), Some(*n));
        }
    }
}
