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

/// Signs a certificate for `csr_pem` with the root CA: CN = `common_name`, OU = `role`,
/// O = `cluster_id`, valid for `expiry`, usable for TLS server and client authentication.
pub fn issue(
    root: &RootCa,
    csr_pem: &str,
    common_name: &str,
    role: &str,
    cluster_id: &str,
    expiry: std::time::Duration,
) -> Result<String, CaError> {
    issue_with_names(root, csr_pem, common_name, role, cluster_id, expiry, &[])
}

/// Like [`issue`], with extra subject alternative names (IP addresses or DNS names) besides
/// [`swarm_api::tls::SERVER_NAME`]: the registry's server certificate names the addresses
/// Docker and skopeo connect to.
pub fn issue_with_names(
    root: &RootCa,
    csr_pem: &str,
    common_name: &str,
    role: &str,
    cluster_id: &str,
    expiry: std::time::Duration,
    extra_names: &[String],
) -> Result<String, CaError> {
    use rcgen::{
        CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
        Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    };
    let key = KeyPair::from_pem(&root.key_pem).map_err(|e| CaError(format!("CA key: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(&root.cert_pem, key)
        .map_err(|e| CaError(format!("CA certificate: {e}")))?;
    let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| CaError(format!("invalid certificate signing request: {e}")))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationalUnitName, role);
    dn.push(DnType::OrganizationName, cluster_id);
    let p = &mut csr.params;
    p.distinguished_name = dn;
    p.subject_alt_names = vec![SanType::DnsName(
        swarm_api::tls::SERVER_NAME
            .try_into()
            .map_err(|e| CaError(format!("{e}")))?,
    )];
    for n in extra_names {
        p.subject_alt_names
            .push(match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    n.as_str()
                        .try_into()
                        .map_err(|e| CaError(format!("name {n:?}: {e}")))?,
                ),
            });
    }
    p.is_ca = IsCa::NoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = std::time::SystemTime::now();
    // A little slack for clocks that are slightly behind.
    p.not_before = (now - std::time::Duration::from_secs(300)).into();
    p.not_after = (now + expiry).into();
    p.serial_number = Some(SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
    p.use_authority_key_identifier_extension = true;
    let cert = csr
        .signed_by(&issuer)
        .map_err(|e| CaError(format!("sign: {e}")))?;
    Ok(cert.pem())
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
    fn issued_certificates_carry_identity_and_verify() {
        let ca = generate_root_ca("c1").unwrap();
        let (key, csr) = swarm_api::tls::new_key_and_csr().unwrap();
        let cert = issue(
            &ca,
            &csr,
            "node1",
            "worker",
            "c1",
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
        let der = swarm_api::tls::certs_from_pem(&cert).unwrap();
        let id = swarm_api::tls::identity_of(der[0].as_ref()).unwrap();
        assert_eq!(id.node_id, "node1");
        assert_eq!(id.role, "worker");
        assert_eq!(id.cluster_id, "c1");
        let (left, total) = swarm_api::tls::validity_of(&cert).unwrap();
        assert!(left > 3000 && total >= 3600, "{left} {total}");
        // Key and certificate load together into a TLS identity.
        swarm_api::tls::NodeCerts::new(&ca.cert_pem, &cert, &key).unwrap();
        assert!(issue(
            &ca,
            "garbage",
            "n",
            "worker",
            "c1",
            std::time::Duration::from_secs(60)
        )
        .is_err());
    }

    #[test]
    fn digest_of_pem_matches_digest_of_der() {
        let ca = generate_root_ca("c1").unwrap();
        assert_eq!(pem_digest(&ca.cert_pem).unwrap(), ca.digest);
        assert_eq!(ca.digest.len(), swarm_types::token::DIGEST_LEN);
    }
}
