//! The chart's copy of the CRD (Helm installs `charts/kiln/crds/` before the templates)
//! and the plain manifests' copy must equal what `kiln-operator crd` prints, so that every
//! install path gives the same schema.

fn first_difference(a: &str, b: &str) -> String {
    a.lines()
        .zip(b.lines())
        .position(|(x, y)| x != y)
        .map_or_else(
            || "the files differ in length".to_owned(),
            |i| format!("first difference at line {}", i + 1),
        )
}

fn assert_copy_is_current(relative: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let generated = kiln_crds::crd_yaml();
    assert!(
        generated == committed,
        "{relative} is out of date ({}). Regenerate it with:\n    \
         cargo run -q -p kiln-operator -- crd > {relative}\n    hack/render-manifests.sh",
        first_difference(&generated, &committed)
    );
}

#[test]
fn the_charts_crd_equals_the_generated_one() {
    assert_copy_is_current("charts/kiln/crds/imagebuild.kiln.dev.yaml");
}

#[test]
fn the_plain_manifests_crd_equals_the_generated_one() {
    assert_copy_is_current("config/crd/imagebuild.kiln.dev.yaml");
}
