//! Cycle detection in a dependency graph given as adjacency lists (`deps[i]` = the nodes node
//! `i` depends on).

/// Finds a dependency cycle, returned as the node path with the first node repeated at the end
/// (`[a, b, a]` for "a depends on b, b depends on a"). Deterministic: nodes are visited in index
/// order, so the cycle reported is the one reached first from the lowest node. `None` when the
/// graph is acyclic. Iterative, so deep graphs do not exhaust the stack.
pub fn find_cycle(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; deps.len()];
    for root in 0..deps.len() {
        if mark[root] != Mark::New {
            continue;
        }
        // The current DFS path: (node, next edge to follow).
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            if let Some(&dep) = deps[node].get(*next) {
                *next += 1;
                match mark[dep] {
                    Mark::New => {
                        mark[dep] = Mark::OnPath;
                        path.push((dep, 0));
                    }
                    Mark::OnPath => {
                        let start = path.iter().position(|&(n, _)| n == dep).unwrap_or(0);
                        let mut cycle: Vec<usize> = path[start..].iter().map(|&(n, _)| n).collect();
                        cycle.push(dep);
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                path.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acyclic_graphs_have_no_cycle() {
        assert_eq!(find_cycle(&[]), None);
        assert_eq!(find_cycle(&[vec![1, 2], vec![2], vec![]]), None);
    }

    #[test]
    fn reports_the_cycle_path() {
        assert_eq!(find_cycle(&[vec![1], vec![0]]), Some(vec![0, 1, 0]));
        assert_eq!(find_cycle(&[vec![0]]), Some(vec![0, 0]));
        // 0 → 1 → 2 → 3 → 1: the cycle does not include the entry node 0.
        assert_eq!(
            find_cycle(&[vec![1], vec![2], vec![3], vec![1]]),
            Some(vec![1, 2, 3, 1])
        );
    }

    #[test]
    fn deep_chains_do_not_overflow() {
        let n = 200_000;
        let mut deps: Vec<Vec<usize>> = (0..n).map(|i| vec![i + 1]).collect();
        deps[n - 1] = vec![0];
        assert_eq!(find_cycle(&deps).map(|c| c.len()), Some(n + 1));
    }
}
