//! The dependency graph of one step map: `needs` resolution, cycle detection,
//! topological order and waves.

use crate::model::Step;
use indexmap::IndexMap;

/// Indices of the steps of one map, with their `needs` resolved to indices.
/// Unknown needs are dropped here; validation reports them separately.
pub struct Graph {
    /// `needs[i]` holds the indices step `i` depends on, in file order.
    pub needs: Vec<Vec<usize>>,
}

impl Graph {
    /// Builds the graph of `steps`.
    pub fn new(steps: &IndexMap<String, Step>) -> Self {
        let needs = steps
            .values()
            .map(|step| {
                let mut ids: Vec<usize> = step
                    .needs
                    .iter()
                    .filter_map(|need| steps.get_index_of(need.value.as_str()))
                    .collect();
                ids.dedup();
                ids
            })
            .collect();
        Graph { needs }
    }

    /// Cycles, each as the list of step indices around it (first node
    /// repeated at the end): one for every set of steps tangled together,
    /// not every loop through them. Found by an iterative DFS so a
    /// 10,000-step chain cannot overflow the stack.
    pub fn cycles(&self) -> Vec<Vec<usize>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let n = self.needs.len();
        let mut mark = vec![Mark::New; n];
        let mut cycles = Vec::new();
        let component = self.components();
        let mut reported = vec![false; n];
        for root in 0..n {
            if mark[root] != Mark::New {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            mark[root] = Mark::Active;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(&child) = self.needs[node].get(*next) {
                    *next += 1;
                    match mark[child] {
                        Mark::New => {
                            mark[child] = Mark::Active;
                            stack.push((child, 0));
                        }
                        Mark::Active => {
                            let start = stack.iter().position(|(s, _)| *s == child).unwrap_or(0);
                            // A cycle through a step already in a reported one
                            // is the same tangle seen again: n steps that all
                            // need each other have n(n-1)/2 of them, which
                            // buried the first under megabytes of output.
                            if !reported[component[child]] {
                                reported[component[child]] = true;
                                let mut cycle: Vec<usize> =
                                    stack[start..].iter().map(|(s, _)| *s).collect();
                                cycle.push(child);
                                cycles.push(cycle);
                            }
                        }
                        Mark::Done => {}
                    }
                } else {
                    mark[node] = Mark::Done;
                    stack.pop();
                }
            }
        }
        cycles
    }

    /// The strongly connected component of every step (Kosaraju's two
    /// passes, iterative): steps in one component all reach each other.
    fn components(&self) -> Vec<usize> {
        let n = self.needs.len();
        let mut seen = vec![false; n];
        let mut finished = Vec::with_capacity(n);
        for root in 0..n {
            if seen[root] {
                continue;
            }
            seen[root] = true;
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(&child) = self.needs[node].get(*next) {
                    *next += 1;
                    if !seen[child] {
                        seen[child] = true;
                        stack.push((child, 0));
                    }
                } else {
                    finished.push(node);
                    stack.pop();
                }
            }
        }
        let mut needed_by: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (step, needs) in self.needs.iter().enumerate() {
            for &need in needs {
                needed_by[need].push(step);
            }
        }
        let mut component = vec![usize::MAX; n];
        let mut count = 0;
        for &root in finished.iter().rev() {
            if component[root] != usize::MAX {
                continue;
            }
            component[root] = count;
            let mut stack = vec![root];
            while let Some(node) = stack.pop() {
                for &other in &needed_by[node] {
                    if component[other] == usize::MAX {
                        component[other] = count;
                        stack.push(other);
                    }
                }
            }
            count += 1;
        }
        component
    }

    /// A topological order (dependencies first, ties broken by file order),
    /// or `None` when the graph has a cycle.
    pub fn topological_order(&self) -> Option<Vec<usize>> {
        let n = self.needs.len();
        let mut indegree = vec![0usize; n];
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, needs) in self.needs.iter().enumerate() {
            indegree[i] = needs.len();
            for &need in needs {
                dependents[need].push(i);
            }
        }
        let mut ready: std::collections::BTreeSet<usize> =
            (0..n).filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &d in &dependents[i] {
                indegree[d] -= 1;
                if indegree[d] == 0 {
                    ready.insert(d);
                }
            }
        }
        (order.len() == n).then_some(order)
    }

    /// Waves: wave 0 holds steps without needs, wave k the steps whose
    /// deepest dependency is in wave k-1. `None` when there is a cycle.
    pub fn waves(&self) -> Option<Vec<Vec<usize>>> {
        let order = self.topological_order()?;
        let mut level = vec![0usize; self.needs.len()];
        for &i in &order {
            level[i] = self.needs[i]
                .iter()
                .map(|&d| level[d] + 1)
                .max()
                .unwrap_or(0);
        }
        let depth = level.iter().max().map_or(0, |m| m + 1);
        let mut waves = vec![Vec::new(); depth];
        for (i, &l) in level.iter().enumerate() {
            waves[l].push(i);
        }
        Some(waves)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(needs: &[&[usize]]) -> Graph {
        Graph {
            needs: needs.iter().map(|n| n.to_vec()).collect(),
        }
    }

    #[test]
    fn finds_the_whole_cycle() {
        let g = graph(&[&[2], &[0], &[1], &[]]);
        assert_eq!(g.cycles(), vec![vec![0, 2, 1, 0]]);
        assert!(g.topological_order().is_none());
    }

    #[test]
    fn steps_that_all_need_each_other_are_one_cycle() {
        let n = 200;
        let needs: Vec<Vec<usize>> = (0..n)
            .map(|i| (0..n).filter(|&j| j != i).collect())
            .collect();
        let cycles = Graph { needs }.cycles();
        assert_eq!(cycles, vec![vec![0, 1, 0]]);
        // Separate tangles are each reported.
        let g = graph(&[&[1], &[0], &[3], &[2], &[4]]);
        assert_eq!(g.cycles(), vec![vec![0, 1, 0], vec![2, 3, 2], vec![4, 4]]);
    }

    #[test]
    fn waves_follow_depth() {
        let g = graph(&[&[], &[], &[0, 1], &[0]]);
        assert_eq!(g.waves(), Some(vec![vec![0, 1], vec![2, 3]]));
    }

    #[test]
    fn long_chains_do_not_overflow() {
        let needs: Vec<Vec<usize>> = (0..100_000)
            .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
            .collect();
        let g = Graph { needs };
        assert!(g.cycles().is_empty());
    }
}
