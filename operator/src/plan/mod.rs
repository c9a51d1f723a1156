//! The build plan: the image DAG, its topological levels as build sets (werf's
//! `GroupImagesByIndependentSets`), the concurrency limit inside a set, and which image builds
//! a stage that several images share. Pure functions, no I/O.

mod cycle;
mod graph;
pub mod project;
mod shared;
pub mod stage_images;

pub use cycle::find_cycle;
pub use graph::{DockerfileTarget, Edge, ImageGraph, ImageNode, Relation};
pub use shared::{StageBuilder, planned_once};

/// werf's default `--parallel-tasks-limit` for builds.
pub const DEFAULT_PARALLEL_TASKS_LIMIT: i64 = 5;

/// Planning errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// An image name that werf.yaml does not define.
    #[error("image {name:?} is not defined in werf.yaml{}", needed_by.as_ref().map(|n| format!(" (needed by image {n:?})")).unwrap_or_default())]
    UnknownImage {
        /// The name.
        name: String,
        /// The image referring to it; `None` when the user asked for it.
        needed_by: Option<String>,
    },
    /// Images depend on each other in a cycle (`a → b → a`).
    #[error("dependency cycle: {}", .0.join(" → "))]
    DependencyCycle(Vec<String>),
}

/// `--parallel` and `--parallel-tasks-limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParallelOptions {
    /// Build the images of a set concurrently (werf default: true). False → one image per set.
    pub parallel: bool,
    /// At most this many builds at once inside a set; ≤ 0 means unlimited (werf default: 5).
    pub tasks_limit: i64,
}

impl Default for ParallelOptions {
    fn default() -> Self {
        ParallelOptions {
            parallel: true,
            tasks_limit: DEFAULT_PARALLEL_TASKS_LIMIT,
        }
    }
}

impl ParallelOptions {
    /// The concurrency limit inside a set: `None` = unlimited; 1 when not parallel.
    pub fn limit(&self) -> Option<usize> {
        if !self.parallel {
            Some(1)
        } else if self.tasks_limit <= 0 {
            None
        } else {
            usize::try_from(self.tasks_limit).ok()
        }
    }
}

/// Build sets: each set's images can be built at the same time once all earlier sets are
/// done. Images inside a set keep werf.yaml order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSets {
    /// Image names per set.
    pub sets: Vec<Vec<String>>,
    /// The options the sets were made with.
    pub options: ParallelOptions,
}

impl BuildSets {
    /// werf's plan block title: `Concurrent builds plan (no more than N images at the same
    /// time)`, without the suffix when unlimited; `Builds plan (one image at a time)` when not
    /// parallel.
    pub fn title(&self) -> String {
        match self.options.limit() {
            _ if !self.options.parallel => "Builds plan (one image at a time)".to_string(),
            Some(n) => format!("Concurrent builds plan (no more than {n} images at the same time)"),
            None => "Concurrent builds plan".to_string(),
        }
    }

    /// All planned image names in build order.
    pub fn images(&self) -> impl Iterator<Item = &str> {
        self.sets.iter().flatten().map(String::as_str)
    }
}

/// Plans build sets for the `requested` images (all when empty) plus their dependencies:
/// Kahn layering of the DAG (an image goes in the set after its deepest dependency), each set
/// in werf.yaml order; with `parallel: false` the layering is flattened to one image per set.
///
/// Errors: [`PlanError::UnknownImage`] for a requested name werf.yaml does not define.
pub fn build_sets(
    graph: &ImageGraph,
    requested: &[String],
    options: ParallelOptions,
) -> Result<BuildSets, PlanError> {
    let selected = graph.select(requested)?;
    let levels = graph.levels(&selected);
    let depth = levels.iter().flatten().max().map_or(0, |m| m + 1);
    let mut sets: Vec<Vec<String>> = vec![Vec::new(); depth];
    for (i, level) in levels.iter().enumerate() {
        if let Some(level) = level {
            sets[*level].push(graph.nodes()[i].name.clone());
        }
    }
    if !options.parallel {
        sets = sets.into_iter().flatten().map(|name| vec![name]).collect();
    }
    Ok(BuildSets { sets, options })
}

#[cfg(test)]
mod tests;
