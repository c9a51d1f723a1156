//! The termination message: the [`BuildResult`] as compact JSON of at most
//! [`TERMINATION_MESSAGE_LIMIT`] bytes (what Kubernetes keeps of a pod's termination
//! message).

use kiln_crds::job::{BuildResult, TERMINATION_MESSAGE_LIMIT};

/// A failure's log tail is first cut down to this many bytes before per-stage details are
/// dropped: a user needs the end of the log more than image sizes the registry also has.
const LOG_TAIL_FLOOR: usize = 1024;

/// Renders `result` as JSON no longer than `limit` bytes, degrading in this order until it
/// fits (each step keeps the JSON structure valid):
/// 1. the full result;
/// 2. the failure's log tail shortened from the front, down to [`LOG_TAIL_FLOOR`] bytes;
/// 3. per-stage image ID, size and build seconds dropped (`truncated: true`);
/// 4. per-stage manifest digests dropped;
/// 5. the log tail shortened further, down to nothing;
/// 6. the failure message cut to 200 characters;
/// 7. the earliest stages dropped (tags of later stages matter most to a retry).
pub fn termination_message(result: &BuildResult, limit: usize) -> String {
    let mut result = result.clone();
    let render = |r: &BuildResult| serde_json::to_string(r).expect("a BuildResult serializes");
    let mut text = render(&result);
    if text.len() <= limit {
        return text;
    }
    shorten_tail(&mut result, limit, LOG_TAIL_FLOOR);
    text = render(&result);
    if text.len() <= limit {
        return text;
    }
    result.truncated = true;
    for stage in &mut result.stages {
        stage.image_id = None;
        stage.size = None;
        stage.build_seconds = None;
    }
    text = render(&result);
    if text.len() <= limit {
        return text;
    }
    for stage in &mut result.stages {
        stage.manifest_digest = None;
    }
    shorten_tail(&mut result, limit, 0);
    text = render(&result);
    if text.len() <= limit {
        return text;
    }
    if let Some(failure) = &mut result.failure {
        failure.message = failure.message.chars().take(200).collect();
        failure.instruction = failure.instruction.chars().take(200).collect();
    }
    text = render(&result);
    while text.len() > limit && !result.stages.is_empty() {
        result.stages.remove(0);
        text = render(&result);
    }
    text
}

/// Cuts the failure's log tail from the front (at a character boundary, then at the next
/// line start when that is near) to the longest suffix with which the whole result fits
/// `limit`, but not below `floor` bytes.
fn shorten_tail(result: &mut BuildResult, limit: usize, floor: usize) {
    let fits = |r: &BuildResult| {
        serde_json::to_string(r)
            .map(|t| t.len() <= limit)
            .unwrap_or(false)
    };
    if fits(result) {
        return;
    }
    let Some(tail) = result.failure.as_ref().map(|f| f.log_tail.clone()) else {
        return;
    };
    if tail.len() <= floor {
        return;
    }
    let suffix = |keep: usize| {
        let mut start = tail.len() - keep;
        while !tail.is_char_boundary(start) {
            start += 1;
        }
        &tail[start..]
    };
    let with_tail = |r: &mut BuildResult, t: &str| {
        if let Some(f) = r.failure.as_mut() {
            f.log_tail = t.to_owned();
        }
    };
    // Binary search the longest kept length in [floor, len) that fits; JSON escaping makes
    // the rendered size grow unevenly with it, so arithmetic on the excess is not enough.
    let (mut lo, mut hi) = (floor, tail.len());
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        with_tail(result, suffix(mid));
        if fits(result) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let mut kept = suffix(lo);
    // Prefer starting at a full line when that costs less than a short line.
    if let Some(nl) = kept.find('\n')
        && nl < 120
        && kept.len() - (nl + 1) >= floor
    {
        kept = &kept[nl + 1..];
    }
    with_tail(result, kept);
}

/// [`termination_message`] with Kubernetes' limit.
pub fn default_termination_message(result: &BuildResult) -> String {
    termination_message(result, TERMINATION_MESSAGE_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_crds::job::{StageFailure, StageResult};

    const D: &str = "e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe";

    fn stage(i: u64) -> StageResult {
        StageResult {
            tag: format!("{D}-{}", 1_700_000_000_000 + i),
            image_id: Some(format!("sha256:{}", "a".repeat(64))),
            manifest_digest: Some(format!("sha256:{}", "b".repeat(64))),
            size: Some(1_234_567),
            build_seconds: Some(1.25),
        }
    }

    fn failed(stages: usize, tail: String) -> BuildResult {
        BuildResult {
            ok: false,
            stages: (0..stages as u64).map(stage).collect(),
            failure: Some(StageFailure {
                stage_index: stages + 1,
                stage: "run".into(),
                digest: D.into(),
                instruction: "RUN make".into(),
                exit_code: Some(2),
                message: "buildah run exited with exit status 2".into(),
                log_tail: tail,
            }),
            truncated: false,
        }
    }

    fn numbered_lines(n: usize) -> String {
        (0..n)
            .map(|i| format!("line {i:05} \"quoted\" output"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn small_result_is_unchanged() {
        let result = failed(2, "oops".into());
        let text = termination_message(&result, 4096);
        let back: BuildResult = serde_json::from_str(&text).unwrap();
        assert_eq!(back, result);
    }

    #[test]
    fn long_log_tail_is_cut_from_the_front_and_everything_else_kept() {
        let result = failed(3, numbered_lines(500));
        let text = termination_message(&result, 4096);
        assert!(text.len() <= 4096, "{}", text.len());
        let back: BuildResult = serde_json::from_str(&text).unwrap();
        let failure = back.failure.unwrap();
        // The last line survives, the first does not, and the tail starts at a line start.
        assert!(failure.log_tail.ends_with("line 00499 \"quoted\" output"));
        assert!(!failure.log_tail.contains("line 00000 "));
        assert!(
            failure.log_tail.starts_with("line "),
            "{}",
            &failure.log_tail[..40]
        );
        assert_eq!(failure.exit_code, Some(2));
        assert_eq!(failure.instruction, "RUN make");
        assert_eq!(
            back.stages, result.stages,
            "stage details kept while the tail can shrink"
        );
        assert!(!back.truncated);
        // It uses the room: within one line's length of the limit.
        assert!(text.len() > 4096 - 40, "{}", text.len());
    }

    #[test]
    fn many_stages_drop_details_before_tags() {
        let result = BuildResult {
            ok: true,
            stages: (0..30).map(stage).collect(),
            failure: None,
            truncated: false,
        };
        let text = termination_message(&result, 4096);
        assert!(text.len() <= 4096);
        let back: BuildResult = serde_json::from_str(&text).unwrap();
        assert!(back.truncated);
        assert_eq!(back.stages.len(), 30);
        for (got, want) in back.stages.iter().zip(&result.stages) {
            assert_eq!(got.tag, want.tag);
            assert_eq!(got.image_id, None);
        }
    }

    #[test]
    fn too_many_stages_keep_the_latest_ones() {
        let result = BuildResult {
            ok: true,
            stages: (0..100).map(stage).collect(),
            failure: None,
            truncated: false,
        };
        let text = termination_message(&result, 4096);
        assert!(text.len() <= 4096);
        let back: BuildResult = serde_json::from_str(&text).unwrap();
        assert!(back.stages.len() > 40 && back.stages.len() < 100);
        assert_eq!(back.stages.last().unwrap().tag, result.stages[99].tag);
    }

    #[test]
    fn multibyte_tail_is_cut_on_a_char_boundary() {
        let result = failed(0, "ж".repeat(5000));
        let text = termination_message(&result, 4096);
        assert!(text.len() <= 4096);
        let back: BuildResult = serde_json::from_str(&text).unwrap();
        assert!(back.failure.unwrap().log_tail.chars().all(|c| c == 'ж'));
    }
}
