//! Small pure helpers shared by the model: base36 encoding and random identifiers.

use rand::Rng;

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Encodes `bytes` (big-endian unsigned integer) in lower-case base36, left-padded with `0`
/// to `width` characters.
pub fn base36(bytes: &[u8], width: usize) -> String {
    // Repeated division of a big-endian byte string by 36.
    let mut num: Vec<u8> = bytes.to_vec();
    let mut out = Vec::new();
    while num.iter().any(|b| *b != 0) {
        let mut rem: u32 = 0;
        for b in num.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 36) as u8;
            rem = cur % 36;
        }
        out.push(ALPHABET[rem as usize]);
    }
    while out.len() < width {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).expect("alphabet is ascii")
}

/// A random lower-case base36 string of `len` characters (25 is the id length docker uses).
pub fn random_base36(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..36)] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_known_values() {
        assert_eq!(base36(&[0], 1), "0");
        assert_eq!(base36(&[35], 1), "z");
        assert_eq!(base36(&[36], 1), "10");
        assert_eq!(base36(&[1, 0], 0), "74"); // 256 = 7*36 + 4
        assert_eq!(base36(&[0, 0, 1], 4), "0001");
    }

    #[test]
    fn random_ids_have_requested_length_and_alphabet() {
        let s = random_base36(25);
        assert_eq!(s.len(), 25);
        assert!(s.bytes().all(|b| ALPHABET.contains(&b)));
    }
}
