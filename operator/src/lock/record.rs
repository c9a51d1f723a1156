//! The lease record stored as an annotation value, byte-compatible with lockgate.
//!
//! lockgate's `LockLeaseRecord` embeds `LockHandle` (JSON tags `uuid`, `lockName`) followed by
//! three untagged Go fields, so its JSON is, in this order:
//! `{"uuid":…,"lockName":…,"ExpireAtTimestamp":<unix s>,"SharedHoldersCount":<n>,"IsShared":<b>}`.
//! lockgate HEAD appends `QueueMembers`; Kiln keeps such unknown fields when it rewrites a
//! record (renewal, shared count) so a newer writer's data survives.
//!
//! Go's `encoding/json` escapes `<`, `>`, `&`, U+2028 and U+2029 as `\u003c`-style sequences;
//! [`LeaseRecord::to_json`] does the same, so the bytes match even for unusual lock names.

use kiln_crds::report::go_json::GoCompactFormatter;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One lease of a lock, as lockgate stores it.
///
/// Shared holders share one `uuid` and count themselves in `shared_holders_count`; an exclusive
/// lease has count 1 and `is_shared == false`.
#[derive(Debug, Clone)]
pub struct LeaseRecord {
    /// Lease identity (a UUID v4 string); the only holder identity lockgate records.
    pub uuid: String,
    /// The lock name, e.g. `myproj/stage/<digest>`.
    pub lock_name: String,
    /// Unix time in whole seconds after which the lease is expired and may be taken over.
    pub expire_at: i64,
    /// Number of holders of a shared lease (1 for an exclusive lease).
    pub shared_holders_count: i64,
    /// Whether the lease is shared (readers) or exclusive.
    pub is_shared: bool,
    /// Fields this version does not know (e.g. lockgate HEAD's `QueueMembers`), in the order
    /// found and with their exact JSON text, written back after the known fields.
    pub unknown: Vec<(String, Box<RawValue>)>,
}

impl PartialEq for LeaseRecord {
    fn eq(&self, other: &Self) -> bool {
        self.uuid == other.uuid
            && self.lock_name == other.lock_name
            && self.expire_at == other.expire_at
            && self.shared_holders_count == other.shared_holders_count
            && self.is_shared == other.is_shared
            && self.unknown.len() == other.unknown.len()
            && self
                .unknown
                .iter()
                .zip(&other.unknown)
                .all(|((ka, va), (kb, vb))| ka == kb && va.get() == vb.get())
    }
}

impl Serialize for LeaseRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(5 + self.unknown.len()))?;
        map.serialize_entry("uuid", &self.uuid)?;
        map.serialize_entry("lockName", &self.lock_name)?;
        map.serialize_entry("ExpireAtTimestamp", &self.expire_at)?;
        map.serialize_entry("SharedHoldersCount", &self.shared_holders_count)?;
        map.serialize_entry("IsShared", &self.is_shared)?;
        for (key, value) in &self.unknown {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for LeaseRecord {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RecordVisitor)
    }
}

struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = LeaseRecord;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object with lockgate lease fields")
    }

    // Mirrors Go's encoding/json: keys match field names case-insensitively, `null` leaves a
    // field at its zero value, a repeated key overwrites the earlier one.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LeaseRecord, A::Error> {
        let mut record = LeaseRecord {
            uuid: String::new(),
            lock_name: String::new(),
            expire_at: 0,
            shared_holders_count: 0,
            is_shared: false,
            unknown: Vec::new(),
        };
        while let Some(key) = map.next_key::<String>()? {
            let is = |name: &str| key.eq_ignore_ascii_case(name);
            if is("uuid") {
                record.uuid = map.next_value::<Option<String>>()?.unwrap_or_default();
            } else if is("lockName") {
                record.lock_name = map.next_value::<Option<String>>()?.unwrap_or_default();
            } else if is("ExpireAtTimestamp") {
                record.expire_at = map.next_value::<Option<i64>>()?.unwrap_or_default();
            } else if is("SharedHoldersCount") {
                record.shared_holders_count = map.next_value::<Option<i64>>()?.unwrap_or_default();
            } else if is("IsShared") {
                record.is_shared = map.next_value::<Option<bool>>()?.unwrap_or_default();
            } else {
                let value = map.next_value::<Box<RawValue>>()?;
                record.unknown.retain(|(k, _)| *k != key);
                record.unknown.push((key, value));
            }
        }
        Ok(record)
    }
}

/// Why an annotation value could not be read as a lease record.
#[derive(Debug, thiserror::Error)]
#[error("annotation value is not a lockgate lease record ({source}): {value:?}")]
pub struct RecordParseError {
    /// The annotation value as found (lockgate writes at most a few hundred bytes).
    pub value: String,
    #[source]
    pub source: serde_json::Error,
}

impl LeaseRecord {
    /// Reads an annotation value. An empty value or JSON `null` means "no lease", as in
    /// lockgate (`extractLockLeaseFromStoreValue`); missing fields take Go's zero values.
    pub fn parse(value: &str) -> Result<Option<LeaseRecord>, RecordParseError> {
        if value.is_empty() {
            return Ok(None);
        }
        serde_json::from_str::<Option<LeaseRecord>>(value).map_err(|source| RecordParseError {
            value: value.to_owned(),
            source,
        })
    }

    /// The annotation value: compact JSON with lockgate's field names and order and Go's
    /// string escaping.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(256);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, GoCompactFormatter);
        self.serialize(&mut ser).expect(
            "a lease record of strings, integers, booleans and JSON values always serializes",
        );
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> LeaseRecord {
        LeaseRecord {
            uuid: "3f2c9a56-6a1e-4c1b-9a51-2b0c8e7d4f10".into(),
            lock_name: "myproj/stage/e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe"
                .into(),
            expire_at: 1_767_225_600,
            shared_holders_count: 1,
            is_shared: false,
            unknown: Vec::new(),
        }
    }

    // The expected strings below were produced by Go 1.26's json.Marshal of a struct declared
    // like lockgate's LockLeaseRecord (embedded LockHandle with json tags + three Go fields).
    #[test]
    fn json_is_byte_identical_to_go_encoding() {
        assert_eq!(
            lease().to_json(),
            r#"{"uuid":"3f2c9a56-6a1e-4c1b-9a51-2b0c8e7d4f10","lockName":"myproj/stage/e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe","ExpireAtTimestamp":1767225600,"SharedHoldersCount":1,"IsShared":false}"#
        );
    }

    #[test]
    fn json_escapes_strings_like_go() {
        let record = LeaseRecord {
            uuid: "0d8e1c55-2f34-4b7a-8c9e-1a2b3c4d5e6f".into(),
            lock_name: "a<b>&c\u{2028}\"\\\u{1}\u{8}\u{c}\n".into(),
            expire_at: 1_767_225_610,
            shared_holders_count: 3,
            is_shared: true,
            unknown: Vec::new(),
        };
        assert_eq!(
            record.to_json(),
            r#"{"uuid":"0d8e1c55-2f34-4b7a-8c9e-1a2b3c4d5e6f","lockName":"a\u003cb\u003e\u0026c\u2028\"\\\u0001\b\f\n","ExpireAtTimestamp":1767225610,"SharedHoldersCount":3,"IsShared":true}"#
        );
        assert_eq!(LeaseRecord::parse(&record.to_json()).unwrap(), Some(record));
    }

    #[test]
    fn parse_reads_go_output() {
        let value = r#"{"uuid":"3f2c9a56-6a1e-4c1b-9a51-2b0c8e7d4f10","lockName":"myproj/stage/e1e7f09bab89a549702f688a98d79ae2fed317ac4213a352525847fe","ExpireAtTimestamp":1767225600,"SharedHoldersCount":1,"IsShared":false}"#;
        assert_eq!(LeaseRecord::parse(value).unwrap(), Some(lease()));
    }

    #[test]
    fn empty_and_null_mean_no_lease() {
        assert_eq!(LeaseRecord::parse("").unwrap(), None);
        assert_eq!(LeaseRecord::parse("null").unwrap(), None);
    }

    #[test]
    fn missing_fields_take_go_zero_values() {
        let record = LeaseRecord::parse(r#"{"uuid":"u"}"#).unwrap().unwrap();
        assert_eq!(record.uuid, "u");
        assert_eq!(record.lock_name, "");
        assert_eq!(record.expire_at, 0);
        assert_eq!(record.shared_holders_count, 0);
        assert!(!record.is_shared);
    }

    #[test]
    fn keys_match_case_insensitively_and_null_is_zero_like_go() {
        let record = LeaseRecord::parse(
            r#"{"UUID":"u","lockname":"n","expireAtTimestamp":7,"SharedHoldersCount":null,"isshared":true}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (record.uuid.as_str(), record.lock_name.as_str()),
            ("u", "n")
        );
        assert_eq!(
            (
                record.expire_at,
                record.shared_holders_count,
                record.is_shared
            ),
            (7, 0, true)
        );
        assert!(record.unknown.is_empty());
    }

    #[test]
    fn unknown_fields_such_as_queue_members_survive_a_rewrite() {
        let value = r#"{"uuid":"u1","lockName":"p/stage/d","ExpireAtTimestamp":100,"SharedHoldersCount":2,"IsShared":true,"QueueMembers":{"a1":{"AcquirerId":"a1","AcquiredAtTimestamp":90,"ExpireAtTimestamp":110}}}"#;
        let mut record = LeaseRecord::parse(value).unwrap().unwrap();
        assert_eq!(record.shared_holders_count, 2);
        record.expire_at = 113;
        assert_eq!(
            record.to_json(),
            r#"{"uuid":"u1","lockName":"p/stage/d","ExpireAtTimestamp":113,"SharedHoldersCount":2,"IsShared":true,"QueueMembers":{"a1":{"AcquirerId":"a1","AcquiredAtTimestamp":90,"ExpireAtTimestamp":110}}}"#
        );
    }

    #[test]
    fn garbage_is_a_clear_error_quoting_the_value() {
        let err = LeaseRecord::parse("not json").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not a lockgate lease record"), "{text}");
        assert!(text.contains("\"not json\""), "{text}");
        assert!(LeaseRecord::parse(r#"{"ExpireAtTimestamp":"soon"}"#).is_err());
    }
}
