//! "Did you mean ...?" for misspelled instruction and flag names: the closest candidate by
//! edit distance (with adjacent transpositions), if it is close enough to be a typo.

/// Names longer than this are not worth a suggestion (and keep the cost bounded).
const MAX_LEN: usize = 32;

/// The candidate closest to `word` (ASCII case-insensitive), within about a third of
/// the word's length.
pub(crate) fn closest(word: &str, candidates: &[&'static str]) -> Option<&'static str> {
    let word: Vec<char> = word.to_ascii_lowercase().chars().collect();
    if word.is_empty() || word.len() > MAX_LEN {
        return None;
    }
    let limit = (word.len() / 3).max(1);
    candidates
        .iter()
        .map(|c| {
            (
                distance(&word, &c.to_ascii_lowercase().chars().collect::<Vec<_>>()),
                *c,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance.
fn distance(a: &[char], b: &[char]) -> usize {
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, row) in d.chunks_mut(width).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::closest;

    const NAMES: &[&str] = &["RUN", "FROM", "COPY", "ENTRYPOINT", "WORKDIR", "ADD"];

    #[test]
    fn suggests_typos_only() {
        assert_eq!(closest("RUNN", NAMES), Some("RUN"));
        assert_eq!(closest("form", NAMES), Some("FROM"));
        assert_eq!(closest("CPY", NAMES), Some("COPY"));
        assert_eq!(closest("ENTRYPIONT", NAMES), Some("ENTRYPOINT"));
        assert_eq!(closest("WORKDI", NAMES), Some("WORKDIR"));
        assert_eq!(closest("XYZZY", NAMES), None);
        assert_eq!(closest("", NAMES), None);
    }
}
