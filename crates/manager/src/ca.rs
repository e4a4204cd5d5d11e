//! The cluster's root certificate authority. Created at cluster init; its digest is pinned by
//! join tokens. (Issuing node certificates and mutual TLS build on this.)

use swarm_types::objects::RootCa;

#[derive(Debug, thiserror::Error)]
#[error("create root CA: {0}")]
pub struct CaError(String);

/// Generates a new self-signed root CA (ECDSA P-256, 20 years).
pub fn generate_root_ca(cluster_id: &str) -> Result<RootCa, CaError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate().map_err(|e| CaError(e.to_string()))?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| CaError(e.to_string()))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "swarm-root-ca");
    params
        .distinguished_name
        .push(DnType::OrganizationName, cluster_id);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = std::time::SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + std::time::Duration::from_secs(20 * 365 * 24 * 3600)).into();
    let cert = params
        .self_signed(&key)
        .map_err(|e| CaError(e.to_string()))?;
    Ok(RootCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        digest: swarm_types::token::ca_digest(cert.der()),
    })
}

/// Digest of a PEM certificate, for checking a CA against a join token.
pub fn pem_digest(pem: &str) -> Option<String> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let der = base64_decode(&body)?;
    Some(swarm_types::token::ca_digest(&der))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b'\r' | b'\n' | b' ' => continue,
            _ => return None,
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_pem_matches_digest_of_der() {
        let ca = generate_root_ca("c1").unwrap();
        assert_eq!(pem_digest(&ca.cert_pem).unwrap(), ca.digest);
        assert_eq!(ca.digest.len(), swarm_types::token::DIGEST_LEN);
    }
}
