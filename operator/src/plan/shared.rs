//! Stages shared between images are planned once: when two image × platform builds need a
//! stage with the same stage digest (the same content), the first one in build order builds it
//! and the others reuse it. This is how a Dockerfile stage used by several images is built once.

use std::collections::HashMap;

/// Who builds one stage of a planned image × platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageBuilder {
    /// This image × platform builds it (first in build order with this digest, or the digest is
    /// not known yet).
    Own,
    /// An earlier image × platform builds it; the index is into the `units` argument.
    Shared {
        /// The unit that builds the stage.
        unit: usize,
    },
}

/// For each stage of each unit (an image × platform, given in build order as its stage digests;
/// `None` = digest not known offline), who builds it. O(total stages).
pub fn planned_once<S: AsRef<str>>(units: &[Vec<Option<S>>]) -> Vec<Vec<StageBuilder>> {
    let mut first: HashMap<&str, usize> = HashMap::new();
    units
        .iter()
        .enumerate()
        .map(|(u, stages)| {
            stages
                .iter()
                .map(|digest| match digest.as_ref().map(AsRef::as_ref) {
                    None => StageBuilder::Own,
                    Some(d) => match first.get(d) {
                        Some(&unit) if unit != u => StageBuilder::Shared { unit },
                        Some(_) => StageBuilder::Own,
                        None => {
                            first.insert(d, u);
                            StageBuilder::Own
                        }
                    },
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_unit_in_build_order_builds_a_shared_digest() {
        let units = vec![
            vec![Some("a1"), Some("a2")],
            vec![Some("a1"), Some("b2")],
            vec![None, Some("b2"), Some("c3")],
        ];
        assert_eq!(
            planned_once(&units),
            vec![
                vec![StageBuilder::Own, StageBuilder::Own],
                vec![StageBuilder::Shared { unit: 0 }, StageBuilder::Own],
                vec![
                    StageBuilder::Own,
                    StageBuilder::Shared { unit: 1 },
                    StageBuilder::Own
                ],
            ]
        );
    }
}
