//! Peak memory of planning a 100,000-file repository with 20 images (target < 300 MiB).
//!
//! The parent process builds the repository, then runs itself as a child that only opens the
//! commit and plans; the child reports its peak resident set (`VmHWM` from /proc/self/status)
//! and wall time, so repository generation does not count.

mod plan_fixtures;

use std::process::Command;
use std::time::Instant;

use kiln_operator::plan::project::{PlanRequest, plan_project};
use kiln_operator::source::GitTree;

const CHILD_ENV: &str = "KILN_PLAN_MEMORY_REPO";

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let before = status_kib("VmHWM:").unwrap_or(0);
        let start = Instant::now();
        let tree = GitTree::open(std::path::Path::new(&dir), None).unwrap();
        let plan = plan_project(&tree, &PlanRequest::default()).unwrap();
        let elapsed = start.elapsed();
        let peak = status_kib("VmHWM:").unwrap_or(0);
        println!(
            "planned {} images in {} sets: {:.1} ms, peak RSS {:.1} MiB (at start {:.1} MiB)",
            plan.images.len(),
            plan.sets.sets.len(),
            elapsed.as_secs_f64() * 1000.0,
            peak as f64 / 1024.0,
            before as f64 / 1024.0
        );
        return;
    }
    // `cargo bench` passes `--bench`; anything else (e.g. `cargo test --benches`) only checks
    // that the bench builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let repo = plan_fixtures::large_repository(100_000, 20);
    let status = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, repo.path())
        .status()
        .unwrap();
    assert!(status.success());
}
