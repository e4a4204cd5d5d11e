//! The spread-preference tree: a branch per label value at each preference level, a heap of
//! candidate nodes at each leaf, so the next task goes under the branch with the fewest.

use super::*;

/// A branch of the spread-preference tree. Without preferences the tree is a single leaf.
pub(super) struct Branch {
    /// Tasks of the service on the (statically eligible) nodes under this branch.
    pub(super) count: u64,
    /// Nodes under this branch not yet found unable to take a task of the group.
    pub(super) alive: u32,
    pub(super) parent: Option<usize>,
    /// Sorted by label value, nodes without the label first.
    pub(super) children: Vec<usize>,
    /// Leaves only.
    pub(super) heap: BinaryHeap<Candidate>,
}

pub(super) struct Tree {
    pub(super) branches: Vec<Branch>,
    /// Leaf of each statically eligible node, by node index.
    pub(super) leaf_of: Vec<usize>,
}

impl Tree {
    /// `levels[i][n]` is the value id of node `n` for the i-th spread label (see `label_values`).
    pub(super) fn build(
        load: &Load<'_>,
        eligible: &[u32],
        levels: &[&[u32]],
        service_count: &[u32],
        penalty: &[u32],
    ) -> Tree {
        let new_branch = |parent| Branch {
            count: 0,
            alive: 0,
            parent,
            children: Vec::new(),
            heap: BinaryHeap::new(),
        };
        let mut branches = vec![new_branch(None)];
        let mut leaf_of = vec![0; load.nodes.len()];
        if levels.is_empty() {
            let root = &mut branches[0];
            root.heap = eligible
                .iter()
                .map(|&n| {
                    let i = n as usize;
                    Reverse((service_count[i] + penalty[i], load.total[i], n))
                })
                .collect();
            root.alive = eligible.len() as u32;
            root.count = eligible
                .iter()
                .map(|&n| u64::from(service_count[n as usize]))
                .sum();
            return Tree { branches, leaf_of };
        }
        let mut child_by_key: FastMap<(usize, u32), usize> = FastMap::default();
        let mut keys: Vec<u32> = vec![0];
        for &n in eligible {
            let sc = service_count[n as usize];
            let mut b = 0;
            branches[b].count += u64::from(sc);
            branches[b].alive += 1;
            for level in levels {
                let value = level[n as usize];
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
            branches[b].heap.push(Reverse((
                sc + penalty[n as usize],
                load.total[n as usize],
                n,
            )));
            leaf_of[n as usize] = b;
        }
        for b in &mut branches {
            b.children.sort_by_key(|&c| keys[c]);
        }
        Tree { branches, leaf_of }
    }

    /// Adds `delta` to `alive` (or to `count`) from `b` up to the root.
    pub(super) fn add_alive(&mut self, mut b: usize, delta: i64) {
        loop {
            let br = &mut self.branches[b];
            br.alive = (i64::from(br.alive) + delta) as u32;
            match br.parent {
                Some(p) => b = p,
                None => return,
            }
        }
    }

    pub(super) fn add_count(&mut self, mut b: usize) {
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
    pub(super) fn pick(
        &mut self,
        load: &Load<'_>,
        needs: Needs,
        service_count: &[u32],
    ) -> Option<usize> {
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
    pub(super) fn placed(
        &mut self,
        load: &Load<'_>,
        n: usize,
        service_count: &[u32],
        penalty: &[u32],
    ) {
        let leaf = self.leaf_of[n];
        self.branches[leaf].heap.push(Reverse((
            service_count[n] + penalty[n],
            load.total[n],
            n as u32,
        )));
        self.add_count(leaf);
    }
}
