//! `swarmd --userns-remap`: which subordinate ids of /etc/subuid and /etc/subgid the node's
//! containers run as. Owns reading (and, for `default`, extending) those files; the runtime's
//! `userns` module owns everything after.

use std::path::Path;

use anyhow::{bail, Context};
use swarm_runtime::userns::{self, IdMap};

/// The user `--userns-remap default` maps containers to (Docker's is `dockremap`).
pub const DEFAULT_USER: &str = "swarmremap";

/// Ids given to the default user when it has none yet (as `useradd` does).
const DEFAULT_COUNT: u32 = 65_536;

/// The maps for `--userns-remap VALUE`: `default`, `USER` or `USER:GROUP` (names or ids),
/// from `subuid`/`subgid` (normally /etc/subuid and /etc/subgid). `default` gives
/// [`DEFAULT_USER`] a free range of 65,536 ids in both files when it has none.
pub fn resolve(value: &str, passwd: &str, subuid: &Path, subgid: &Path) -> anyhow::Result<IdMap> {
    let read = |p: &Path| match std::fs::read_to_string(p) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("read {}", p.display())),
    };
    let (user, group) = match value {
        "" => bail!("--userns-remap needs a value: default, USER or USER:GROUP"),
        "default" => {
            for p in [subuid, subgid] {
                give_default_user_ids(p)?;
            }
            (DEFAULT_USER, DEFAULT_USER)
        }
        v => match v.split_once(':') {
            Some((u, g)) if !u.is_empty() && !g.is_empty() => (u, g),
            Some(_) => bail!("--userns-remap {v:?}: expected default, USER or USER:GROUP"),
            None => (v, v),
        },
    };
    let ranges = |p: &Path, who: &str, kind: &'static str| -> anyhow::Result<Vec<(u32, u32)>> {
        // Lines name a user or give its id: match both.
        let (name, id) = name_and_id(passwd, who);
        let path = p.display().to_string();
        let r = userns::subordinate_ranges(&path, &read(p)?, &name, id)?;
        if r.is_empty() {
            return Err(userns::UsernsError::NoRange {
                kind,
                user: who.into(),
                path,
            }
            .into());
        }
        Ok(r)
    };
    let map = IdMap::from_subordinate(
        &ranges(subuid, user, "uid")?,
        &ranges(subgid, group, "gid")?,
    );
    map.validate()?;
    Ok(map)
}

/// Gives [`DEFAULT_USER`] a free range in the subordinate-id file `p` unless it has one. The
/// file is locked while it is read and appended to (two swarmd starting at once must not both
/// add a range), and only appended to: no other user's line is rewritten.
fn give_default_user_ids(p: &Path) -> anyhow::Result<()> {
    use std::io::{Read, Seek, Write};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(p)
        .with_context(|| format!("open {}", p.display()))?;
    let mut f = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("lock {}: {e}", p.display()))?;
    let mut text = String::new();
    f.rewind()?;
    f.read_to_string(&mut text)
        .with_context(|| format!("read {}", p.display()))?;
    let path = p.display().to_string();
    if !userns::subordinate_ranges(&path, &text, DEFAULT_USER, None)?.is_empty() {
        return Ok(());
    }
    let start = userns::free_range(&text, DEFAULT_COUNT);
    let sep = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    writeln!(f, "{sep}{DEFAULT_USER}:{start}:{DEFAULT_COUNT}")
        .with_context(|| format!("add {DEFAULT_USER}'s subordinate ids to {}", p.display()))?;
    f.sync_all()?;
    tracing::info!(file = %p.display(), start, "gave {DEFAULT_USER} {DEFAULT_COUNT} subordinate ids");
    Ok(())
}

/// `who` as a name and a number, through /etc/passwd when it gives one of them.
fn name_and_id(passwd: &str, who: &str) -> (String, Option<u32>) {
    let by_field = |i: usize| {
        passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 2 && f[i] == who)
    };
    match who.parse::<u32>() {
        Ok(id) => (
            by_field(2).map_or_else(|| who.to_string(), |f| f[0].to_string()),
            Some(id),
        ),
        Err(_) => (who.to_string(), by_field(0).and_then(|f| f[2].parse().ok())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_gets_a_free_range_once_and_users_resolve_by_name_or_id() {
        let dir = std::env::temp_dir().join(format!("swarm-remap-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (su, sg) = (dir.join("subuid"), dir.join("subgid"));
        std::fs::write(&su, "alice:100000:65536\n").unwrap();
        let m = resolve("default", "", &su, &sg).unwrap();
        assert_eq!(m.host_uid(0), Some(165_536));
        assert_eq!(m.host_gid(0), Some(100_000));
        // Resolving again reuses the ranges it added.
        let again = resolve("default", "", &su, &sg).unwrap();
        assert_eq!(again, m);
        assert_eq!(
            std::fs::read_to_string(&su).unwrap(),
            "alice:100000:65536\nswarmremap:165536:65536\n"
        );
        let passwd = "alice:x:1000:1000::/home/alice:/bin/sh\n";
        std::fs::write(&sg, "1000:300000:65536\n").unwrap();
        let a = resolve("alice", passwd, &su, &sg).unwrap();
        assert_eq!(
            (a.host_uid(0), a.host_gid(7)),
            (Some(100_000), Some(300_007))
        );
        let e = resolve("bob", passwd, &su, &sg).unwrap_err().to_string();
        assert!(e.contains("no subordinate uid range for \"bob\""), "{e}");
        let e = resolve("alice:", passwd, &su, &sg).unwrap_err().to_string();
        assert!(e.contains("expected default, USER or USER:GROUP"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
