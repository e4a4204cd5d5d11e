//! The scheduler: a pure function from a view of the store to a placement plan, with SwarmKit's
//! semantics.
//!
//! For every (task, node) pair the filter pipeline runs in this order, and the first filter that
//! fails names the reason the node was refused:
//!
//! 1. node ready (`node not ready`, `node is down`)
//! 2. availability active (`node is paused`, `node is drained`)
//! 3. resources: the task's reservations fit into the node's capacity minus what its load
//!    reserves (`insufficient cpu`, `insufficient memory`; a reservation of 0 always fits)
//! 4. constraints (`constraint node.labels.zone==east not met`)
//! 5. max replicas per node (`max replicas per node (2) reached`)
//!
//! Among the nodes that pass, the scheduler follows the spread preferences (a tree of label
//! values: at each level the branch with the fewest tasks of the service), then picks the node
//! with the fewest tasks of the service, then the fewest tasks overall, then the lowest node id.
//! A plan accounts for its own earlier decisions (counts and reserved resources) as it goes.
//!
//! # Cost
//!
//! Pending tasks are grouped by (service, spec). Filters 1, 2 and 4 do not change while a plan is
//! made, so they run once per group and node. Each group then places its tasks from a priority
//! queue keyed by (tasks of the service, tasks overall, node id) per branch of the preference
//! tree; filters 3 and 5 are re-checked only for the node popped. Both only ever get stricter as
//! the plan grows, so a node that fails them for a group is dropped from that group for good, and
//! the first task of a group that finds no node is followed by all the others of the group with
//! the same reason (computed once). Altogether `O(tasks in the store + pending · log nodes +
//! groups · nodes · constraints)`, plus the number of branches per level for spread preferences.

use crate::constraint::Constraint;
use crate::ids::{NodeId, ServiceId, TaskId};
use crate::objects::{Node, NodeState, Task};
use crate::spec::{Availability, TaskSpec};
use crate::store::StoreState;
use crate::task::TaskState;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// What the scheduler decided for a batch of pending tasks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedulePlan {
    /// Tasks to assign, in decision order.
    pub assignments: Vec<(TaskId, NodeId)>,
    /// Tasks that could not be placed, with a human-readable reason per task.
    pub unplaced: Vec<(TaskId, String)>,
}

/// Whether a task occupies its node: assigned, not asked to stop and not finished. Such a task's
/// reservations are held on the node and it counts towards spreading and max-per-node.
pub fn counts_as_load(task: &Task) -> bool {
    task.node_id.is_some()
        && task.desired_state <= TaskState::Running
        && !task.status.state.is_terminal()
}

/// The label a `spread=node.labels.NAME` preference spreads over; `None` for anything else
/// (specs are validated before they are stored, so that is ignored).
fn spread_label(pref: &str) -> Option<&str> {
    pref.trim()
        .strip_prefix("spread=")
        .and_then(|l| l.trim().strip_prefix("node.labels."))
        .filter(|l| !l.is_empty())
}

/// Why a node was refused for a task: the first filter of the pipeline it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Refusal {
    NotReady,
    Down,
    Paused,
    Drained,
    Cpu,
    Memory,
    /// Index into the group's constraints.
    Constraint(usize),
    MaxReplicas,
}

/// Filters 1 and 2, which depend on the node only.
fn node_refusal(node: &Node) -> Option<Refusal> {
    match node.status.state {
        NodeState::Ready => {}
        NodeState::Down => return Some(Refusal::Down),
        NodeState::Unknown | NodeState::Disconnected => return Some(Refusal::NotReady),
    }
    match node.spec.availability {
        Availability::Active => None,
        Availability::Pause => Some(Refusal::Paused),
        Availability::Drain => Some(Refusal::Drained),
    }
}

/// The per-node load as the plan grows.
struct Load<'a> {
    nodes: Vec<&'a Node>,
    /// Tasks counted as load per node (across services).
    total: Vec<u32>,
    cpu: Vec<i64>,
    memory: Vec<i64>,
}

/// What one task of a group needs from a node (filters 3 and 5).
#[derive(Clone, Copy)]
struct Needs {
    cpu: i64,
    memory: i64,
    /// 0 = unlimited.
    max_per_node: u64,
}

impl Load<'_> {
    /// Filters 3 and 5. `service_count` is the number of tasks of the task's service on `n`.
    fn dynamic_refusal(&self, n: usize, needs: Needs, service_count: u32) -> Option<Refusal> {
        let d = &self.nodes[n].description;
        if needs.cpu > 0 && d.nano_cpus.saturating_sub(self.cpu[n]) < needs.cpu {
            return Some(Refusal::Cpu);
        }
        if needs.memory > 0 && d.memory_bytes.saturating_sub(self.memory[n]) < needs.memory {
            return Some(Refusal::Memory);
        }
        if needs.max_per_node > 0 && u64::from(service_count) >= needs.max_per_node {
            return Some(Refusal::MaxReplicas);
        }
        None
    }
}

/// Pending tasks sharing a service and a spec: they pass the same static filters.
struct Group<'a> {
    spec: &'a TaskSpec,
    tasks: Vec<&'a TaskId>,
}

/// All groups of one service (they share the per-node counts of the service).
struct ServiceGroups<'a> {
    groups: Vec<Group<'a>>,
    /// Node index of each task of the service already counted as load.
    load_on: Vec<u32>,
}

/// Heap key: fewest tasks of the service, then fewest tasks, then lowest node id (nodes are
/// indexed in id order).
type Candidate = Reverse<(u32, u32, u32)>;

/// A branch of the spread-preference tree. Without preferences the tree is a single leaf.
struct Branch {
    /// Tasks of the service on the (statically eligible) nodes under this branch.
    count: u64,
    /// Nodes under this branch not yet found unable to take a task of the group.
    alive: u32,
    parent: Option<usize>,
    /// Sorted by label value, nodes without the label first.
    children: Vec<usize>,
    /// Leaves only.
    heap: BinaryHeap<Candidate>,
}

struct Tree {
    branches: Vec<Branch>,
    /// Leaf of each statically eligible node, by node index.
    leaf_of: Vec<usize>,
}

impl Tree {
    fn build(load: &Load<'_>, eligible: &[u32], labels: &[&str], service_count: &[u32]) -> Tree {
        let new_branch = |parent| Branch {
            count: 0,
            alive: 0,
            parent,
            children: Vec::new(),
            heap: BinaryHeap::new(),
        };
        let mut branches = vec![new_branch(None)];
        let mut leaf_of = vec![0; load.nodes.len()];
        if labels.is_empty() {
            let root = &mut branches[0];
            root.heap = eligible
                .iter()
                .map(|&n| Reverse((service_count[n as usize], load.total[n as usize], n)))
                .collect();
            root.alive = eligible.len() as u32;
            root.count = eligible
                .iter()
                .map(|&n| u64::from(service_count[n as usize]))
                .sum();
            return Tree { branches, leaf_of };
        }
        let mut child_by_key: HashMap<(usize, Option<&str>), usize> = HashMap::new();
        let mut keys: Vec<Option<&str>> = vec![None];
        for &n in eligible {
            let node = load.nodes[n as usize];
            let sc = service_count[n as usize];
            let mut b = 0;
            branches[b].count += u64::from(sc);
            branches[b].alive += 1;
            for label in labels {
                let value = node.spec.labels.get(*label).map(String::as_str);
                b = *child_by_key.entry((b, value)).or_insert_with(|| {
                    branches.push(new_branch(Some(b)));
                    keys.push(value);
                    let c = branches.len() - 1;
                    branches[b].children.push(c);
                    c
                });
                branches[b].count += u64::from(sc);
                branches[b].alive += 1;
            }
            branches[b]
                .heap
                .push(Reverse((sc, load.total[n as usize], n)));
            leaf_of[n as usize] = b;
        }
        for b in &mut branches {
            b.children.sort_by_key(|&c| keys[c]);
        }
        Tree { branches, leaf_of }
    }

    /// Adds `delta` to `alive` (or to `count`) from `b` up to the root.
    fn add_alive(&mut self, mut b: usize, delta: i64) {
        loop {
            let br = &mut self.branches[b];
            br.alive = (i64::from(br.alive) + delta) as u32;
            match br.parent {
                Some(p) => b = p,
                None => return,
            }
        }
    }

    fn add_count(&mut self, mut b: usize) {
        loop {
            let br = &mut self.branches[b];
            br.count += 1;
            match br.parent {
                Some(p) => b = p,
                None => return,
            }
        }
    }

    /// Picks the node for the next task of the group, or `None` when no node can take it.
    /// Nodes found unable to take it are dropped for the rest of the group.
    fn pick(&mut self, load: &Load<'_>, needs: Needs, service_count: &[u32]) -> Option<usize> {
        loop {
            if self.branches[0].alive == 0 {
                return None;
            }
            let mut b = 0;
            while !self.branches[b].children.is_empty() {
                b = *self.branches[b]
                    .children
                    .iter()
                    .filter(|&&c| self.branches[c].alive > 0)
                    .min_by_key(|&&c| self.branches[c].count)
                    .expect("a branch with alive nodes has an alive child");
            }
            while let Some(Reverse((_, _, n))) = self.branches[b].heap.pop() {
                let n = n as usize;
                if load.dynamic_refusal(n, needs, service_count[n]).is_none() {
                    return Some(n);
                }
                self.add_alive(b, -1);
            }
            // The leaf is exhausted; make sure the loop cannot revisit it.
            let rest = self.branches[b].alive;
            if rest > 0 {
                self.add_alive(b, -i64::from(rest));
            }
        }
    }

    /// Records that the node `n` (just returned by `pick`) took a task.
    fn placed(&mut self, load: &Load<'_>, n: usize, service_count: &[u32]) {
        let leaf = self.leaf_of[n];
        self.branches[leaf]
            .heap
            .push(Reverse((service_count[n], load.total[n], n as u32)));
        self.add_count(leaf);
    }
}

/// Decides nodes for `pending` (ids of tasks in state Pending with no node) given the whole
/// store (nodes, and tasks already placed that count as load).
///
/// Tasks are decided service by service in order of first appearance in `pending`, and in
/// `pending` order within a service. A repeated id is decided once; an id missing from the store
/// is reported unplaced.
pub fn schedule(state: &StoreState, pending: &[TaskId]) -> SchedulePlan {
    let mut plan = SchedulePlan {
        assignments: Vec::with_capacity(pending.len()),
        unplaced: Vec::new(),
    };

    // Group the pending tasks by service, then by spec.
    let mut seen: HashSet<&str> = HashSet::with_capacity(pending.len());
    let mut services: Vec<ServiceGroups<'_>> = Vec::new();
    let mut service_index: HashMap<&ServiceId, usize> = HashMap::new();
    for id in pending {
        if !seen.insert(id.as_str()) {
            continue;
        }
        let Some(task) = state.tasks.get(id) else {
            plan.unplaced
                .push((id.clone(), "task not found in the store".to_string()));
            continue;
        };
        let s = *service_index.entry(&task.service_id).or_insert_with(|| {
            services.push(ServiceGroups {
                groups: Vec::new(),
                load_on: Vec::new(),
            });
            services.len() - 1
        });
        let groups = &mut services[s].groups;
        match groups.iter_mut().find(|g| *g.spec == task.spec) {
            Some(g) => g.tasks.push(&task.id),
            None => groups.push(Group {
                spec: &task.spec,
                tasks: vec![&task.id],
            }),
        }
    }
    if services.is_empty() {
        return plan;
    }

    // Current load per node (nodes are indexed in id order).
    let nodes: Vec<&Node> = state.nodes.values().collect();
    let node_index: HashMap<&str, u32> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i as u32))
        .collect();
    let mut load = Load {
        total: vec![0; nodes.len()],
        cpu: vec![0; nodes.len()],
        memory: vec![0; nodes.len()],
        nodes,
    };
    for t in state.tasks.values() {
        let Some(node_id) = &t.node_id else { continue };
        if !counts_as_load(t) || seen.contains(t.id.as_str()) {
            continue;
        }
        let Some(&n) = node_index.get(node_id.as_str()) else {
            continue;
        };
        let (i, r) = (n as usize, &t.spec.resources.reservations);
        load.total[i] += 1;
        load.cpu[i] = load.cpu[i].saturating_add(r.nano_cpus.max(0));
        load.memory[i] = load.memory[i].saturating_add(r.memory_bytes.max(0));
        if let Some(&s) = service_index.get(&t.service_id) {
            services[s].load_on.push(n);
        }
    }
    let base: Vec<Option<Refusal>> = load.nodes.iter().map(|n| node_refusal(n)).collect();

    let mut service_count = vec![0u32; load.nodes.len()];
    let mut eligible: Vec<u32> = Vec::with_capacity(load.nodes.len());
    let mut constraint_refusal: Vec<Option<usize>> = vec![None; load.nodes.len()];
    for service in &services {
        service_count.iter_mut().for_each(|c| *c = 0);
        for &n in &service.load_on {
            service_count[n as usize] += 1;
        }
        for group in &service.groups {
            let placement = &group.spec.placement;
            let constraints: Vec<Option<Constraint>> = placement
                .constraints
                .iter()
                .map(|c| Constraint::parse(c).ok())
                .collect();
            eligible.clear();
            for (n, node) in load.nodes.iter().enumerate() {
                let failed = constraints
                    .iter()
                    .position(|c| !c.as_ref().is_some_and(|c| c.matches(node)));
                constraint_refusal[n] = failed;
                if base[n].is_none() && failed.is_none() {
                    eligible.push(n as u32);
                }
            }
            let labels: Vec<&str> = placement
                .preferences
                .iter()
                .filter_map(|p| spread_label(p))
                .collect();
            let r = &group.spec.resources.reservations;
            let needs = Needs {
                cpu: r.nano_cpus.max(0),
                memory: r.memory_bytes.max(0),
                max_per_node: placement.max_replicas_per_node,
            };
            let mut tree = Tree::build(&load, &eligible, &labels, &service_count);
            for (k, &task) in group.tasks.iter().enumerate() {
                let Some(n) = tree.pick(&load, needs, &service_count) else {
                    let reason = unplaced_reason(
                        &load,
                        &base,
                        &constraint_refusal,
                        placement.constraints.as_slice(),
                        needs,
                        &service_count,
                    );
                    plan.unplaced.extend(
                        group.tasks[k..]
                            .iter()
                            .map(|&t| (t.clone(), reason.clone())),
                    );
                    break;
                };
                service_count[n] += 1;
                load.total[n] += 1;
                load.cpu[n] = load.cpu[n].saturating_add(needs.cpu);
                load.memory[n] = load.memory[n].saturating_add(needs.memory);
                tree.placed(&load, n, &service_count);
                plan.assignments
                    .push((task.clone(), load.nodes[n].id.clone()));
            }
        }
    }
    plan
}

/// "no suitable node (3 nodes: constraint node.labels.zone==east not met; 1 node: insufficient
/// memory)": nodes grouped by the first filter they fail, largest group first.
fn unplaced_reason(
    load: &Load<'_>,
    base: &[Option<Refusal>],
    constraint_refusal: &[Option<usize>],
    constraints: &[String],
    needs: Needs,
    service_count: &[u32],
) -> String {
    if load.nodes.is_empty() {
        return "no suitable node (no nodes in the cluster)".to_string();
    }
    let mut counts: HashMap<Refusal, usize> = HashMap::new();
    for n in 0..load.nodes.len() {
        let refusal = base[n].or_else(|| {
            let dynamic = load.dynamic_refusal(n, needs, service_count[n]);
            match dynamic {
                Some(Refusal::Cpu | Refusal::Memory) => dynamic,
                _ => constraint_refusal[n].map(Refusal::Constraint).or(dynamic),
            }
        });
        if let Some(r) = refusal {
            *counts.entry(r).or_default() += 1;
        }
    }
    // Identical constraints written twice share one text.
    let mut by_text: HashMap<String, usize> = HashMap::new();
    for (r, c) in counts {
        let text = match r {
            Refusal::NotReady => "node not ready".to_string(),
            Refusal::Down => "node is down".to_string(),
            Refusal::Paused => "node is paused".to_string(),
            Refusal::Drained => "node is drained".to_string(),
            Refusal::Cpu => "insufficient cpu".to_string(),
            Refusal::Memory => "insufficient memory".to_string(),
            Refusal::Constraint(i) => format!("constraint {} not met", constraints[i].trim()),
            Refusal::MaxReplicas => {
                format!("max replicas per node ({}) reached", needs.max_per_node)
            }
        };
        *by_text.entry(text).or_default() += c;
    }
    let mut parts: Vec<(usize, String)> = by_text.into_iter().map(|(t, c)| (c, t)).collect();
    parts.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let parts: Vec<String> = parts
        .iter()
        .map(|(c, text)| {
            let noun = if *c == 1 { "node" } else { "nodes" };
            format!("{c} {noun}: {text}")
        })
        .collect();
    format!("no suitable node ({})", parts.join("; "))
}

#[cfg(test)]
mod tests;
