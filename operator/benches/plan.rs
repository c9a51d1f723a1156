//! Planner benchmarks: a 100,000-file repository with 20 Dockerfile images (target < 1 s per
//! plan, werf.yaml and Dockerfiles read from the commit, every stage digest computed), and a
//! 500-image DAG (target < 100 ms): werf.yaml to build sets, and end to end with every
//! image's Dockerfile read and digested. Peak memory is measured by the `plan_memory` bench.

mod plan_fixtures;

use criterion::{Criterion, criterion_group, criterion_main};
use kiln_operator::config::WerfConfig;
use kiln_operator::plan::project::{PlanRequest, plan_project};
use kiln_operator::plan::{ImageGraph, ParallelOptions, build_sets};
use kiln_operator::source::GitTree;

fn repository_of_100k_files(c: &mut Criterion) {
    let repo = plan_fixtures::large_repository(100_000, 20);
    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    group.bench_function("repository 100k files, 20 images", |b| {
        b.iter(|| {
            // A fresh GitTree per run: nothing cached from the previous plan.
            let tree = GitTree::open(repo.path(), None).unwrap();
            let plan = plan_project(&tree, &PlanRequest::default()).unwrap();
            assert_eq!(plan.images.len(), 20);
            plan
        })
    });
    group.finish();
}

fn dag_of_500_images(c: &mut Criterion) {
    let yaml = plan_fixtures::large_dag_config(500);
    let mut group = c.benchmark_group("plan");
    group.bench_function("500-image DAG: werf.yaml to build sets", |b| {
        b.iter(|| {
            let config = WerfConfig::parse("werf.yaml", &yaml).unwrap();
            let graph = ImageGraph::from_config(&config, &[]).unwrap();
            build_sets(&graph, &[], ParallelOptions::default()).unwrap()
        })
    });
    let config = WerfConfig::parse("werf.yaml", &yaml).unwrap();
    group.bench_function("500-image DAG: graph and build sets only", |b| {
        b.iter(|| {
            let graph = ImageGraph::from_config(&config, &[]).unwrap();
            build_sets(&graph, &[], ParallelOptions::default()).unwrap()
        })
    });
    let repo = plan_fixtures::dag_repository(500);
    group.bench_function("500-image DAG: plan_project with digests", |b| {
        b.iter(|| {
            let tree = GitTree::open(repo.path(), None).unwrap();
            let plan = plan_project(&tree, &PlanRequest::default()).unwrap();
            assert_eq!(plan.images.len(), 500);
            plan
        })
    });
    group.finish();
}

criterion_group!(benches, repository_of_100k_files, dag_of_500_images);
criterion_main!(benches);
