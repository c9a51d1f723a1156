//! One pod's life on the emulated node: resolve its env and volumes, run init
//! containers in order, then the containers together, report status after every
//! change, honour deletion, and finally remove the pod when it was deleted.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use tokio::sync::{mpsc, watch};

use super::Shared;
use super::env::{Sources, container_env, expand_all};
use super::sandbox::{ProcessSpec, spawn};
use super::status::{ContainerRun, ContainerView, pod_status};
use super::volumes::{
    Mount, container_mounts, materialize, referenced_objects, wants_service_account_token,
};
use crate::process::signal_group;

/// Most bytes of a termination message the kubelet keeps.
pub const MAX_TERMINATION_MESSAGE: usize = 4096;
/// With `FallbackToLogsOnError`, at most this many trailing log lines …
pub const FALLBACK_LOG_LINES: usize = 80;
/// … and at most this many bytes become the message.
pub const FALLBACK_LOG_BYTES: usize = 2048;
/// Default `terminationMessagePath`.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// How long a pod whose Secret/ConfigMap is missing waits before the next try.
const RESOLVE_RETRY: Duration = Duration::from_secs(1);

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// The termination message as the kubelet computes it: the file's first 4096 bytes;
/// with `FallbackToLogsOnError`, an empty file and a non-zero exit, the last 80 log
/// lines capped at 2048 bytes (keeping the end).
pub fn termination_message(
    file: &[u8],
    log: &[u8],
    fallback_to_logs: bool,
    exit_code: i32,
) -> String {
    let msg = &file[..file.len().min(MAX_TERMINATION_MESSAGE)];
    if !msg.is_empty() || !fallback_to_logs || exit_code == 0 {
        return String::from_utf8_lossy(msg).into_owned();
    }
    let text = String::from_utf8_lossy(log);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(FALLBACK_LOG_LINES)..].join("\n");
    let start = tail.len().saturating_sub(FALLBACK_LOG_BYTES);
    let start = (start..=tail.len())
        .find(|i| tail.is_char_boundary(*i))
        .unwrap_or(tail.len());
    tail[start..].to_owned()
}

struct Run {
    shared: Arc<Shared>,
    pod: Pod,
    ns: String,
    name: String,
    uid: String,
    pod_dir: PathBuf,
    init: Vec<ContainerView>,
    containers: Vec<ContainerView>,
    start_time: Time,
    terminate: watch::Receiver<Option<Duration>>,
}

/// Runs `pod` to completion (or deletion). `terminate` receives the grace period when
/// the pod is being deleted.
pub(crate) async fn run_pod(
    shared: Arc<Shared>,
    pod: Pod,
    terminate: watch::Receiver<Option<Duration>>,
) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let waiting = |reason: &str| ContainerRun::Waiting {
        reason: reason.to_owned(),
        message: String::new(),
    };
    let view = |c: &Container, reason: &str| ContainerView {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        state: waiting(reason),
    };
    let has_init = spec.init_containers.as_ref().is_some_and(|v| !v.is_empty());
    let mut run = Run {
        pod_dir: shared.pods_dir.join(format!("{ns}_{name}_{uid}")),
        init: spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| view(c, "PodInitializing"))
            .collect(),
        containers: spec
            .containers
            .iter()
            .map(|c| {
                view(
                    c,
                    if has_init {
                        "PodInitializing"
                    } else {
                        "ContainerCreating"
                    },
                )
            })
            .collect(),
        shared,
        pod,
        ns,
        name,
        uid,
        start_time: now(),
        terminate,
    };
    run.lifecycle().await;
    let _ = std::fs::remove_dir_all(run.pod_dir.join("volumes"));
    let _ = std::fs::remove_dir_all(run.pod_dir.join("termination"));
    let _ = std::fs::remove_dir_all(run.pod_dir.join("roots"));
    let _ = std::fs::remove_dir(&run.pod_dir);
}

impl Run {
    fn terminating(&self) -> Option<Duration> {
        *self.terminate.borrow()
    }

    async fn lifecycle(&mut self) {
        self.report().await;
        let Some((sources, volumes)) = self.resolve().await else {
            return self.finish_deleted().await;
        };
        let spec = self.pod.spec.clone().unwrap_or_default();
        for (i, c) in spec.init_containers.iter().flatten().enumerate() {
            if self.terminating().is_some() {
                return self.finish_deleted().await;
            }
            let started = self.start(c, &sources, &volumes);
            let pending = self.record_start(true, i, started);
            self.report().await;
            if let Some((pgid, child)) = pending {
                let (tx, mut rx) = mpsc::unbounded_channel();
                wait_in_background(i, child, tx);
                let exit = self.wait_exits(&[pgid], &mut rx).await;
                for (idx, status) in exit {
                    self.record_exit(true, idx, status);
                }
                self.report().await;
            }
            if !matches!(
                self.init[i].state,
                ContainerRun::Terminated { exit_code: 0, .. }
            ) {
                if self.terminating().is_some() {
                    return self.finish_deleted().await;
                }
                return;
            }
        }
        if self.terminating().is_some() {
            return self.finish_deleted().await;
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut pgids = Vec::new();
        for (i, c) in spec.containers.iter().enumerate() {
            let started = self.start(c, &sources, &volumes);
            if let Some((pgid, child)) = self.record_start(false, i, started) {
                pgids.push(pgid);
                wait_in_background(i, child, tx.clone());
            }
        }
        drop(tx);
        self.report().await;
        let mut left = pgids.len();
        while left > 0 {
            let exits = self.wait_exits(&pgids, &mut rx).await;
            if exits.is_empty() {
                // Channel closed or emulator gone: nothing more will arrive.
                break;
            }
            for (idx, status) in exits {
                self.record_exit(false, idx, status);
                left -= 1;
            }
            if self.terminating().is_none() {
                self.report().await;
            }
        }
        if self.terminating().is_some() {
            self.finish_deleted().await;
        }
    }

    /// Fetches the referenced Secrets/ConfigMaps and materializes volumes, retrying
    /// while they are missing; `None` if the pod is deleted meanwhile.
    async fn resolve(&mut self) -> Option<(Sources, BTreeMap<String, PathBuf>)> {
        loop {
            if self.terminating().is_some() {
                return None;
            }
            let (reason, message) = match self.fetch_sources().await {
                Ok(sources) => {
                    let envs: Result<Vec<_>, _> = self
                        .pod
                        .spec
                        .iter()
                        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
                        .map(|c| container_env(&self.pod, c, &sources))
                        .collect();
                    match envs {
                        Err(e) => ("CreateContainerConfigError", e.to_string()),
                        Ok(_) => {
                            match materialize(&self.pod, &sources, &self.pod_dir.join("volumes")) {
                                Ok(v) => return Some((sources, v)),
                                Err(e) => ("ContainerCreating", format!("MountVolume failed: {e}")),
                            }
                        }
                    }
                }
                Err(e) => ("ContainerCreating", e.to_string()),
            };
            for v in self
                .init
                .iter_mut()
                .chain(self.containers.iter_mut())
                .take(1)
            {
                v.state = ContainerRun::Waiting {
                    reason: reason.to_owned(),
                    message: message.clone(),
                };
            }
            self.report().await;
            let mut term = self.terminate.clone();
            tokio::select! {
                _ = tokio::time::sleep(RESOLVE_RETRY) => {}
                _ = term.changed() => {}
            }
        }
    }

    async fn fetch_sources(&self) -> Result<Sources, kube::Error> {
        let (secret_names, cm_names) = referenced_objects(&self.pod);
        let mut sources = Sources::default();
        let secrets: Api<Secret> = Api::namespaced(self.shared.client.clone(), &self.ns);
        for n in secret_names {
            if let Some(s) = secrets.get_opt(&n).await? {
                let mut data: BTreeMap<String, Vec<u8>> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                for (k, v) in s.string_data.unwrap_or_default() {
                    data.insert(k, v.into_bytes());
                }
                sources.secrets.insert(n, data);
            }
        }
        let cms: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &self.ns);
        for n in cm_names {
            if let Some(c) = cms.get_opt(&n).await? {
                let mut data: BTreeMap<String, Vec<u8>> = c
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                for (k, v) in c.binary_data.unwrap_or_default() {
                    data.insert(k, v.0);
                }
                sources.config_maps.insert(n, data);
            }
        }
        if wants_service_account_token(&self.pod) {
            let sa = self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into());
            let sas: Api<ServiceAccount> = Api::namespaced(self.shared.client.clone(), &self.ns);
            let req = TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(3600),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let token: TokenRequest = sas
                .create_subresource("token", &sa, &PostParams::default(), &req)
                .await?;
            sources.service_account_token = token.status.and_then(|s| s.token);
        }
        Ok(sources)
    }

    fn termination_file(&self, container: &str) -> PathBuf {
        self.pod_dir.join("termination").join(container)
    }

    /// The log file of `container` (kept after the pod ends, until the emulator stops).
    fn log_file(&self, container: &str) -> PathBuf {
        self.shared.container_log(&self.ns, &self.name, container)
    }

    fn start(
        &self,
        c: &Container,
        sources: &Sources,
        volumes: &BTreeMap<String, PathBuf>,
    ) -> Result<std::process::Child, String> {
        let env = container_env(&self.pod, c, sources).map_err(|e| e.to_string())?;
        let command = expand_all(c.command.as_deref().unwrap_or_default(), &env);
        let args = expand_all(c.args.as_deref().unwrap_or_default(), &env);
        let argv = self
            .shared
            .image_map
            .argv(
                &c.name,
                c.image.as_deref().unwrap_or_default(),
                &command,
                &args,
            )
            .map_err(|e| e.to_string())?;
        let mut mounts = container_mounts(&self.pod, c, volumes).map_err(|e| e.to_string())?;
        let term = self.termination_file(&c.name);
        std::fs::create_dir_all(term.parent().unwrap_or(Path::new("/")))
            .and_then(|_| std::fs::write(&term, b""))
            .map_err(|e| format!("creating {}: {e}", term.display()))?;
        mounts.push(Mount {
            source: term,
            target: PathBuf::from(
                c.termination_message_path
                    .as_deref()
                    .unwrap_or(DEFAULT_TERMINATION_MESSAGE_PATH),
            ),
            read_only: false,
        });
        let mut full_env = vec![
            ("HOSTNAME".to_owned(), self.name.clone()),
            ("HOME".to_owned(), "/root".to_owned()),
        ];
        full_env.extend(env);
        let log = self.log_file(&c.name);
        if let Some(dir) = log.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        spawn(&ProcessSpec {
            argv,
            env: full_env,
            working_dir: c.working_dir.as_ref().map(PathBuf::from),
            mounts,
            root: self.pod_dir.join("roots").join(&c.name),
            log,
        })
        .map_err(|e| e.to_string())
    }

    fn views(&mut self, init: bool) -> &mut Vec<ContainerView> {
        if init {
            &mut self.init
        } else {
            &mut self.containers
        }
    }

    /// Records a start (Running) or a start failure (Terminated, StartError, 128);
    /// returns the process to wait for.
    fn record_start(
        &mut self,
        init: bool,
        i: usize,
        started: Result<std::process::Child, String>,
    ) -> Option<(u32, std::process::Child)> {
        let t = now();
        match started {
            Ok(child) => {
                let pgid = child.id();
                self.shared.track(pgid, true);
                self.views(init)[i].state = ContainerRun::Running { started_at: t };
                Some((pgid, child))
            }
            Err(message) => {
                self.views(init)[i].state = ContainerRun::Terminated {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".into(),
                    message,
                    started_at: t.clone(),
                    finished_at: t,
                };
                None
            }
        }
    }

    fn record_exit(&mut self, init: bool, i: usize, status: std::process::ExitStatus) {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let c = if init {
            spec.init_containers.unwrap_or_default()[i].clone()
        } else {
            spec.containers[i].clone()
        };
        let (exit_code, signal) = match (status.code(), status.signal()) {
            (Some(code), _) => (code, None),
            (None, Some(sig)) => (128 + sig, Some(sig)),
            (None, None) => (255, None),
        };
        let file = std::fs::read(self.termination_file(&c.name)).unwrap_or_default();
        let log = std::fs::read(self.log_file(&c.name)).unwrap_or_default();
        let fallback = c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
        let message = termination_message(&file, &log, fallback, exit_code);
        let started_at = match &self.views(init)[i].state {
            ContainerRun::Running { started_at } => started_at.clone(),
            _ => now(),
        };
        self.views(init)[i].state = ContainerRun::Terminated {
            exit_code,
            signal,
            reason: if exit_code == 0 { "Completed" } else { "Error" }.into(),
            message,
            started_at,
            finished_at: now(),
        };
    }

    /// Waits for at least one exit; on deletion sends SIGTERM to `pgids`, then SIGKILL
    /// after the grace period. Returns the exits seen (index, status).
    async fn wait_exits(
        &mut self,
        pgids: &[u32],
        rx: &mut mpsc::UnboundedReceiver<(usize, std::process::ExitStatus, u32)>,
    ) -> Vec<(usize, std::process::ExitStatus)> {
        let mut term = self.terminate.clone();
        loop {
            if let Some(grace) = self.terminating() {
                for &p in pgids {
                    signal_group(p, libc::SIGTERM);
                }
                let mut out = Vec::new();
                let deadline = tokio::time::Instant::now() + grace;
                loop {
                    tokio::select! {
                        got = rx.recv() => match got {
                            Some((i, s, pgid)) => { self.shared.track(pgid, false); out.push((i, s)); }
                            None => return out,
                        },
                        _ = tokio::time::sleep_until(deadline) => {
                            for &p in pgids {
                                signal_group(p, libc::SIGKILL);
                            }
                            while let Some((i, s, pgid)) = rx.recv().await {
                                self.shared.track(pgid, false);
                                out.push((i, s));
                            }
                            return out;
                        }
                    }
                }
            }
            tokio::select! {
                got = rx.recv() => {
                    let Some((i, s, pgid)) = got else { return Vec::new() };
                    self.shared.track(pgid, false);
                    // Also kill what the container left behind in its group.
                    signal_group(pgid, libc::SIGKILL);
                    return vec![(i, s)];
                }
                changed = term.changed() => {
                    if changed.is_err() {
                        // The emulator is gone; its Drop kills the processes.
                        return Vec::new();
                    }
                }
            }
        }
    }

    async fn report(&self) {
        let status = pod_status(
            &self.uid,
            &self.init,
            &self.containers,
            &self.start_time,
            &now(),
        );
        let pods: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.ns);
        tracing::debug!(pod = %self.name, phase = ?status.phase, "reporting status");
        if let Err(e) = pods
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "status": status })),
            )
            .await
        {
            tracing::debug!(pod = %self.name, namespace = %self.ns, error = %e, "pod status update failed");
        }
    }

    /// After the processes are gone: remove the pod for good, as a kubelet does once a
    /// deleted pod's containers stopped (only this pod: the UID is a precondition).
    async fn finish_deleted(&self) {
        delete_now(&self.shared.client, &self.ns, &self.name, &self.uid).await;
    }
}

/// Deletes the pod with grace period 0 (the kubelet's final delete), UID-guarded.
pub async fn delete_now(client: &kube::Client, ns: &str, name: &str, uid: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..Default::default()
    };
    if let Err(e) = pods.delete(name, &dp).await {
        tracing::debug!(pod = %name, namespace = %ns, error = %e, "final pod delete failed");
    }
}

fn wait_in_background(
    i: usize,
    mut child: std::process::Child,
    tx: mpsc::UnboundedSender<(usize, std::process::ExitStatus, u32)>,
) {
    let pgid = child.id();
    // A plain thread: waitpid blocks, and tokio's blocking pool may be small.
    std::thread::spawn(move || {
        if let Ok(status) = child.wait() {
            let _ = tx.send((i, status, pgid));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_message_wins_and_is_capped_at_4096_bytes() {
        let big = vec![b'x'; 5000];
        assert_eq!(termination_message(&big, b"log", true, 1).len(), 4096);
        assert_eq!(termination_message(b"done", b"log", true, 1), "done");
    }

    #[test]
    fn fallback_uses_log_tail_only_on_error() {
        let log: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let msg = termination_message(b"", log.as_bytes(), true, 2);
        // Last 80 lines: 21..=100.
        assert!(
            msg.starts_with("line 21\n") && msg.ends_with("line 100"),
            "{msg}"
        );
        assert_eq!(termination_message(b"", log.as_bytes(), true, 0), "");
        assert_eq!(termination_message(b"", log.as_bytes(), false, 2), "");
        let long = "y".repeat(3000);
        assert_eq!(
            termination_message(b"", long.as_bytes(), true, 1).len(),
            2048
        );
    }
}
