//! Checks a recorded history.
//!
//! Linearizability: each service (a key) is a register whose value is `Option<Value>` (absent
//! or a spec). The search is Wing & Gong's with Lowe's memoization (as in Knossos and
//! Porcupine): walk the history's call/return events in time order; at a call, try to
//! linearize that operation now (the model must accept it and produce what the client saw);
//! at the return of an operation not yet linearized, backtrack. A configuration already seen
//! (the set of linearized operations and the model state) is not explored twice.
//! Operations with an unknown outcome return "at infinity" and may be linearized at any point
//! after their call, or never. Operations that certainly failed are left out: if one of them
//! did apply, a read that saw its unique value has no explanation and the check fails.

use super::history::{Input, Op, Outcome, Value};
use std::collections::HashSet;
use std::time::Duration;

type State = Option<Value>;

/// The model: the state after `op` is applied to `s`, or `None` when `op` cannot take effect
/// there with the outcome the client saw.
fn step(s: &State, op: &Op) -> Option<State> {
    let seen = match &op.outcome {
        Outcome::Ok(v) => Some(v),
        Outcome::Unknown(_) => None,
        Outcome::Fail(_) => return None,
    };
    match (&op.input, s) {
        (Input::Create(v), None) => Some(Some(v.clone())),
        (Input::Update(v), Some(_)) => Some(Some(v.clone())),
        (Input::Scale(r), Some(cur)) => Some(Some(Value {
            replicas: *r,
            ..cur.clone()
        })),
        (Input::Remove, Some(_)) => Some(None),
        (Input::Read, s) => match seen {
            Some(v) if v == s => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    call: bool,
    /// Linked list over events still in play.
    prev: usize,
    next: usize,
}

const HEAD: usize = usize::MAX;

/// Why a key's history is not linearizable, with the operations to look at.
#[derive(Debug, Clone)]
pub struct NotLinearizable {
    pub key: String,
    /// How far the longest partial linearization got (its operations in order).
    pub longest_prefix: Vec<u64>,
    /// Operations that were pending where the search got stuck.
    pub stuck_at: String,
}

/// Result of the search: `Ok(configurations explored)`, or the evidence.
pub fn check_key(key: &str, ops: &[&Op]) -> Result<usize, NotLinearizable> {
    check_key_from(key, ops, None, BUDGET)
}

/// Configurations [`check_key`] explores before it calls a history inconclusive.
pub const BUDGET: usize = 2_000_000;

/// Like [`check_key`], from a known initial state. After `budget` explored configurations
/// the search gives up and returns `Ok(n)` with `n > budget`: inconclusive, which callers
/// report (histories with many concurrent unknown outcomes can take exponential time).
pub fn check_key_from(
    key: &str,
    ops: &[&Op],
    init: State,
    budget: usize,
) -> Result<usize, NotLinearizable> {
    let ops = relevant(ops);
    let n = ops.len();
    let Events {
        mut ev,
        ret_of,
        infinite,
    } = events(&ops);
    let m = ev.len();
    let mut head = if m == 0 { HEAD } else { 0 };
    let words = n.div_ceil(64).max(1);
    let mut linearized = vec![0u64; words];
    let mut state = init;
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    // (call event index, state before)
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut longest: Vec<u64> = Vec::new();
    let mut explored = 0usize;

    fn lift(ev: &mut [Event], head: &mut usize, i: usize) {
        let (p, nx) = (ev[i].prev, ev[i].next);
        if p == HEAD {
            *head = nx;
        } else {
            ev[p].next = nx;
        }
        if nx != HEAD {
            ev[nx].prev = p;
        }
    }
    fn unlift(ev: &mut [Event], head: &mut usize, i: usize) {
        let (p, nx) = (ev[i].prev, ev[i].next);
        if p == HEAD {
            *head = i;
        } else {
            ev[p].next = i;
        }
        if nx != HEAD {
            ev[nx].prev = i;
        }
    }

    let mut cur = head;
    loop {
        if cur == HEAD || (!ev[cur].call && infinite[ev[cur].op]) {
            // Every operation with a known end is linearized; pending unknowns never took
            // effect.
            return Ok(explored);
        }
        explored += 1;
        if explored > budget {
            return Ok(explored);
        }
        let e = ev[cur];
        if e.call {
            let op = ops[e.op];
            if let Some(next_state) = step(&state, op) {
                let mut lin = linearized.clone();
                lin[e.op / 64] |= 1 << (e.op % 64);
                if cache.insert((lin.clone(), next_state.clone())) {
                    stack.push((cur, state.clone()));
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|(c, _)| ops[ev[*c].op].id).collect();
                    }
                    state = next_state;
                    linearized = lin;
                    let r = ret_of[e.op];
                    lift(&mut ev, &mut head, cur);
                    lift(&mut ev, &mut head, r);
                    cur = head;
                    continue;
                }
            }
            cur = e.next;
        } else {
            // A return whose operation could not be linearized before it: backtrack.
            let Some((c, prev_state)) = stack.pop() else {
                let pending: Vec<String> = {
                    let mut v = Vec::new();
                    let mut i = head;
                    while i != HEAD && v.len() < 8 {
                        if ev[i].call {
                            v.push(ops[ev[i].op].line());
                        }
                        i = ev[i].next;
                    }
                    v
                };
                return Err(NotLinearizable {
                    key: key.to_string(),
                    longest_prefix: longest,
                    stuck_at: format!(
                        "{} must take effect before it returned, and no order explains it; pending then:\n  {}",
                        ops[e.op].line(),
                        pending.join("\n  ")
                    ),
                });
            };
            let op = ev[c].op;
            state = prev_state;
            linearized[op / 64] &= !(1 << (op % 64));
            unlift(&mut ev, &mut head, ret_of[op]);
            unlift(&mut ev, &mut head, c);
            cur = ev[c].next;
        }
    }
}

/// The operations the search must order: failed ones and reads without a value cannot have
/// taken effect visibly; an unknown update whose unique value nobody saw, or an unknown scale
/// to a replica count nobody saw, can be left out exactly (had it applied, its effect was
/// overwritten before any read; the ops after it are valid either way). Without this, every
/// subset of unobserved unknowns would be explored.
fn relevant<'a>(ops: &[&'a Op]) -> Vec<&'a Op> {
    let seen: Vec<&Value> = ops
        .iter()
        .filter_map(|o| match (&o.input, &o.outcome) {
            (Input::Read, Outcome::Ok(Some(v))) => Some(v),
            _ => None,
        })
        .collect();
    let unobserved = |o: &Op| match (&o.input, &o.outcome) {
        (Input::Update(v), Outcome::Unknown(_)) => !seen.iter().any(|s| s.w == v.w),
        (Input::Scale(r), Outcome::Unknown(_)) => !seen.iter().any(|s| s.replicas == *r),
        _ => false,
    };
    ops.iter()
        .copied()
        .filter(|o| !matches!(o.outcome, Outcome::Fail(_)))
        .filter(|o| o.input != Input::Read || matches!(o.outcome, Outcome::Ok(_)))
        .filter(|o| !unobserved(o))
        .collect()
}

/// The calls and returns of `ops` in time order, as a doubly linked list the search lifts
/// entries out of; where each operation returns, and whether it never did (unknown outcome).
struct Events {
    ev: Vec<Event>,
    ret_of: Vec<usize>,
    infinite: Vec<bool>,
}

fn events(ops: &[&Op]) -> Events {
    let n = ops.len();
    // Events in time order; an unknown outcome returns at infinity.
    let ret = |o: &Op| match o.outcome {
        Outcome::Unknown(_) => Duration::MAX,
        _ => o.end,
    };
    let mut order: Vec<(Duration, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        order.push((o.start, true, i));
        order.push((ret(o), false, i));
    }
    // At equal times a return comes first: the earlier operation finished before the later
    // one began.
    order.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut ev: Vec<Event> = order
        .iter()
        .map(|(_, call, op)| Event {
            op: *op,
            call: *call,
            prev: HEAD,
            next: HEAD,
        })
        .collect();
    let m = ev.len();
    for (i, e) in ev.iter_mut().enumerate() {
        e.prev = if i == 0 { HEAD } else { i - 1 };
        e.next = if i + 1 == m { HEAD } else { i + 1 };
    }
    let mut ret_of = vec![0usize; n];
    let mut infinite = vec![false; n];
    for (i, e) in ev.iter().enumerate() {
        if !e.call {
            ret_of[e.op] = i;
            infinite[e.op] = ret(ops[e.op]) == Duration::MAX;
        }
    }
    Events {
        ev,
        ret_of,
        infinite,
    }
}

/// Acknowledged writes that a later read lost: a write `a` that returned ok, and a read that
/// began after `a` returned yet shows a value whose write (or a removal) had returned before
/// `a` began (so it cannot be ordered after `a`). Cheap and explains itself; the
/// linearizability search finds the same and more.
pub fn lost_writes(ops: &[&Op]) -> Vec<String> {
    let mut out = Vec::new();
    let writes: Vec<&&Op> = ops
        .iter()
        .filter(|o| o.input.is_write() && o.outcome == Outcome::Ok(None))
        .collect();
    for r in ops.iter().filter(|o| o.input == Input::Read) {
        let Outcome::Ok(seen) = &r.outcome else {
            continue;
        };
        for a in writes.iter().filter(|a| a.end < r.start) {
            // Which write produced what the read saw (by its id)? Ids are unique per write,
            // but a harness retry may resend one: a write that certainly failed produced
            // nothing, and of several the latest that began before the read counts.
            let producer = ops
                .iter()
                .filter(|o| match (&o.input, seen) {
                    (Input::Create(v) | Input::Update(v), Some(s)) => {
                        v.w == s.w && !matches!(o.outcome, Outcome::Fail(_)) && o.start < r.end
                    }
                    _ => false,
                })
                .max_by_key(|o| o.end);
            let older = match (seen, producer) {
                // Absent: every removal that returned before `a` began.
                (None, _) => {
                    let later_rm = ops.iter().any(|o| {
                        o.input == Input::Remove
                            && !matches!(o.outcome, Outcome::Fail(_))
                            && o.start < r.end
                            && (o.end >= a.start || matches!(o.outcome, Outcome::Unknown(_)))
                    });
                    !later_rm && matches!(a.input, Input::Create(_) | Input::Update(_))
                }
                (Some(_), Some(p)) => {
                    p.id != a.id
                        && !matches!(p.outcome, Outcome::Unknown(_))
                        && p.end < a.start
                        && matches!(a.input, Input::Create(_) | Input::Update(_) | Input::Remove)
                }
                (Some(_), None) => false,
            };
            if older {
                out.push(format!(
                    "acknowledged write lost: {}\n  then read {}",
                    a.line(),
                    r.line()
                ));
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(w: &str, r: u64) -> Value {
        Value {
            w: w.into(),
            replicas: r,
            gen: String::new(),
        }
    }

    fn op(id: u64, input: Input, s: u64, e: u64, outcome: Outcome) -> Op {
        Op {
            id,
            client: id as usize % 3,
            key: "k".into(),
            via: "n1".into(),
            input,
            start: Duration::from_millis(s),
            end: Duration::from_millis(e),
            outcome,
        }
    }

    fn ok() -> Outcome {
        Outcome::Ok(None)
    }
    fn saw(x: Option<Value>) -> Outcome {
        Outcome::Ok(x)
    }

    fn check(h: &[Op]) -> Result<usize, NotLinearizable> {
        let r: Vec<&Op> = h.iter().collect();
        check_key("k", &r)
    }

    #[test]
    fn a_retried_write_with_the_same_value_is_not_a_lost_write() {
        // Soak seed 1806 step 38: a create refused ("no quorum"), the same create retried and
        // acknowledged, then read. The failed first attempt was taken as the producer of what
        // the read saw, so the acknowledged retry looked lost.
        let h = vec![
            op(
                1,
                Input::Create(v("a", 1)),
                0,
                10,
                Outcome::Fail("no quorum".into()),
            ),
            op(2, Input::Create(v("a", 1)), 20, 30, ok()),
            op(3, Input::Read, 40, 41, saw(Some(v("a", 1)))),
        ];
        let r: Vec<&Op> = h.iter().collect();
        assert!(lost_writes(&r).is_empty(), "{:?}", lost_writes(&r));
        assert!(check(&h).is_ok());
        // A real loss is still caught: an update acknowledged, then the create's value read.
        let h = [
            op(1, Input::Create(v("a", 1)), 0, 10, ok()),
            op(2, Input::Update(v("b", 1)), 20, 30, ok()),
            op(3, Input::Read, 40, 41, saw(Some(v("a", 1)))),
        ];
        let r: Vec<&Op> = h.iter().collect();
        assert_eq!(lost_writes(&r).len(), 1);
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            op(1, Input::Create(v("a", 1)), 0, 10, ok()),
            op(2, Input::Read, 11, 12, saw(Some(v("a", 1)))),
            op(3, Input::Scale(3), 13, 14, ok()),
            op(4, Input::Read, 15, 16, saw(Some(v("a", 3)))),
            op(5, Input::Remove, 17, 18, ok()),
            op(6, Input::Read, 19, 20, saw(None)),
        ];
        assert!(check(&h).is_ok());
    }

    #[test]
    fn stale_read_after_acknowledged_write_is_caught() {
        let h = vec![
            op(1, Input::Create(v("a", 1)), 0, 10, ok()),
            op(2, Input::Update(v("b", 1)), 11, 20, ok()),
            op(3, Input::Read, 21, 22, saw(Some(v("a", 1)))),
        ];
        let e = check(&h).expect_err("a read after an acknowledged update saw the old value");
        assert!(e.stuck_at.contains("read"), "{e:?}");
        let r: Vec<&Op> = h.iter().collect();
        assert_eq!(lost_writes(&r).len(), 1);
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        let h = vec![
            op(1, Input::Create(v("a", 1)), 0, 5, ok()),
            op(2, Input::Update(v("b", 1)), 10, 30, ok()),
            op(3, Input::Update(v("c", 1)), 12, 28, ok()),
            // Both orders are possible; the reads pin one: c then b.
            op(4, Input::Read, 15, 25, saw(Some(v("c", 1)))),
            op(5, Input::Read, 31, 32, saw(Some(v("b", 1)))),
        ];
        assert!(check(&h).is_ok());
        // But not flip-flopping after both returned.
        let mut h2 = h.clone();
        h2.push(op(6, Input::Read, 33, 34, saw(Some(v("c", 1)))));
        assert!(check(&h2).is_err());
    }

    #[test]
    fn unknown_write_may_apply_late_or_never_but_a_failed_one_never() {
        let base = vec![
            op(1, Input::Create(v("a", 1)), 0, 5, ok()),
            op(
                2,
                Input::Update(v("b", 1)),
                10,
                20,
                Outcome::Unknown("timeout".into()),
            ),
            op(3, Input::Read, 30, 31, saw(Some(v("a", 1)))),
        ];
        assert!(check(&base).is_ok(), "never applied");
        let mut late = base.clone();
        late.push(op(4, Input::Read, 40, 41, saw(Some(v("b", 1)))));
        assert!(check(&late).is_ok(), "applied after the first read");
        // The same write reported as certainly failed must never be seen.
        let mut failed = late.clone();
        failed[1].outcome = Outcome::Fail("no quorum".into());
        let e = check(&failed).expect_err("a failed write was applied");
        assert!(!e.longest_prefix.is_empty());
        // Once seen, it cannot be unseen.
        let mut flip = late.clone();
        flip.push(op(5, Input::Read, 50, 51, saw(Some(v("a", 1)))));
        assert!(check(&flip).is_err());
    }

    #[test]
    fn acknowledged_remove_cannot_be_followed_by_the_old_value() {
        let h = vec![
            op(1, Input::Create(v("a", 2)), 0, 5, ok()),
            op(2, Input::Remove, 6, 8, ok()),
            op(3, Input::Read, 9, 10, saw(Some(v("a", 2)))),
        ];
        assert!(check(&h).is_err());
        // An ok update of an absent service is impossible too.
        let h = vec![op(1, Input::Update(v("a", 2)), 0, 5, ok())];
        assert!(check(&h).is_err());
    }

    #[test]
    fn many_concurrent_unknowns_stay_tractable() {
        let mut h = vec![op(0, Input::Create(v("a", 1)), 0, 1, ok())];
        for i in 1..40u64 {
            h.push(op(
                i,
                Input::Update(v(&format!("u{i}"), 1)),
                10 + i,
                20 + i,
                Outcome::Unknown("t".into()),
            ));
        }
        h.push(op(100, Input::Read, 200, 201, saw(Some(v("u7", 1)))));
        h.push(op(101, Input::Read, 202, 203, saw(Some(v("u7", 1)))));
        let n = check(&h).expect("linearizable");
        assert!(n < 100_000, "explored {n}");
        // Observed unknowns, interleaved with reads, are searched without blowing up.
        let mut h = vec![op(0, Input::Create(v("a", 1)), 0, 1, ok())];
        for i in 1..11u64 {
            h.push(op(
                i,
                Input::Update(v(&format!("u{i}"), 1)),
                10 + i,
                20 + i,
                Outcome::Unknown("t".into()),
            ));
            h.push(op(
                100 + i,
                Input::Read,
                300 + 2 * i,
                301 + 2 * i,
                saw(Some(v(&format!("u{}", 11 - i), 1))),
            ));
        }
        let n = check(&h).expect("linearizable: the unknowns applied in reverse order");
        assert!(n < 200_000, "explored {n}");
        h.push(op(200, Input::Read, 400, 401, saw(Some(v("u3", 1)))));
        assert!(check(&h).is_err(), "u3 was overwritten by u1 for good");
    }
}
