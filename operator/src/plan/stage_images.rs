//! werf's view of staged multi-stage Dockerfile images (`werf: pkg/build/image/dockerfile.go`
//! `mapDockerfileToImagesSets`): every Dockerfile stage that a staged image's target reaches
//! through `FROM <stage>`, `COPY --from` or `RUN --mount from=` is a werf image of its own,
//! `<image>/stage/<name>` (`<image>/stage<index>` when unnamed), built in a build set before
//! the image. The plan keeps such an image's stages together (one unit, dependencies first,
//! each stage naming its werf image); these pure functions give werf's images and sets.

use std::collections::BTreeMap;

use super::BuildSets;
use super::project::{ImagePlan, StagePlan};
use crate::config::Platform;

/// One werf image × platform with its stages in build order.
#[derive(Debug, Clone, PartialEq)]
pub struct WerfImage<'a> {
    /// werf image name: a werf.yaml image or `<image>/stage/<name>`.
    pub name: &'a str,
    /// Target platform.
    pub platform: &'a Platform,
    /// Its stages, in build order.
    pub stages: Vec<&'a StagePlan>,
}

/// The plan's images × platforms split into werf images: a staged image's stages grouped by
/// [`StagePlan::werf_image`] (its stage images first, as they are built); every other image
/// as it is.
pub fn werf_images(images: &[ImagePlan]) -> Vec<WerfImage<'_>> {
    let mut out: Vec<WerfImage<'_>> = Vec::new();
    for image in images {
        let first = out.len();
        for stage in &image.stages {
            let name = stage.werf_image.as_deref().unwrap_or(&image.name);
            match out[first..].iter_mut().find(|w| w.name == name) {
                Some(w) => w.stages.push(stage),
                None => out.push(WerfImage {
                    name,
                    platform: &image.platform,
                    stages: vec![stage],
                }),
            }
        }
        if out.len() == first {
            out.push(WerfImage {
                name: &image.name,
                platform: &image.platform,
                stages: Vec::new(),
            });
        }
    }
    out
}

/// werf's build sets: each set of `sets` becomes as many sets as its deepest staged image has
/// levels, the level-0 stage images (and the images without stage images) first, each image
/// in the set of its level (`stage_images`: werf.yaml image → its werf images with levels, see
/// [`crate::digest::staged::stage_images`]). Not parallel: one image per set, in that order.
pub fn werf_sets(
    sets: &BuildSets,
    stage_images: &BTreeMap<String, Vec<(String, usize)>>,
) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for set in &sets.sets {
        let mut levels: Vec<Vec<String>> = Vec::new();
        let mut put = |name: &str, level: usize| {
            if levels.len() <= level {
                levels.resize(level + 1, Vec::new());
            }
            if !levels[level].iter().any(|n| n == name) {
                levels[level].push(name.to_string());
            }
        };
        for name in set {
            match stage_images.get(name) {
                Some(split) => split.iter().for_each(|(n, level)| put(n, *level)),
                None => put(name, 0),
            }
        }
        out.extend(levels.into_iter().filter(|l| !l.is_empty()));
    }
    if !sets.options.parallel {
        out = out.into_iter().flatten().map(|n| vec![n]).collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ParallelOptions;

    fn sets(sets: &[&[&str]], parallel: bool) -> BuildSets {
        BuildSets {
            sets: sets
                .iter()
                .map(|s| s.iter().map(|n| n.to_string()).collect())
                .collect(),
            options: ParallelOptions {
                parallel,
                ..ParallelOptions::default()
            },
        }
    }

    fn split(entries: &[(&str, &[(&str, usize)])]) -> BTreeMap<String, Vec<(String, usize)>> {
        entries
            .iter()
            .map(|(image, list)| {
                (
                    image.to_string(),
                    list.iter().map(|(n, l)| (n.to_string(), *l)).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn stage_images_come_a_set_before_their_image() {
        // werf v2.62.1 (oracle case 09): both images' `build` stages in set 0.
        let stage_images = split(&[
            ("renderer", &[("renderer/stage/build", 0), ("renderer", 1)]),
            (
                "renderer-slim",
                &[("renderer-slim/stage/build", 0), ("renderer-slim", 1)],
            ),
        ]);
        assert_eq!(
            werf_sets(
                &sets(&[&["renderer", "renderer-slim"]], true),
                &stage_images
            ),
            vec![
                vec!["renderer/stage/build", "renderer-slim/stage/build"],
                vec!["renderer", "renderer-slim"]
            ]
        );
    }

    #[test]
    fn deeper_chains_and_plain_images() {
        let stage_images = split(&[(
            "app",
            &[("app/stage/deps", 0), ("app/stage/build", 1), ("app", 2)],
        )]);
        assert_eq!(
            werf_sets(&sets(&[&["app", "docs"], &["final"]], true), &stage_images),
            vec![
                vec!["app/stage/deps", "docs"],
                vec!["app/stage/build"],
                vec!["app"],
                vec!["final"]
            ]
        );
        assert_eq!(
            werf_sets(&sets(&[&["app"], &["docs"]], false), &stage_images),
            vec![
                vec!["app/stage/deps"],
                vec!["app/stage/build"],
                vec!["app"],
                vec!["docs"]
            ]
        );
    }
}
