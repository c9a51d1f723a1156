use std::collections::BTreeSet;

use super::*;
use crate::config::WerfConfig;

const SEED: &str = "\
project: shop
configVersion: 1
---
image: backend
dockerfile: Dockerfile
context: backend
---
image: frontend
dockerfile: Dockerfile
context: frontend
target: application
---
image: frontend-assets
dockerfile: Dockerfile
context: frontend
target: assets
";

fn names(sets: &BuildSets) -> Vec<Vec<&str>> {
    sets.sets
        .iter()
        .map(|s| s.iter().map(String::as_str).collect())
        .collect()
}

/// The seed's Dockerfiles: backend has one stage; frontend/Dockerfile has `application` (0)
/// and `assets` (1), which copies from `application`.
fn seed_targets() -> Vec<DockerfileTarget> {
    let frontend_stages = vec![Some("application".to_string()), Some("assets".to_string())];
    vec![
        DockerfileTarget {
            image: 0,
            context: "backend".into(),
            dockerfile: "backend/Dockerfile".into(),
            target: 0,
            needs: BTreeSet::new(),
            stage_names: vec![Some("backend".into())],
        },
        DockerfileTarget {
            image: 1,
            context: "frontend".into(),
            dockerfile: "frontend/Dockerfile".into(),
            target: 0,
            needs: BTreeSet::new(),
            stage_names: frontend_stages.clone(),
        },
        DockerfileTarget {
            image: 2,
            context: "frontend".into(),
            dockerfile: "frontend/Dockerfile".into(),
            target: 1,
            needs: BTreeSet::from([0]),
            stage_names: frontend_stages,
        },
    ]
}

fn seed_graph() -> ImageGraph {
    let config = WerfConfig::parse("werf.yaml", SEED).unwrap();
    ImageGraph::from_config(&config, &seed_targets()).unwrap()
}

#[test]
fn seed_example_plans_two_sets() {
    let sets = build_sets(&seed_graph(), &[], ParallelOptions::default()).unwrap();
    assert_eq!(
        names(&sets),
        vec![vec!["backend", "frontend"], vec!["frontend-assets"]]
    );
    assert_eq!(
        sets.title(),
        "Concurrent builds plan (no more than 5 images at the same time)"
    );
}

#[test]
fn dockerfile_stage_edge_names_the_stage() {
    let graph = seed_graph();
    assert_eq!(
        graph.nodes()[2].deps,
        vec![Edge {
            to: 1,
            relation: Relation::DockerfileStage {
                stage: "application".into()
            }
        }]
    );
    assert!(graph.nodes()[0].deps.is_empty());
}

#[test]
fn not_parallel_gives_one_image_per_set_in_order() {
    let options = ParallelOptions {
        parallel: false,
        tasks_limit: 5,
    };
    let sets = build_sets(&seed_graph(), &[], options).unwrap();
    assert_eq!(
        names(&sets),
        vec![vec!["backend"], vec!["frontend"], vec!["frontend-assets"]]
    );
    assert_eq!(sets.title(), "Builds plan (one image at a time)");
}

#[test]
fn tasks_limit_zero_or_negative_is_unlimited() {
    for limit in [0, -1] {
        let options = ParallelOptions {
            parallel: true,
            tasks_limit: limit,
        };
        assert_eq!(options.limit(), None);
        let sets = build_sets(&seed_graph(), &[], options).unwrap();
        assert_eq!(sets.title(), "Concurrent builds plan");
    }
    let three = ParallelOptions {
        parallel: true,
        tasks_limit: 3,
    };
    assert_eq!(three.limit(), Some(3));
    assert_eq!(ParallelOptions::default().limit(), Some(5));
}

#[test]
fn subset_pulls_in_dependencies() {
    let graph = seed_graph();
    let sets = build_sets(
        &graph,
        &["frontend-assets".into()],
        ParallelOptions::default(),
    )
    .unwrap();
    assert_eq!(
        names(&sets),
        vec![vec!["frontend"], vec!["frontend-assets"]]
    );
    let sets = build_sets(&graph, &["backend".into()], ParallelOptions::default()).unwrap();
    assert_eq!(names(&sets), vec![vec!["backend"]]);
}

#[test]
fn subset_with_unknown_image_is_an_error() {
    let err = build_sets(&seed_graph(), &["nope".into()], ParallelOptions::default()).unwrap_err();
    assert_eq!(
        err,
        PlanError::UnknownImage {
            name: "nope".into(),
            needed_by: None
        }
    );
    assert_eq!(
        err.to_string(),
        "image \"nope\" is not defined in werf.yaml"
    );
}

#[test]
fn config_relations_layer_by_deepest_dependency() {
    // d depends on a (fromImage) and c (import); c depends on b (dependencies); b on a (from).
    let text = "\
project: p
configVersion: 1
---
image: a
from: alpine:3.20
---
image: b
from: a
---
image: c
dockerfile: Dockerfile
dependencies:
- image: b
  imports:
  - type: ImageName
    targetBuildArg: B_IMAGE
---
image: d
fromImage: a
import:
- image: c
  add: /app
  after: install
---
image: e
from: ubuntu:24.04
";
    let config = WerfConfig::parse("werf.yaml", text).unwrap();
    let graph = ImageGraph::from_config(&config, &[]).unwrap();
    let sets = build_sets(&graph, &[], ParallelOptions::default()).unwrap();
    assert_eq!(
        names(&sets),
        vec![vec!["a", "e"], vec!["b"], vec!["c"], vec!["d"]]
    );
    let relations: Vec<String> = graph.nodes()[3]
        .deps
        .iter()
        .map(|e| format!("{} {}", graph.nodes()[e.to].name, e.relation))
        .collect();
    assert_eq!(relations, vec!["a fromImage", "c import"]);
}

#[test]
fn same_target_or_other_context_is_no_relation() {
    let text = "\
project: p
configVersion: 1
---
image: one
dockerfile: Dockerfile
target: app
---
image: two
dockerfile: Dockerfile
target: app
---
image: three
dockerfile: Dockerfile
context: other
target: final
";
    let config = WerfConfig::parse("werf.yaml", text).unwrap();
    let stages = vec![Some("app".to_string()), Some("final".to_string())];
    let target = |image, context: &str, target, needs: &[usize]| DockerfileTarget {
        image,
        context: context.into(),
        dockerfile: format!("{context}/Dockerfile")
            .trim_start_matches('/')
            .to_string(),
        target,
        needs: needs.iter().copied().collect(),
        stage_names: stages.clone(),
    };
    let targets = vec![
        target(0, "", 0, &[]),
        target(1, "", 0, &[]),
        // Same Dockerfile name but another context: a different file, no relation.
        target(2, "other", 1, &[0]),
    ];
    let graph = ImageGraph::from_config(&config, &targets).unwrap();
    let sets = build_sets(&graph, &[], ParallelOptions::default()).unwrap();
    assert_eq!(names(&sets), vec![vec!["one", "two", "three"]]);
}

#[test]
fn dockerfile_and_config_edges_can_form_a_cycle() {
    // frontend-assets needs frontend's stage; frontend declares a dependency on frontend-assets.
    let text = SEED.replace(
        "target: application\n",
        "target: application\ndependencies:\n- image: frontend-assets\n",
    );
    let config = WerfConfig::parse("werf.yaml", &text).unwrap();
    let err = ImageGraph::from_config(&config, &seed_targets()).unwrap_err();
    assert_eq!(
        err,
        PlanError::DependencyCycle(vec![
            "frontend".into(),
            "frontend-assets".into(),
            "frontend".into()
        ])
    );
    assert_eq!(
        err.to_string(),
        "dependency cycle: frontend → frontend-assets → frontend"
    );
}

#[test]
fn wide_dag_levels() {
    // 0 ← 1 ← 2 and 0 ← 3; 4 alone; 5 depends on 2 and 4.
    let node = |name: &str, deps: &[usize]| ImageNode {
        name: name.into(),
        deps: deps
            .iter()
            .map(|&to| Edge {
                to,
                relation: Relation::Config(crate::config::RelationKind::Dependency),
            })
            .collect(),
    };
    let graph = ImageGraph::new(vec![
        node("n0", &[]),
        node("n1", &[0]),
        node("n2", &[1]),
        node("n3", &[0]),
        node("n4", &[]),
        node("n5", &[2, 4]),
    ])
    .unwrap();
    let sets = build_sets(&graph, &[], ParallelOptions::default()).unwrap();
    assert_eq!(
        names(&sets),
        vec![vec!["n0", "n4"], vec!["n1", "n3"], vec!["n2"], vec!["n5"]]
    );
}
