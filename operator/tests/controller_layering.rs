//! The controller's layering, checked from its source files:
//! - files under `controller/` import only the shared context (`context`, `error`) and
//!   modules of a lower step, never an item of `controller/mod.rs` (`super::Item`) and never
//!   a module of a higher step (so there is no import cycle);
//! - the pure modules (the request, decide, job compiler, facts resolution, report, digest
//!   and werf model) make no kube `Client`, registry (`StagesStorage`, `RegistryClient`) or
//!   lock (`StageLocks`) call;
//! - the modules below the controller (`job`, `facts`) never import it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The controller's modules from the lowest step to the highest: a module may import only
/// modules before it.
const STEPS: &[&str] = &[
    "error",
    "status",
    "request",
    "decide",
    "leases",
    "cache",
    "context",
    "children",
    "secrets",
    "dereference",
    "config_rendering",
    "source",
    "staged",
    "planning",
    "observe",
    "act",
    "building",
    "finish",
    "retention",
];

fn controller_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/controller")
}

/// The source of a module without its `#[cfg(test)]` tail (tests may reach anywhere).
fn code_of(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Every `super::NAME` a source text mentions outside comments, with `super::{A, B}` lists
/// expanded.
fn super_names(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("super::") {
            rest = &rest[i + "super::".len()..];
            if let Some(list) = rest.strip_prefix('{') {
                let end = list.find('}').unwrap_or(list.len());
                for item in list[..end].split(',') {
                    let item = item.trim();
                    let name = item.split("::").next().unwrap_or("").trim();
                    if !name.is_empty() {
                        names.push(name.to_owned());
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    names.push(name);
                }
            }
        }
    }
    names
}

fn modules() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(controller_dir()).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "rs") && stem != "mod" && stem != "tests" {
            out.insert(stem, code_of(&path));
        }
    }
    out
}

#[test]
fn every_controller_module_has_a_step() {
    for name in modules().keys() {
        assert!(
            STEPS.contains(&name.as_str()),
            "controller/{name}.rs is not in STEPS: place it at its step"
        );
    }
}

#[test]
fn controller_modules_import_only_lower_steps_and_never_mod_rs() {
    let mut problems = Vec::new();
    for (name, code) in modules() {
        let rank = STEPS.iter().position(|s| *s == name).unwrap_or(usize::MAX);
        for target in super_names(&code) {
            match STEPS.iter().position(|s| *s == target) {
                None => problems.push(format!(
                    "controller/{name}.rs uses super::{target}, an item of mod.rs (import it from its module)"
                )),
                Some(r) if r >= rank => problems.push(format!(
                    "controller/{name}.rs imports {target}, which is not a lower step"
                )),
                Some(_) => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What a pure module must not name: the kube client, the stages storage and registry
/// client, the stage locks.
const EFFECTS: &[&str] = &[
    "Client",
    "StagesStorage",
    "RegistryClient",
    "StageLocks",
    "Api<",
];

/// The pure modules, as paths under `operator/src` and `crds/src`.
fn pure_files() -> Vec<PathBuf> {
    let operator = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/src");
    let mut files = vec![
        operator.join("controller/decide.rs"),
        operator.join("controller/status.rs"),
        operator.join("controller/request.rs"),
    ];
    let report = operator.join("report.rs");
    if report.exists() {
        files.push(report);
    }
    // The facts resolution reaches the registry only through its `FactSource` trait.
    files.push(operator.join("facts/staged.rs"));
    files.push(operator.join("facts/dependencies.rs"));
    for dir in [
        operator.join("digest"),
        operator.join("job"),
        crds.join("werf"),
    ] {
        collect_rs(&dir, &mut files);
    }
    files
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn pure_modules_make_no_api_registry_or_lock_calls() {
    let mut problems = Vec::new();
    let files = pure_files();
    assert!(
        files.len() > 5,
        "the pure modules were not found: {files:?}"
    );
    for path in files {
        let code = code_of(&path);
        for (n, line) in code.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for effect in EFFECTS {
                let hit = line.match_indices(effect).any(|(i, _)| {
                    let before = line[..i].chars().next_back();
                    let after = line[i + effect.len()..].chars().next();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if hit {
                    problems.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The modules below the controller (the job compiler, the build-time facts) that it
/// imports: none of them may import the controller back.
const BELOW_CONTROLLER: &[&str] = &["job", "facts"];

#[test]
fn modules_below_the_controller_never_import_it() {
    let operator = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for dir in BELOW_CONTROLLER {
        collect_rs(&operator.join(dir), &mut files);
    }
    assert!(!files.is_empty(), "operator/src/job was not found");
    let mut problems = Vec::new();
    for path in files {
        for (n, line) in code_of(&path).lines().enumerate() {
            if !line.trim_start().starts_with("//") && line.contains("controller::") {
                problems.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scanner_sees_lists_and_paths() {
    assert_eq!(
        super_names(
            "use super::{context::Context, Error};\nlet x = super::owned_by(m);\n// super::ignored"
        ),
        ["context", "Error", "owned_by"]
    );
}
