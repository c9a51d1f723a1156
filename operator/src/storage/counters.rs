//! Request counters per registry operation, so tests can assert request budgets (a fully
//! cached image costs one tags list per repo and at most one manifest request per stage)
//! and the benchmark can print them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A kind of registry request Kiln makes. Display gives the words used in error messages
/// ("list tags in registry/repo: …").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// `GET /v2/<name>/tags/list` — one per page.
    ListTags,
    /// `GET /v2/<name>/manifests/<ref>`.
    GetManifest,
    /// `PUT /v2/<name>/manifests/<ref>`.
    PutManifest,
    /// `GET /v2/<name>/blobs/<digest>`.
    GetBlob,
    /// `HEAD /v2/<name>/blobs/<digest>`.
    CheckBlob,
    /// A blob upload (`POST` + `PUT`/`PATCH` of one upload session) — counted once.
    PushBlob,
    /// `POST /v2/<name>/blobs/uploads/?mount=…&from=…`.
    MountBlob,
    /// The token handshake Kiln asks for explicitly (before listing tags of a
    /// bearer-token registry); handshakes oci-client does internally are not counted.
    Authenticate,
}

impl Operation {
    /// Every operation, in display order.
    pub const ALL: [Operation; 8] = [
        Operation::ListTags,
        Operation::GetManifest,
        Operation::PutManifest,
        Operation::GetBlob,
        Operation::CheckBlob,
        Operation::PushBlob,
        Operation::MountBlob,
        Operation::Authenticate,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::ListTags => "list tags",
            Operation::GetManifest => "get manifest",
            Operation::PutManifest => "put manifest",
            Operation::GetBlob => "get blob",
            Operation::CheckBlob => "check blob",
            Operation::PushBlob => "push blob",
            Operation::MountBlob => "mount blob",
            Operation::Authenticate => "authenticate",
        })
    }
}

/// Live counters, shared by every clone of a registry client. Every attempt counts,
/// retries included.
#[derive(Debug, Default)]
pub struct RequestCounters {
    counts: [AtomicU64; Operation::ALL.len()],
}

impl RequestCounters {
    pub(crate) fn record(&self, op: Operation) {
        self.counts[op.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot of the counts so far.
    pub fn snapshot(&self) -> RequestCounts {
        let mut counts = [0; Operation::ALL.len()];
        for (slot, counter) in counts.iter_mut().zip(&self.counts) {
            *slot = counter.load(Ordering::Relaxed);
        }
        RequestCounts { counts }
    }
}

/// Request counts per operation at one moment; subtract two snapshots to get the
/// requests one piece of work made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestCounts {
    counts: [u64; Operation::ALL.len()],
}

impl RequestCounts {
    /// Requests of one kind.
    pub fn get(&self, op: Operation) -> u64 {
        self.counts[op.index()]
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl std::ops::Sub for RequestCounts {
    type Output = RequestCounts;

    fn sub(self, earlier: RequestCounts) -> RequestCounts {
        let mut counts = self.counts;
        for (c, e) in counts.iter_mut().zip(earlier.counts) {
            *c = c.saturating_sub(e);
        }
        RequestCounts { counts }
    }
}

impl fmt::Display for RequestCounts {
    /// `list tags=1 get manifest=50 …` with zero counts left out; `none` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for op in Operation::ALL {
            let n = self.get(op);
            if n > 0 {
                if !first {
                    f.write_str(", ")?;
                }
                write!(f, "{op}={n}")?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_snapshots_and_differences() {
        let c = RequestCounters::default();
        c.record(Operation::ListTags);
        let before = c.snapshot();
        c.record(Operation::GetManifest);
        c.record(Operation::GetManifest);
        c.record(Operation::MountBlob);
        let delta = c.snapshot() - before;
        assert_eq!(delta.get(Operation::ListTags), 0);
        assert_eq!(delta.get(Operation::GetManifest), 2);
        assert_eq!(delta.total(), 3);
        assert_eq!(delta.to_string(), "get manifest=2, mount blob=1");
        assert_eq!(RequestCounts::default().to_string(), "none");
    }
}
