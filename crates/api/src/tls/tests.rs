//! Tests of mutual TLS between nodes: which certificates a client and server accept.

use super::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// A cluster CA (PEM) and its issuer.
fn ca() -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "swarm-root-ca");
    let pem = p.self_signed(&key).unwrap().pem();
    (pem.clone(), Issuer::from_ca_cert_pem(&pem, key).unwrap())
}

/// A node certificate as the manager's CA issues it: CN node id, OU role, O cluster.
fn node_certs(ca_pem: &str, issuer: &Issuer<'_, KeyPair>, node: &str, role: &str) -> NodeCerts {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![SERVER_NAME.to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, node);
    p.distinguished_name
        .push(DnType::OrganizationalUnitName, role);
    p.distinguished_name.push(DnType::OrganizationName, "c1");
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = p.signed_by(&key, issuer).unwrap().pem();
    NodeCerts::new(ca_pem, &cert, &key.serialize_pem()).unwrap()
}

/// Serves TLS handshakes with `server` certificates on a loopback port until dropped.
async fn tls_server(server: &NodeCerts) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(server).unwrap());
    let h = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    // Keep the connection open until the client is done.
                    let _ = tokio::io::AsyncReadExt::read(&mut tls, &mut [0u8; 1]).await;
                }
            });
        }
    });
    (addr, h)
}

async fn handshake(addr: &str, cfg: Arc<ClientConfig>) -> io::Result<()> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(SERVER_NAME).unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(unwrap_refusal)
        .map(drop)
}

#[tokio::test]
async fn clients_refuse_a_server_with_a_worker_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (ca_pem, issuer) = ca();
    let admin = node_certs(&ca_pem, &issuer, "admin-1", "admin");
    let client = client_config(&admin).unwrap();

    let manager = node_certs(&ca_pem, &issuer, "m1", "manager");
    let (addr, h1) = tls_server(&manager).await;
    handshake(&addr, client.clone())
        .await
        .expect("a manager's certificate is accepted");

    // Same CA, valid chain and name: only the OU says this is not a manager.
    for role in ["worker", "admin"] {
        let other = node_certs(&ca_pem, &issuer, "w1", role);
        let (addr, h) = tls_server(&other).await;
        let e = handshake(&addr, client.clone()).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("presented a {role} certificate (node w1)"))
                && msg.contains("connect to a manager's address"),
            "{msg}"
        );
        // Through a tonic channel the message survives as a TLS error.
        let err = connect(&addr, client.clone())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("tls handshake with") && err.contains("not a manager's"),
            "{err}"
        );
        h.abort();
    }

    // A joining node (CA pinned by its token) refuses a worker as well.
    let digest = swarm_types::token::ca_digest(certs_from_pem(&ca_pem).unwrap()[0].as_ref());
    let worker = node_certs(&ca_pem, &issuer, "w2", "worker");
    let (addr, h2) = tls_server(&worker).await;
    let e = handshake(&addr, pinned_client_config(&digest).unwrap())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("worker certificate"), "{e}");
    handshake(
        &tls_server(&manager).await.0,
        pinned_client_config(&digest).unwrap(),
    )
    .await
    .expect("a joining node accepts a manager");
    h1.abort();
    h2.abort();
}

#[tokio::test]
async fn a_call_to_one_node_accepts_only_that_nodes_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (ca_pem, issuer) = ca();
    let manager = node_certs(&ca_pem, &issuer, "m1", "manager");
    let worker = node_certs(&ca_pem, &issuer, "w1", "worker");
    let (addr, h) = tls_server(&worker).await;
    handshake(&addr, node_client_config(&manager, "w1").unwrap())
        .await
        .expect("the named worker is accepted");
    // Another node at the address (a stale one in the store) is refused, even a manager.
    let e = handshake(&addr, node_client_config(&manager, "w2").unwrap())
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("presented the certificate of node w1, not of node w2"),
        "{e}"
    );
    let other_ca = ca();
    let stranger = node_certs(&other_ca.0, &other_ca.1, "w1", "worker");
    let (addr2, h2) = tls_server(&stranger).await;
    assert!(
        handshake(&addr2, node_client_config(&manager, "w1").unwrap())
            .await
            .is_err(),
        "a certificate of another CA never passes"
    );
    h.abort();
    h2.abort();
}
