//! The build order of a staged image's Dockerfile stages: each stage after every stage it
//! needs (werf builds the deeper image sets first), starting from the target.

use std::collections::BTreeSet;

use crate::dockerfile::Dockerfile;

/// Indices of the Dockerfile stages the target needs, dependencies first, the target last.
pub(super) fn build_order(df: &Dockerfile, target: usize) -> Vec<usize> {
    let mut order: Vec<usize> = Vec::new();
    let mut visiting = BTreeSet::new();
    visit(df, target, &mut order, &mut visiting);
    order
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
