//! Tests of the control API's helpers (name suggestions).

use super::*;

#[test]
fn a_near_miss_name_is_suggested() {
    let items = [("id1", "web", &1), ("id2", "worker", &2)];
    let e = resolve("service", "wbe", items.iter().map(|(a, b, c)| (*a, *b, *c))).unwrap_err();
    assert_eq!(e.message(), "service wbe not found; did you mean web?");
    let e = resolve(
        "service",
        "zzzzzz",
        items.iter().map(|(a, b, c)| (*a, *b, *c)),
    )
    .unwrap_err();
    assert_eq!(e.message(), "service zzzzzz not found");
    assert_eq!(edit_distance("kitten", "sitting"), 3);
}
