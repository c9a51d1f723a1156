//! `kiln-operator crd` prints exactly the committed CRD YAML.

use std::process::Command;

const COMMITTED: &str = include_str!("../../crds/imagebuild.kiln.dev.yaml");

#[test]
fn crd_subcommand_prints_the_committed_crd() {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln-operator"))
        .arg("crd")
        .output()
        .expect("run kiln-operator crd");
    assert!(
        out.status.success(),
        "kiln-operator crd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "unexpected stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("CRD YAML is UTF-8");
    assert!(
        stdout == COMMITTED,
        "kiln-operator crd differs from crds/imagebuild.kiln.dev.yaml; regenerate it with:\n    \
         cargo run -q -p kiln-operator -- crd > crds/imagebuild.kiln.dev.yaml"
    );
}

#[test]
fn unknown_subcommand_fails_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln-operator"))
        .arg("no-such-command")
        .output()
        .expect("run kiln-operator");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-command"), "{stderr}");
}

#[test]
fn a_reader_that_closes_early_is_not_an_error() {
    use std::process::Stdio;
    // A pipe whose read end is already closed: the child's first write fails with
    // EPIPE, as under `kiln-operator crd | head -0`.
    let (reader, writer) = std::io::pipe().expect("create a pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_kiln-operator"))
        .arg("crd")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run kiln-operator crd");
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
