//! `user[:group]` of a process: parsed from the spec, resolved against the container's own
//! /etc/passwd and /etc/group (Docker's rules).

use super::SpecError;

/// A parsed `user[:group]` string; names are resolved later against the container's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    pub user: IdOrName,
    pub group: Option<IdOrName>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdOrName {
    Id(u32),
    Name(String),
}

fn id_or_name(s: &str) -> IdOrName {
    s.parse()
        .map_or_else(|_| IdOrName::Name(s.into()), IdOrName::Id)
}

/// Parses `user`, `uid`, `user:group`, `uid:gid`.
pub fn parse_user(s: &str) -> Result<UserRef, SpecError> {
    let bad = |reason: &str| SpecError::InvalidUser {
        user: s.into(),
        reason: reason.into(),
    };
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    if u.is_empty() {
        return Err(bad("empty user name"));
    }
    if g.is_some_and(str::is_empty) {
        return Err(bad("empty group name"));
    }
    for part in [Some(u), g].into_iter().flatten() {
        if part.contains(['/', '\n', '\0']) {
            return Err(bad("names may not contain '/', newlines or NUL"));
        }
    }
    Ok(UserRef {
        user: id_or_name(u),
        group: g.map(id_or_name),
    })
}

/// The numeric identity a process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Resolves a [`UserRef`] against the contents of the container's `/etc/passwd` and
/// `/etc/group` (either may be empty). Numeric ids need no entry (gid then defaults to the
/// passwd entry's or 0); names must exist.
pub fn resolve_user(r: &UserRef, passwd: &str, group: &str) -> Result<ResolvedUser, SpecError> {
    let err = |reason: String| SpecError::InvalidUser {
        user: format!("{r:?}"),
        reason,
    };
    // passwd: name:x:uid:gid:gecos:home:shell
    let pw: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let entry = pw.iter().find(|f| match &r.user {
        IdOrName::Name(n) => f[0] == n,
        IdOrName::Id(id) => f[2].parse::<u32>().ok() == Some(*id),
    });
    let (uid, mut gid, home, uname) = match (&r.user, entry) {
        (_, Some(f)) => (
            f[2].parse::<u32>()
                .map_err(|_| err(format!("bad uid in passwd for {}", f[0])))?,
            f[3].parse::<u32>().unwrap_or(0),
            f[5].to_string(),
            Some(f[0].to_string()),
        ),
        (IdOrName::Id(id), None) => (*id, 0, "/".to_string(), None),
        (IdOrName::Name(n), None) => {
            return Err(err(format!("no user {n:?} in the container's /etc/passwd")))
        }
    };
    // group: name:x:gid:members
    let gr: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    if let Some(g) = &r.group {
        gid = match g {
            IdOrName::Id(id) => *id,
            IdOrName::Name(n) => gr
                .iter()
                .find(|f| f[0] == n)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| err(format!("no group {n:?} in the container's /etc/group")))?,
        };
    }
    let mut additional_gids = vec![gid];
    if let Some(name) = uname.filter(|_| r.group.is_none()) {
        for f in &gr {
            if f[3].split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if !additional_gids.contains(&g) {
                        additional_gids.push(g);
                    }
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_against_passwd_and_group() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:n:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
        let group = "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\n";
        let r = resolve_user(&parse_user("app").unwrap(), passwd, group).unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (1000, 1000, "/home/app"));
        assert_eq!(r.additional_gids, vec![1000, 10]);
        let r = resolve_user(&parse_user("1234:wheel").unwrap(), passwd, group).unwrap();
        assert_eq!((r.uid, r.gid), (1234, 10));
        let r = resolve_user(&parse_user("65534").unwrap(), passwd, group).unwrap();
        assert_eq!((r.uid, r.gid), (65534, 65534));
        assert!(resolve_user(&parse_user("ghost").unwrap(), passwd, group).is_err());
        assert!(parse_user("a:").is_err());
        assert!(parse_user("").is_err());
    }
}
