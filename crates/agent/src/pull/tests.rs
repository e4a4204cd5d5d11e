//! Tests of image pulls on a node: which errors are the node's own.

#[test]
fn node_local_pull_errors() {
    use super::is_node_local;
    assert!(is_node_local(
        "no registry reachable: https://a: connection refused"
    ));
    assert!(is_node_local("storing web:1: No space left on device"));
    assert!(is_node_local(
        "no cluster registry is known yet (the managers ...)"
    ));
    assert!(!is_node_local(
        "registry answered 404 Not Found for https://a/v2/x/manifests/1: MANIFEST_UNKNOWN"
    ));
    assert!(!is_node_local("registry answered 401 Unauthorized for ..."));
}

#[test]
fn sizes_read_like_docker() {
    assert_eq!(super::human_bytes(999), "999 B");
    assert_eq!(super::human_bytes(12_345_678), "12.3 MB");
    assert_eq!(super::human_bytes(212_000_000), "212.0 MB");
    assert_eq!(super::human_bytes(3_500_000_000), "3.5 GB");
}

#[test]
fn loopback_hosts() {
    assert!(super::is_loopback("127.0.0.1:5000"));
    assert!(super::is_loopback("localhost:5000"));
    assert!(super::is_loopback("[::1]:5000"));
    assert!(!super::is_loopback("198.18.0.2:5000"));
    assert!(!super::is_loopback("registry.example:443"));
}
