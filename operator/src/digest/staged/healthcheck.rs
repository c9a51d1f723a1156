//! `HEALTHCHECK`: `"Test", ...` then `"Interval"`, `"Timeout"`, `"StartPeriod"` as Go
//! durations and `"Retries"`.

use super::go::go_duration;
use super::{Step, command_parts};
use crate::dockerfile::HealthcheckArgs;
use kiln_crds::job::Instruction as JobInstruction;

/// A `HEALTHCHECK NONE` (`None`) or `HEALTHCHECK CMD ...` stage.
pub(super) fn step(h: Option<&HealthcheckArgs>) -> Step {
    let deps = match h {
        None => vec![
            "Test".to_string(),
            "NONE".into(),
            "Interval".into(),
            "0s".into(),
            "Timeout".into(),
            "0s".into(),
            "StartPeriod".into(),
            "0s".into(),
            "Retries".into(),
            "0".into(),
        ],
        Some(h) => {
            let (cmd, prepend) = command_parts(&h.command);
            let mut deps = vec![
                "Test".to_string(),
                if prepend { "CMD-SHELL" } else { "CMD" }.into(),
            ];
            deps.extend(cmd);
            deps.extend([
                "Interval".to_string(),
                go_duration(h.interval.as_deref()),
                "Timeout".into(),
                go_duration(h.timeout.as_deref()),
                "StartPeriod".into(),
                go_duration(h.start_period.as_deref()),
                "Retries".into(),
                h.retries.clone().unwrap_or_else(|| "0".into()),
            ]);
            deps
        }
    };
    Step {
        deps,
        text: None,
        job: Ok(job(h)),
    }
}

/// The job form of a `HEALTHCHECK` (`NONE`, `CMD args...` or `CMD-SHELL command`).
fn job(h: Option<&HealthcheckArgs>) -> JobInstruction {
    match h {
        None => JobInstruction::Healthcheck {
            test: vec!["NONE".into()],
            interval: None,
            timeout: None,
            start_period: None,
            retries: None,
        },
        Some(h) => {
            let (cmd, prepend) = command_parts(&h.command);
            let mut test = vec![if prepend { "CMD-SHELL" } else { "CMD" }.to_string()];
            test.extend(cmd);
            JobInstruction::Healthcheck {
                test,
                interval: h.interval.clone(),
                timeout: h.timeout.clone(),
                start_period: h.start_period.clone(),
                retries: h.retries.as_deref().and_then(|r| r.parse().ok()),
            }
        }
    }
}
