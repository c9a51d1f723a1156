//! The committed `crds/imagebuild.kiln.dev.yaml` must equal what the types generate, so
//! that installing from the repository and installing from `kiln-operator crd` give the
//! same CRD.

const COMMITTED: &str = include_str!("../imagebuild.kiln.dev.yaml");

#[test]
fn committed_crd_yaml_matches_generated() {
    let generated = kiln_crds::crd_yaml();
    if generated != COMMITTED {
        let line = generated
            .lines()
            .zip(COMMITTED.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "the files differ in length".to_owned(),
                |i| format!("first difference at line {}", i + 1),
            );
        panic!(
            "crds/imagebuild.kiln.dev.yaml is out of date ({line}).\n\
             Regenerate it with:\n    cargo run -q -p kiln-operator -- crd > crds/imagebuild.kiln.dev.yaml"
        );
    }
}
