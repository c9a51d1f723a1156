//! Side-by-side benchmark: `kiln-builder` building and pushing a non-staged Dockerfile
//! stage versus plain `buildah bud` + `buildah push` of the same Dockerfile, each from a
//! fresh Buildah store (as in a new builder pod), against a local registry.
//!
//! `cargo bench -p kiln-builder --bench build_push` prints per-run times, medians and the
//! ratio kiln/plain (target ≤ 1.1). `KILN_BENCH_ITERATIONS` sets the number of pairs
//! (default 7). kiln-builder's time includes what it does beyond plain Buildah: the git
//! fetch of the commit, the registries.conf, labels, and reading the pushed manifest back.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_crds::job::{
    BuildJob, JOB_API_VERSION, NetworkMode, ParentRef, Source, StageBuild, StageJob,
};
use kiln_testkit::base_images::push_busybox;
use kiln_testkit::registry::TestRegistry;

fn main() {
    // `cargo bench` passes `--bench`; with harness = false, ignore all arguments.
    let iterations: usize = std::env::var("KILN_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let registry = TestRegistry::start().expect("registry");
    let base = push_busybox(registry.address(), "library/busybox").expect("base images");
    let tmp = tempfile::Builder::new()
        .prefix("kiln-bench-")
        .tempdir()
        .unwrap();

    // The project: a Dockerfile and some context files, in a bare repo served over file://.
    let work = tmp.path().join("work");
    std::fs::create_dir_all(work.join("src")).unwrap();
    let dockerfile = format!(
        "FROM {}\nCOPY src/ /src/\nRUN cat /src/*.txt | wc -c > /size && echo built\nRUN echo done > /done\n",
        base.list
    );
    std::fs::write(work.join("Dockerfile"), &dockerfile).unwrap();
    for i in 0..50 {
        std::fs::write(work.join(format!("src/file{i}.txt")), "x".repeat(20_000)).unwrap();
    }
    sh(
        &work,
        "git init -q -b main && git add -A && git -c user.email=b@k -c user.name=b commit -qm bench",
    );
    sh(tmp.path(), "git clone -q --bare work bare.git");
    let commit = sh(&work, "git rev-parse HEAD").trim().to_owned();
    let regs = tmp.path().join("registries.conf");
    std::fs::write(
        &regs,
        format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            registry.address()
        ),
    )
    .unwrap();

    let mut kiln = Vec::new();
    let mut plain = Vec::new();
    for i in 0..iterations {
        // Alternate the order so that neither side always runs on a warmer machine.
        let order: [bool; 2] = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for kiln_first in order {
            let run = tmp.path().join(format!(
                "run-{i}-{}",
                if kiln_first { "kiln" } else { "plain" }
            ));
            std::fs::create_dir_all(&run).unwrap();
            let elapsed = if kiln_first {
                run_kiln(
                    &run,
                    registry.address(),
                    &tmp.path().join("bare.git"),
                    &commit,
                    i,
                )
            } else {
                run_plain(&run, registry.address(), &work, &regs, i)
            };
            std::fs::remove_dir_all(&run).unwrap();
            if kiln_first {
                kiln.push(elapsed);
            } else {
                plain.push(elapsed);
            }
            println!(
                "run {i}: {:<6} {:>7.3} s",
                if kiln_first { "kiln" } else { "plain" },
                elapsed.as_secs_f64()
            );
        }
    }
    let (k, p) = (median(&kiln), median(&plain));
    println!("median kiln-builder build+push: {k:.3} s");
    println!("median buildah bud + push:      {p:.3} s");
    println!(
        "ratio kiln/plain (median):      {:.3} (target <= 1.1)",
        k / p
    );
    let (ks, ps): (f64, f64) = (
        kiln.iter().map(Duration::as_secs_f64).sum(),
        plain.iter().map(Duration::as_secs_f64).sum(),
    );
    println!("ratio kiln/plain (total):       {:.3}", ks / ps);
}

fn run_kiln(run: &Path, registry: &str, bare: &Path, commit: &str, i: usize) -> Duration {
    let job = BuildJob {
        api_version: JOB_API_VERSION.into(),
        project: "bench".into(),
        image: "app".into(),
        commit: None,
        source: Some(Source {
            url: format!("file://{}", bare.display()),
            commit: commit.into(),
            auth: None,
        }),
        context_dir: String::new(),
        dockerfile_path: "Dockerfile".into(),
        target: None,
        build_args: BTreeMap::new(),
        add_hosts: vec![],
        platform: None,
        network: NetworkMode::Default,
        ssh_key_paths: vec![],
        secrets: vec![],
        registry_mirrors: vec![],
        insecure_registries: vec![registry.into()],
        registry_auth_path: None,
        repo: format!("{registry}/kiln"),
        cache_repos: vec![],
        base_images: vec![],
        stages: vec![StageJob {
            name: "dockerfile".into(),
            // A distinct digest per run, as distinct builds would have.
            digest: format!("{:056x}", i + 1),
            content_digest: format!("{:056x}", i + 1001),
            parent: ParentRef::None,
            build: StageBuild::Dockerfile { dockerfile: None },
            labels: BTreeMap::new(),
        }],
    };
    let job_file = run.join("job.json");
    std::fs::write(&job_file, job.to_json()).unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kiln-builder"))
        .arg("--job-file")
        .arg(&job_file)
        .arg("--termination-log")
        .arg(run.join("termination-log"))
        .arg("--root")
        .arg(run.join("root"))
        .arg("--runroot")
        .arg(run.join("runroot"))
        .arg("--work-dir")
        .arg(run)
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "kiln-builder failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    elapsed
}

fn run_plain(run: &Path, registry: &str, context: &Path, regs: &Path, i: usize) -> Duration {
    let buildah = |args: &[&str]| {
        let out = Command::new("buildah")
            .arg("--root")
            .arg(run.join("root"))
            .arg("--runroot")
            .arg(run.join("runroot"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("BUILDAH_ISOLATION", "chroot")
            .env("CONTAINERS_REGISTRIES_CONF", regs)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "buildah {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let iid = run.join("iid");
    let started = Instant::now();
    buildah(&[
        "bud",
        "--format",
        "docker",
        "--iidfile",
        iid.to_str().unwrap(),
        "-f",
        context.join("Dockerfile").to_str().unwrap(),
        context.to_str().unwrap(),
    ]);
    let id = std::fs::read_to_string(&iid).unwrap();
    buildah(&[
        "push",
        "--quiet",
        id.trim(),
        &format!("docker://{registry}/plain:run-{i}"),
    ]);
    started.elapsed()
}

fn median(values: &[Duration]) -> f64 {
    let mut secs: Vec<f64> = values.iter().map(Duration::as_secs_f64).collect();
    secs.sort_by(f64::total_cmp);
    let n = secs.len();
    if n % 2 == 1 {
        secs[n / 2]
    } else {
        (secs[n / 2 - 1] + secs[n / 2]) / 2.0
    }
}

fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
