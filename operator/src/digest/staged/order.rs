//! The build order of a staged image's Dockerfile stages: each stage after every stage it
//! needs (werf builds the deeper image sets first), starting from the target.

use std::collections::{BTreeMap, BTreeSet};

use crate::dockerfile::Dockerfile;

/// Indices of the Dockerfile stages the target needs, dependencies first, the target last.
pub(super) fn build_order(df: &Dockerfile, target: usize) -> Vec<usize> {
    let mut order: Vec<usize> = Vec::new();
    let mut visiting = BTreeSet::new();
    visit(df, target, &mut order, &mut visiting);
    order
}

/// The build level of each Dockerfile stage in [`build_order`]: 0 for a stage that needs no
/// other, else one more than the deepest stage it needs. werf builds each level's images in
/// one build set, before the next level's.
pub(super) fn build_levels(df: &Dockerfile, target: usize) -> Vec<(usize, usize)> {
    let mut levels: BTreeMap<usize, usize> = BTreeMap::new();
    build_order(df, target)
        .into_iter()
        .map(|i| {
            let level = df
                .direct_stage_dependencies(i)
                .iter()
                .filter_map(|d| levels.get(d))
                .map(|l| l + 1)
                .max()
                .unwrap_or(0);
            levels.insert(i, level);
            (i, level)
        })
        .collect()
}

fn visit(df: &Dockerfile, i: usize, order: &mut Vec<usize>, visiting: &mut BTreeSet<usize>) {
    if order.contains(&i) || !visiting.insert(i) {
        return;
    }
    for d in df.direct_stage_dependencies(i) {
        visit(df, d, order, visiting);
    }
    order.push(i);
}
