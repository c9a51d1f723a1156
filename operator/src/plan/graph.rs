//! The image DAG: which werf images must be built before which.
//!
//! Edges come from werf.yaml (`dependencies[].image`, Stapel `fromImage`, `from` naming a werf
//! image, `fromArtifact`, `import[].image`/`artifact`) and — following the seed document rather
//! than werf's code — from Dockerfile stage references between images: image A depends on image
//! B when both build the same Dockerfile (same context and Dockerfile path) and B's target stage
//! is one of the stages A's target needs (`FROM <stage>`, `COPY --from`, `RUN --mount from`).
//! B then builds that shared stage once and A reuses it.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use super::PlanError;
use crate::config::{RelationKind, WerfConfig};

/// Why one image depends on another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Relation {
    /// A werf.yaml directive.
    Config(RelationKind),
    /// A Dockerfile stage that the other image targets (and so builds once for both).
    DockerfileStage {
        /// The stage's name (`AS name`), or its index when unnamed.
        stage: String,
    },
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Relation::Config(RelationKind::Dependency) => f.write_str("dependencies"),
            Relation::Config(RelationKind::FromImage) => f.write_str("fromImage"),
            Relation::Config(RelationKind::From) => f.write_str("from"),
            Relation::Config(RelationKind::FromArtifact) => f.write_str("fromArtifact"),
            Relation::Config(RelationKind::Import) => f.write_str("import"),
            Relation::DockerfileStage { stage } => write!(f, "Dockerfile stage {stage}"),
        }
    }
}

/// An edge: the image depended on and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Edge {
    /// Index of the image depended on.
    pub to: usize,
    /// Why.
    pub relation: Relation,
}

/// One image of the DAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageNode {
    /// werf image name.
    pub name: String,
    /// Images it depends on (deduplicated, sorted).
    pub deps: Vec<Edge>,
}

/// What the planner needs to know about a Dockerfile image's target, computed by the caller
/// from the parsed Dockerfile (keeps this module free of I/O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerfileTarget {
    /// Index of the image in `WerfConfig::images`.
    pub image: usize,
    /// Repo-relative, normalized context directory (`""` = repo root).
    pub context: String,
    /// Repo-relative, normalized Dockerfile path.
    pub dockerfile: String,
    /// Index of the target stage in the Dockerfile.
    pub target: usize,
    /// Indices of the stages the target needs, transitively (not including the target).
    pub needs: BTreeSet<usize>,
    /// Stage names by index (`None` for unnamed stages), for messages.
    pub stage_names: Vec<Option<String>>,
}

impl DockerfileTarget {
    fn stage_label(&self, index: usize) -> String {
        self.stage_names
            .get(index)
            .cloned()
            .flatten()
            .unwrap_or_else(|| index.to_string())
    }
}

/// The image DAG, nodes in werf.yaml order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageGraph {
    nodes: Vec<ImageNode>,
    index: HashMap<String, usize>,
}

impl ImageGraph {
    /// Builds the graph from nodes whose edges point at valid indices.
    ///
    /// Errors: [`PlanError::DependencyCycle`] naming the cycle.
    pub fn new(mut nodes: Vec<ImageNode>) -> Result<ImageGraph, PlanError> {
        for node in &mut nodes {
            node.deps.sort();
            node.deps.dedup();
        }
        let adjacency: Vec<Vec<usize>> = nodes
            .iter()
            .map(|n| n.deps.iter().map(|e| e.to).collect())
            .collect();
        if let Some(cycle) = super::find_cycle(&adjacency) {
            return Err(PlanError::DependencyCycle(
                cycle.iter().map(|&i| nodes[i].name.clone()).collect(),
            ));
        }
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        Ok(ImageGraph { nodes, index })
    }

    /// The DAG of a validated werf.yaml plus Dockerfile stage relations (see the module docs).
    /// `targets` describe the Dockerfile images (any order; Stapel images have none).
    pub fn from_config(
        config: &WerfConfig,
        targets: &[DockerfileTarget],
    ) -> Result<ImageGraph, PlanError> {
        let index: HashMap<&str, usize> = config
            .images
            .iter()
            .enumerate()
            .map(|(i, img)| (img.name.as_str(), i))
            .collect();
        let mut nodes: Vec<ImageNode> = config
            .images
            .iter()
            .map(|img| ImageNode {
                name: img.name.clone(),
                deps: Vec::new(),
            })
            .collect();
        for (i, image) in config.images.iter().enumerate() {
            for reference in image.image_references(|n| index.contains_key(n)) {
                let to = *index.get(reference.image.as_str()).ok_or_else(|| {
                    PlanError::UnknownImage {
                        name: reference.image.clone(),
                        needed_by: Some(image.name.clone()),
                    }
                })?;
                nodes[i].deps.push(Edge {
                    to,
                    relation: Relation::Config(reference.relation),
                });
            }
        }
        // Images sharing a Dockerfile: group by (context, path), then one pass per group.
        let mut by_file: HashMap<(&str, &str), Vec<&DockerfileTarget>> = HashMap::new();
        for target in targets {
            by_file
                .entry((target.context.as_str(), target.dockerfile.as_str()))
                .or_default()
                .push(target);
        }
        for group in by_file.values() {
            for a in group {
                for b in group {
                    if a.image != b.image && a.needs.contains(&b.target) {
                        nodes[a.image].deps.push(Edge {
                            to: b.image,
                            relation: Relation::DockerfileStage {
                                stage: b.stage_label(b.target),
                            },
                        });
                    }
                }
            }
        }
        ImageGraph::new(nodes)
    }

    /// The images, in werf.yaml order.
    pub fn nodes(&self) -> &[ImageNode] {
        &self.nodes
    }

    /// Index of the image named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The images to build for a requested subset: the named images plus everything they
    /// depend on, transitively; all images when `names` is empty. Returned as a mask indexed
    /// like [`ImageGraph::nodes`].
    ///
    /// Errors: [`PlanError::UnknownImage`] for a name werf.yaml does not define.
    pub fn select(&self, names: &[String]) -> Result<Vec<bool>, PlanError> {
        if names.is_empty() {
            return Ok(vec![true; self.nodes.len()]);
        }
        let mut selected = vec![false; self.nodes.len()];
        let mut stack = Vec::new();
        for name in names {
            let i = self.index_of(name).ok_or_else(|| PlanError::UnknownImage {
                name: name.clone(),
                needed_by: None,
            })?;
            stack.push(i);
        }
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut selected[i], true) {
                continue;
            }
            stack.extend(self.nodes[i].deps.iter().map(|e| e.to));
        }
        Ok(selected)
    }

    /// Topological level of each selected image: 0 for images without (selected) dependencies,
    /// else one more than the deepest dependency. Kahn's layering in O(V + E).
    pub fn levels(&self, selected: &[bool]) -> Vec<Option<usize>> {
        let n = self.nodes.len();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut pending = vec![0usize; n];
        for (i, node) in self.nodes.iter().enumerate().filter(|(i, _)| selected[*i]) {
            for edge in &node.deps {
                // `select` closes over dependencies, but a caller-made mask may not.
                if selected[edge.to] {
                    dependents[edge.to].push(i);
                    pending[i] += 1;
                }
            }
        }
        let mut level: Vec<Option<usize>> = vec![None; n];
        let mut queue: std::collections::VecDeque<usize> =
            (0..n).filter(|&i| selected[i] && pending[i] == 0).collect();
        for &i in &queue {
            level[i] = Some(0);
        }
        while let Some(i) = queue.pop_front() {
            let next = level[i].unwrap_or(0) + 1;
            for &d in &dependents[i] {
                level[d] = Some(level[d].map_or(next, |l| l.max(next)));
                pending[d] -= 1;
                if pending[d] == 0 {
                    queue.push_back(d);
                }
            }
        }
        level
    }
}
