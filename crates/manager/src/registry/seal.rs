//! Sealing of registry credentials (`--with-registry-auth`): AES-256-GCM under a key derived
//! from the cluster CA's private key, which only managers hold. The sealed form is stored in
//! the service and its tasks; the dispatcher opens it only into the assignments of nodes that
//! run the task, and answers to clients show [`SEALED_MARKER`] instead.
//!
//! What this protects: the credentials never appear in `service inspect`, `service ps`,
//! watch events, logs, or an agent's task database. What it does not: the Raft log and
//! snapshots hold the CA key too, so whoever reads a manager's state dir can open them (the
//! same holds for Docker Swarm without autolock).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use sha2::{Digest, Sha256};
use swarm_types::registry::{RegistryAuth, SEALED_MARKER};
use swarm_types::spec::ServiceSpec;

/// Largest credential accepted (Docker's `auth` values are a few hundred bytes).
pub const MAX_AUTH_BYTES: usize = 8 * 1024;

fn key(ca_key_pem: &str) -> LessSafeKey {
    let mut h = Sha256::new();
    h.update(b"swarm registry credentials v1\0");
    h.update(ca_key_pem.as_bytes());
    let k = UnboundKey::new(&AES_256_GCM, &h.finalize()).expect("a 32-byte AES-256 key");
    LessSafeKey::new(k)
}

/// Seals `clear` (base64 nonce ‖ ciphertext ‖ tag).
pub fn seal(ca_key_pem: &str, clear: &str) -> String {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let mut buf = clear.as_bytes().to_vec();
    key(ca_key_pem)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
        .expect("sealing a small buffer");
    let mut out = nonce.to_vec();
    out.extend(buf);
    STANDARD.encode(out)
}

/// Opens what [`seal`] made under the same CA key.
pub fn open(ca_key_pem: &str, sealed: &str) -> Result<String, String> {
    let raw = STANDARD
        .decode(sealed)
        .map_err(|e| format!("sealed registry credentials are not base64: {e}"))?;
    if raw.len() < NONCE_LEN {
        return Err("sealed registry credentials are truncated".into());
    }
    let (nonce, ct) = raw.split_at(NONCE_LEN);
    let mut buf = ct.to_vec();
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce".to_string())?;
    let clear = key(ca_key_pem)
        .open_in_place(nonce, Aad::empty(), &mut buf)
        .map_err(|_| {
            "sealed registry credentials do not open under this cluster's key".to_string()
        })?;
    String::from_utf8(clear.to_vec()).map_err(|e| e.to_string())
}

/// Seals the credentials a client sent with a spec. `current` is the spec the service has
/// (updates): a spec without new credentials, or with the marker clients are shown, keeps
/// the current ones, and credentials equal to the current ones keep their sealed bytes (so an
/// update that repeats `--with-registry-auth` changes nothing).
pub fn seal_spec(
    ca_key_pem: &str,
    spec: &mut ServiceSpec,
    current: Option<&ServiceSpec>,
) -> Result<(), String> {
    let auth = &mut spec.task.container.registry_auth;
    let kept = || {
        current
            .map(|c| c.task.container.registry_auth.clone())
            .unwrap_or_default()
    };
    if auth.clear.is_empty() {
        if auth.sealed.is_empty() || auth.sealed == SEALED_MARKER {
            *auth = kept();
            return Ok(());
        }
        return Err(
            "registry_auth.sealed is written by the managers; send credentials in registry_auth.clear (swarmctl service create --with-registry-auth)"
                .into(),
        );
    }
    if auth.clear.len() > MAX_AUTH_BYTES {
        return Err(format!(
            "registry credentials of {} bytes; at most {MAX_AUTH_BYTES} are accepted",
            auth.clear.len()
        ));
    }
    let old = kept();
    if !old.sealed.is_empty() && open(ca_key_pem, &old.sealed).as_deref() == Ok(&auth.clear) {
        *auth = old;
        return Ok(());
    }
    *auth = RegistryAuth {
        clear: String::new(),
        sealed: seal(ca_key_pem, &auth.clear),
    }
    .into();
    Ok(())
}

/// What clients see of a spec's credentials.
pub fn redact_spec(spec: &mut ServiceSpec) {
    redact(&mut spec.task.container.registry_auth);
}

pub fn redact(auth: &mut RegistryAuth) {
    if !auth.is_empty() {
        *auth = RegistryAuth {
            clear: String::new(),
            sealed: SEALED_MARKER.into(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----";

    fn spec(clear: &str, sealed: &str) -> ServiceSpec {
        let mut s = ServiceSpec {
            name: "s".into(),
            labels: Default::default(),
            task: Default::default(),
            mode: swarm_types::spec::ServiceMode::Replicated { replicas: 1 },
            update_config: Default::default(),
            rollback_config: Default::default(),
            endpoint: Default::default(),
        };
        s.task.container.registry_auth = RegistryAuth {
            clear: clear.into(),
            sealed: sealed.into(),
        }
        .into();
        s
    }

    #[test]
    fn seals_and_opens_only_under_the_same_key() {
        let s = seal(KEY, "dXNlcjpwdw==");
        assert!(!s.contains("dXNlcjpwdw"));
        assert_ne!(s, seal(KEY, "dXNlcjpwdw=="), "a fresh nonce every time");
        assert_eq!(open(KEY, &s).unwrap(), "dXNlcjpwdw==");
        assert!(open("another key", &s).unwrap_err().contains("do not open"));
        assert!(open(KEY, "!!").is_err());
        assert!(open(KEY, "AAAA").unwrap_err().contains("truncated"));
    }

    #[test]
    fn specs_are_sealed_kept_and_refused_as_documented() {
        let mut created = spec("dXNlcjpwdw==", "");
        seal_spec(KEY, &mut created, None).unwrap();
        let a = created.task.container.registry_auth.clone();
        assert!(a.clear.is_empty() && !a.sealed.is_empty());
        // An update without credentials, or with the marker, keeps them.
        for (c, s) in [("", ""), ("", SEALED_MARKER)] {
            let mut u = spec(c, s);
            seal_spec(KEY, &mut u, Some(&created)).unwrap();
            assert_eq!(u.task.container.registry_auth, a);
        }
        // The same credentials again: the same sealed bytes (no spurious update).
        let mut same = spec("dXNlcjpwdw==", "");
        seal_spec(KEY, &mut same, Some(&created)).unwrap();
        assert_eq!(same.task.container.registry_auth, a);
        // New credentials: sealed anew.
        let mut new = spec("b3RoZXI6cHc=", "");
        seal_spec(KEY, &mut new, Some(&created)).unwrap();
        let n = &new.task.container.registry_auth;
        assert_eq!(open(KEY, &n.sealed).unwrap(), "b3RoZXI6cHc=");
        // A client cannot bring its own ciphertext, nor a huge credential.
        assert!(seal_spec(KEY, &mut spec("", "forged"), None).is_err());
        assert!(seal_spec(KEY, &mut spec(&"a".repeat(MAX_AUTH_BYTES + 1), ""), None).is_err());
        // Clients see only the marker.
        redact_spec(&mut created);
        assert_eq!(created.task.container.registry_auth.sealed, SEALED_MARKER);
        let mut none = spec("", "");
        redact_spec(&mut none);
        assert!(none.task.container.registry_auth.is_empty());
    }
}
