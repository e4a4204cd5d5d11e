//! Who may use the registry. Node and admin certificates of this cluster (mutual TLS) need no
//! token: managers may do anything (including the internal blob copies between managers),
//! admin bundles push and pull, workers pull. Other clients (Docker, skopeo) send a login
//! token — as a bearer token or as the password of HTTP basic auth — issued by
//! `swarmctl registry login-token`: `swreg1.<claims>.<mac>`, the claims base64url JSON
//! `{scope, iat, exp, cid}` and the mac HMAC-SHA256 of the claims under a key derived from the
//! cluster CA's private key, which every manager replicates and nobody else has. So every
//! manager verifies every token, and a token dies with its expiry or a new CA.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use swarm_api::tls::PeerIdentity;

const PREFIX: &str = "swreg1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Pull,
    Push,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Pull => "pull",
            Scope::Push => "push",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    scope: Scope,
    /// Issued at / expires at, unix seconds.
    iat: u64,
    exp: u64,
    /// Cluster id.
    cid: String,
}

fn key(ca_key_pem: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"swarm registry login token v1\0");
    h.update(ca_key_pem.as_bytes());
    h.finalize().into()
}

fn mac(ca_key_pem: &str, msg: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key(ca_key_pem)).expect("any key size");
    m.update(msg);
    m
}

/// A token for `scope` valid from `now` (unix seconds) for `ttl_secs`.
pub fn issue(ca_key_pem: &str, cluster_id: &str, scope: Scope, now: u64, ttl_secs: u64) -> String {
    let claims = Claims {
        scope,
        iat: now,
        exp: now.saturating_add(ttl_secs),
        cid: cluster_id.to_string(),
    };
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialize"));
    let tag = URL_SAFE_NO_PAD.encode(mac(ca_key_pem, body.as_bytes()).finalize().into_bytes());
    format!("{PREFIX}.{body}.{tag}")
}

/// The scope of a valid token, or why it is not valid.
pub fn verify(ca_key_pem: &str, cluster_id: &str, token: &str, now: u64) -> Result<Scope, String> {
    let mut parts = token.trim().split('.');
    let (Some(PREFIX), Some(body), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(
            "not a swarm registry token (get one with `swarmctl registry login-token`)".into(),
        );
    };
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| "malformed token signature".to_string())?;
    mac(ca_key_pem, body.as_bytes())
        .verify_slice(&tag)
        .map_err(|_| {
            "token signature does not verify: it was not issued by this cluster".to_string()
        })?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(body)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| "malformed token claims".to_string())?;
    if claims.cid != cluster_id {
        return Err("token is for another cluster".into());
    }
    if now >= claims.exp {
        return Err(format!(
            "token expired {}s ago; get a new one with `swarmctl registry login-token`",
            now - claims.exp
        ));
    }
    Ok(claims.scope)
}

/// Who is calling, as far as the registry cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A manager of this cluster (its node certificate).
    Manager,
    /// An admin client bundle.
    Admin,
    /// A worker's node certificate.
    Worker,
    /// A login token with this scope.
    Token(Scope),
    Anonymous,
}

impl Caller {
    pub fn can_pull(&self, anonymous_pull: bool) -> bool {
        !matches!(self, Caller::Anonymous) || anonymous_pull
    }
    pub fn can_push(&self) -> bool {
        matches!(
            self,
            Caller::Manager | Caller::Admin | Caller::Token(Scope::Push)
        )
    }
}

/// Decides who the caller is from the TLS peer certificate (already chain-verified against the
/// cluster CA) and the `Authorization` header. `node_exists` tells whether a node id is still
/// a member (removed nodes' certificates are refused).
pub fn identify(
    peer: Option<&PeerIdentity>,
    authorization: Option<&str>,
    cluster_id: &str,
    ca_key_pem: &str,
    now: u64,
    node_exists: impl Fn(&str) -> bool,
) -> Result<Caller, String> {
    if let Some(p) = peer {
        if p.cluster_id != cluster_id {
            return Err("certificate of another cluster".into());
        }
        match p.role.as_str() {
            "admin" => return Ok(Caller::Admin),
            "manager" | "worker" if !node_exists(&p.node_id) => {
                return Err(format!(
                    "node {} is not a member of this cluster",
                    p.node_id
                ))
            }
            "manager" => return Ok(Caller::Manager),
            "worker" => return Ok(Caller::Worker),
            other => return Err(format!("certificate role {other:?} has no registry access")),
        }
    }
    let Some(h) = authorization else {
        return Ok(Caller::Anonymous);
    };
    let (kind, rest) = h.trim().split_once(' ').unwrap_or((h, ""));
    let token = if kind.eq_ignore_ascii_case("bearer") {
        rest.trim().to_string()
    } else if kind.eq_ignore_ascii_case("basic") {
        let raw = STANDARD
            .decode(rest.trim())
            .map_err(|_| "malformed basic authorization".to_string())?;
        let s = String::from_utf8(raw).map_err(|_| "malformed basic authorization".to_string())?;
        // Any user name; the password is the token.
        s.split_once(':')
            .map(|(_, p)| p.to_string())
            .unwrap_or_default()
    } else {
        return Err(format!(
            "unsupported authorization scheme {kind:?}: use Basic or Bearer"
        ));
    };
    verify(ca_key_pem, cluster_id, &token, now).map(Caller::Token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_scope_expiry_and_signer() {
        let t = issue("KEY", "c1", Scope::Push, 1000, 60);
        assert_eq!(verify("KEY", "c1", &t, 1000), Ok(Scope::Push));
        assert!(verify("KEY", "c1", &t, 1060)
            .unwrap_err()
            .contains("expired"));
        assert!(verify("OTHER", "c1", &t, 1000)
            .unwrap_err()
            .contains("not issued"));
        assert!(verify("KEY", "c2", &t, 1000)
            .unwrap_err()
            .contains("another cluster"));
        // Changing the claims (scope) breaks the signature.
        let p = issue("KEY", "c1", Scope::Pull, 1000, 60);
        let forged = format!(
            "{}.{}",
            p.rsplit_once('.').unwrap().0,
            t.rsplit_once('.').unwrap().1
        );
        assert!(verify("KEY", "c1", &forged, 1000).is_err());
        assert!(verify("KEY", "c1", "garbage", 1000).is_err());
    }

    #[test]
    fn callers_from_basic_bearer_and_certificates() {
        let t = issue("K", "c", Scope::Pull, 10, 60);
        let basic = format!("Basic {}", STANDARD.encode(format!("me:{t}")));
        let yes = |_: &str| true;
        assert_eq!(
            identify(None, Some(&basic), "c", "K", 20, yes),
            Ok(Caller::Token(Scope::Pull))
        );
        assert_eq!(
            identify(None, Some(&format!("Bearer {t}")), "c", "K", 20, yes),
            Ok(Caller::Token(Scope::Pull))
        );
        assert_eq!(
            identify(None, None, "c", "K", 20, yes),
            Ok(Caller::Anonymous)
        );
        let w = PeerIdentity {
            node_id: "n1".into(),
            role: "worker".into(),
            cluster_id: "c".into(),
        };
        assert_eq!(
            identify(Some(&w), None, "c", "K", 20, yes),
            Ok(Caller::Worker)
        );
        assert!(identify(Some(&w), None, "c", "K", 20, |_| false).is_err());
        assert!(!Caller::Worker.can_push() && Caller::Worker.can_pull(false));
        assert!(!Caller::Token(Scope::Pull).can_push());
        assert!(!Caller::Anonymous.can_pull(false) && Caller::Anonymous.can_pull(true));
    }
}
