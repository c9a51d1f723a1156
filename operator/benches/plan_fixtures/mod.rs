//! Generated projects for the planner benchmarks (shared by `plan` and `plan_memory`).

#![allow(dead_code)]

#[path = "../../tests/plan_support/mod.rs"]
mod plan_support;

pub use plan_support::TestRepo;

/// A repository of `files` files and `images` Dockerfile images: each image has its own context
/// `svc-N/` (files spread over nested directories) and a Dockerfile that COPYs a manifest and
/// then the whole context — the most hashing a Dockerfile image can ask for. Images form a
/// chain of `dependencies` every fourth image, so the plan has several sets.
pub fn large_repository(files: usize, images: usize) -> TestRepo {
    let mut snapshot: Vec<(String, String)> = Vec::with_capacity(files + images + 1);
    let mut werf_yaml = String::from("project: bench\nconfigVersion: 1\n");
    for i in 0..images {
        werf_yaml.push_str(&format!(
            "---\nimage: svc-{i}\ndockerfile: Dockerfile\ncontext: svc-{i}\n"
        ));
        if i % 4 != 0 {
            werf_yaml.push_str(&format!("dependencies:\n- image: svc-{}\n", i - 1));
        }
        snapshot.push((
            format!("svc-{i}/Dockerfile"),
            format!(
                "FROM alpine:3.20 AS build\nWORKDIR /src\nCOPY manifest.json ./\nRUN echo {i}\nCOPY . .\nRUN make\nFROM alpine:3.20\nCOPY --from=build /src/out /app\nCMD [\"/app/run\"]\n"
            ),
        ));
        snapshot.push((format!("svc-{i}/manifest.json"), format!("{{\"n\":{i}}}\n")));
    }
    snapshot.push(("werf.yaml".into(), werf_yaml));
    let remaining = files.saturating_sub(snapshot.len());
    for f in 0..remaining {
        let image = f % images;
        let path = format!("svc-{image}/src/d{}/e{}/file{f}.txt", (f / 7) % 25, f % 10);
        snapshot.push((path, format!("content of file {f}\n")));
    }
    let repo = TestRepo::new();
    repo.commit(&snapshot);
    repo
}

/// werf.yaml with `images` Stapel images forming a layered DAG: image i depends on up to three
/// earlier images chosen by a fixed pseudo-random sequence, through `fromImage`,
/// `dependencies` and `import`.
pub fn large_dag_config(images: usize) -> String {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    let mut yaml = String::from("project: bench\nconfigVersion: 1\n");
    for i in 0..images {
        yaml.push_str(&format!("---\nimage: img-{i}\n"));
        if i == 0 {
            yaml.push_str("from: alpine:3.20\n");
            continue;
        }
        yaml.push_str(&format!("fromImage: img-{}\n", next(i)));
        yaml.push_str(&format!(
            "dependencies:\n- image: img-{}\n  after: install\n",
            next(i)
        ));
        yaml.push_str(&format!(
            "import:\n- image: img-{}\n  add: /out\n  to: /in\n  before: setup\n",
            next(i)
        ));
        yaml.push_str("shell:\n  install: [make]\n");
    }
    yaml
}

/// A repository with `images` Dockerfile images, each in its own context with a small
/// Dockerfile, depending on up to two earlier images (fixed pseudo-random choice) through
/// `dependencies`: the 500-image DAG planned end to end, digests included.
pub fn dag_repository(images: usize) -> TestRepo {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    let mut files: Vec<(String, String)> = Vec::new();
    let mut yaml = String::from("project: bench\nconfigVersion: 1\n");
    for i in 0..images {
        yaml.push_str(&format!(
            "---\nimage: img-{i}\ndockerfile: Dockerfile\ncontext: img-{i}\n"
        ));
        if i > 0 {
            yaml.push_str(&format!(
                "dependencies:\n- image: img-{}\n- image: img-{}\n",
                next(i),
                next(i)
            ));
        }
        files.push((
            format!("img-{i}/Dockerfile"),
            format!("FROM alpine:3.20\nCOPY app.txt /app/\nRUN echo {i}\n"),
        ));
        files.push((format!("img-{i}/app.txt"), format!("app {i}\n")));
    }
    files.push(("werf.yaml".into(), yaml));
    let repo = TestRepo::new();
    repo.commit(&files);
    repo
}
