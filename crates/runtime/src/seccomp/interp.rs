//! A tiny classic-BPF interpreter for the instructions our programs use (tests only): what
//! a program returns for a syscall, checked without installing it.

use super::*;

/// The program's verdict for syscall `nr` of `arch` with `args`.
pub(super) fn run(prog: &[SockFilter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_ne_bytes());
    data[4..8].copy_from_slice(&arch.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
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
            c if c == BPF_JMP | BPF_JA => pc += 1 + i.k as usize,
            0x54 => {
                a &= i.k;
                pc += 1;
            }
            c if c & 0x07 == BPF_JMP => {
                let taken = match c & 0xf0 {
                    BPF_JEQ => a == i.k,
                    BPF_JGE => a >= i.k,
                    0x20 => a > i.k,
                    BPF_JSET => a & i.k != 0,
                    _ => panic!("unexpected jump {c:#x}"),
                };
                pc += 1 + usize::from(if taken { i.jt } else { i.jf });
            }
            c => panic!("unexpected op {c:#x}"),
        }
    }
}
