//! `kiln-local-stack up|down|status`: the whole local stack (control plane, a real node
//! with containerd and kubelet, registry, git server) as a background process for demos
//! and manual tests. The node has the `kiln-builder:dev` and `kiln-operator:dev` images
//! made from the workspace's binaries next to this one (`hack/images.sh`).
//!
//! `up` starts `kiln-local-stack run` detached (own session), waits until it has written
//! `info.json` to the state directory, and prints how to use the stack. `down` sends
//! SIGTERM to the pid in `stack.pid`; `run` then drops the stack, which stops every
//! process it started. If `run` is killed outright, its children die with it
//! (parent-death signal).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use kiln_e2e::stack::{LocalStack, StackInfo, StackOptions};

#[derive(Parser)]
#[command(about = "Kiln's local Kubernetes stack: control plane, real node, registry, git server")]
struct Cli {
    /// State directory (kubeconfig, logs, pid); default $KILN_CACHE_DIR/local-stack.
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the stack in the background and print how to use it.
    Up {
        /// Seconds to wait for the stack to become ready.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
        /// Skip QEMU registration and the busybox base images.
        #[arg(long)]
        no_base_images: bool,
    },
    /// Stop the stack started by `up`.
    Down,
    /// Print the usage text of a running stack.
    Status,
    /// Run the stack in the foreground until SIGTERM or Ctrl-C (what `up` starts).
    Run {
        /// Skip QEMU registration and the busybox base images.
        #[arg(long)]
        no_base_images: bool,
    },
}

const PID_FILE: &str = "stack.pid";
const INFO_FILE: &str = "info.json";
const LOG_FILE: &str = "stack.log";

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let state_dir = match cli.state_dir {
        Some(d) => d,
        None => kiln_e2e::binaries::cache_dir()?.join("local-stack"),
    };
    match cli.command {
        Cmd::Up {
            timeout,
            no_base_images,
        } => up(&state_dir, Duration::from_secs(timeout), no_base_images),
        Cmd::Down => down(&state_dir),
        Cmd::Status => status(&state_dir),
        Cmd::Run { no_base_images } => run(&state_dir, !no_base_images),
    }
}

fn running_pid(state_dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(state_dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: signal 0 only checks that the process exists.
    (unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

fn read_info(state_dir: &Path) -> Option<StackInfo> {
    serde_json::from_slice(&std::fs::read(state_dir.join(INFO_FILE)).ok()?).ok()
}

fn up(state_dir: &Path, timeout: Duration, no_base_images: bool) -> anyhow::Result<()> {
    if running_pid(state_dir).is_some()
        && let Some(info) = read_info(state_dir)
    {
        println!("Already running.\n{}", info.usage(state_dir));
        return Ok(());
    }
    // A stale state directory from a killed stack: start afresh.
    if state_dir.exists() {
        std::fs::remove_dir_all(state_dir)
            .with_context(|| format!("removing stale state {}", state_dir.display()))?;
    }
    std::fs::create_dir_all(state_dir)?;
    let log = std::fs::File::create(state_dir.join(LOG_FILE))?;
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("--state-dir")
        .arg(state_dir)
        .arg("run")
        .args(no_base_images.then_some("--no-base-images"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the stack from this terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting kiln-local-stack run")?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(info) = read_info(state_dir) {
            println!("{}", info.usage(state_dir));
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the stack exited with {status} while starting; its log ({}):\n{}",
                state_dir.join(LOG_FILE).display(),
                kiln_e2e::process::log_tail(&state_dir.join(LOG_FILE), 8192)
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "the stack was not ready after {timeout:?}; its log: {}",
                state_dir.join(LOG_FILE).display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn down(state_dir: &Path) -> anyhow::Result<()> {
    let Some(pid) = running_pid(state_dir) else {
        println!("No stack running (state {}).", state_dir.display());
        return Ok(());
    };
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while running_pid(state_dir) == Some(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if running_pid(state_dir) == Some(pid) {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // Children die with `run` (parent-death signal); make sure of the control plane.
    if let Some(info) = read_info(state_dir) {
        for (_, pgid) in info.pids {
            kiln_e2e::process::signal_group(pgid, libc::SIGKILL);
        }
    }
    std::fs::remove_dir_all(state_dir)
        .with_context(|| format!("removing {}", state_dir.display()))?;
    println!("Stopped.");
    Ok(())
}

fn status(state_dir: &Path) -> anyhow::Result<()> {
    match (running_pid(state_dir), read_info(state_dir)) {
        (Some(_), Some(info)) => println!("{}", info.usage(state_dir)),
        _ => println!("No stack running (state {}).", state_dir.display()),
    }
    Ok(())
}

fn run(state_dir: &Path, base_images: bool) -> anyhow::Result<()> {
    kiln_e2e::init_test_logging();
    std::fs::create_dir_all(state_dir)?;
    std::fs::write(state_dir.join(PID_FILE), std::process::id().to_string())?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let node_images = ["builder", "operator"]
            .into_iter()
            .map(kiln_e2e::images::workspace_image)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let stack = LocalStack::start(StackOptions {
            state_dir: Some(state_dir.to_owned()),
            node_images,
            base_images,
            ..StackOptions::default()
        })
        .await?;
        let info = stack.info();
        let tmp = state_dir.join(format!("{INFO_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&info)?)?;
        std::fs::rename(&tmp, state_dir.join(INFO_FILE))?;
        eprintln!("{}", info.usage(state_dir));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("stopping");
        drop(stack);
        anyhow::Ok(())
    })?;
    Ok(())
}
