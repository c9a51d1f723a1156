//! Retention of finished ImageBuilds (`spec.retention`): once the TTL of the final phase
//! has passed since `status.completionTime`, the ImageBuild is deleted; its finalizer then
//! removes what is left of it (builder pods, job and report ConfigMaps). Published images
//! and stages stay: they belong to the stages storage, not to the build.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kiln_crds::{ImageBuild, ImageBuildStatus};
use kube::ResourceExt;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;

use super::context::Context;
use super::error::Error;

/// What to do with a finished build at `now`: keep it (no TTL, or no completion time),
/// look again when its TTL passes, or delete it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No retention rule applies: wait for a spec change.
    Keep,
    /// Delete after this much more time.
    ExpiresIn(Duration),
    /// The TTL has passed.
    Expired,
}

/// The retention verdict of a finished `ib` with `status` at `now`. A TTL that does not
/// parse keeps the build (validation reports it when the spec changes).
pub fn verdict(ib: &ImageBuild, status: &ImageBuildStatus, now: Timestamp) -> Verdict {
    let Ok(Some(ttl)) = ib.spec.retention_ttl(status.phase) else {
        return Verdict::Keep;
    };
    let Some(done) = &status.completion_time else {
        return Verdict::Keep;
    };
    let age = Duration::try_from(now.duration_since(done.0)).unwrap_or(Duration::ZERO);
    match ttl.checked_sub(age) {
        Some(left) if !left.is_zero() => Verdict::ExpiresIn(left),
        _ => Verdict::Expired,
    }
}

/// Applies [`verdict`]: deletes an expired build, or requeues it for when it expires.
///
/// Errors: the delete request fails (a 404 — already gone — is fine).
pub async fn expire(
    ib: &ImageBuild,
    ctx: &Context,
    status: &ImageBuildStatus,
) -> Result<Action, Error> {
    match verdict(ib, status, Timestamp::now()) {
        Verdict::Keep => Ok(Action::await_change()),
        Verdict::ExpiresIn(left) => Ok(Action::requeue(left)),
        Verdict::Expired => {
            let api = ctx.builds(&ib.namespace().unwrap_or_default());
            match api
                .delete(&ib.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(Error::Kube(e)),
            }
            tracing::info!(imagebuild = %ib.name_any(), phase = %status.phase.as_str(), "retention time passed; ImageBuild deleted");
            Ok(Action::await_change())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kiln_crds::Phase;
    use kiln_crds::imagebuild::RetentionSpec;

    fn finished(phase: Phase, completed_at: i64) -> (ImageBuild, ImageBuildStatus) {
        let mut ib = ImageBuild::new("b", Default::default());
        ib.spec.retention = Some(RetentionSpec {
            ttl_after_succeeded: Some("1h".into()),
            ttl_after_failed: Some("10m".into()),
        });
        let status = ImageBuildStatus {
            phase,
            completion_time: Some(Time(Timestamp::from_second(completed_at).unwrap())),
            ..ImageBuildStatus::default()
        };
        (ib, status)
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn each_final_phase_has_its_ttl() {
        let (ib, ok) = finished(Phase::Succeeded, 1_000);
        assert_eq!(
            verdict(&ib, &ok, at(1_000 + 600)),
            Verdict::ExpiresIn(Duration::from_secs(3_000))
        );
        assert_eq!(verdict(&ib, &ok, at(1_000 + 3_600)), Verdict::Expired);
        let (ib, failed) = finished(Phase::Failed, 1_000);
        assert_eq!(
            verdict(&ib, &failed, at(1_000 + 60)),
            Verdict::ExpiresIn(Duration::from_secs(540))
        );
        assert_eq!(verdict(&ib, &failed, at(1_000 + 601)), Verdict::Expired);
        let (ib, cancelled) = finished(Phase::Cancelled, 1_000);
        assert_eq!(verdict(&ib, &cancelled, at(1_000 + 601)), Verdict::Expired);
    }

    #[test]
    fn no_rule_or_no_completion_time_keeps_the_build() {
        let (mut ib, mut status) = finished(Phase::Succeeded, 1_000);
        status.completion_time = None;
        assert_eq!(verdict(&ib, &status, at(10_000)), Verdict::Keep);
        let (_, status) = finished(Phase::Succeeded, 1_000);
        ib.spec.retention = None;
        assert_eq!(verdict(&ib, &status, at(10_000)), Verdict::Keep);
        ib.spec.retention = Some(RetentionSpec {
            ttl_after_succeeded: None,
            ttl_after_failed: Some("1s".into()),
        });
        assert_eq!(verdict(&ib, &status, at(10_000)), Verdict::Keep);
    }
}
