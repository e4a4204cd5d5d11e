//! Tests of the node's network naming and nftables ruleset, without touching the host.

use super::*;

#[test]
fn names_fit_linux_interface_names_and_carry_the_node_tag() {
    let dp = DataPlane::new("abcdefghijklmnopqrstuvwxy", None);
    for n in [
        dp.bridge_name(MAX_VNI_FOR_TEST),
        dp.vxlan_name(MAX_VNI_FOR_TEST),
        dp.veth_name("0123456789abcdef", 15),
    ] {
        assert!(n.len() <= 15, "{n} is longer than IFNAMSIZ-1");
        assert!(n.contains("abcde"), "{n} lacks the node tag");
    }
    assert_eq!(dp.bridge_name(4097), "sbabcde-1001");
}

const MAX_VNI_FOR_TEST: u32 = (1 << 24) - 1;

#[test]
fn the_ruleset_isolates_networks_keeps_internal_ones_in_and_masquerades_the_rest() {
    let mut nets = BTreeMap::new();
    nets.insert(
        4097,
        LocalNet {
            subnet: "10.0.1.0/24".parse().unwrap(),
            internal: false,
            gateway: None,
        },
    );
    nets.insert(
        4098,
        LocalNet {
            subnet: "10.0.2.0/24".parse().unwrap(),
            internal: true,
            gateway: None,
        },
    );
    let dp = DataPlane::new("abcdefghij", None);
    let r = ruleset("abcde", &nets, &Default::default(), |v| dp.bridge_name(v));
    assert!(r.starts_with("table inet swarm-abcde\ndelete table inet swarm-abcde\n"));
    assert!(r.contains(
        "iifname \"sbabcde-1001\" oifname \"sbabcde-*\" oifname != \"sbabcde-1001\" drop"
    ));
    assert!(r.contains("iifname \"sbabcde-1002\" oifname != \"sbabcde-1002\" drop"));
    assert!(r.contains("ip saddr 10.0.1.0/24 oifname != \"sbabcde-1001\""));
    assert!(
        !r.contains("ip saddr 10.0.2.0/24"),
        "internal networks are not masqueraded"
    );
}
