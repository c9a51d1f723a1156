//! What `kubectl` relies on in the generated CRD: names, short name, printer columns,
//! the status subresource, a description on every field (`kubectl explain`), and the
//! admission rules for `config` and `timeout`.

use kiln_crds::duration::parse_go_duration;
use serde_json::Value;

fn crd_json() -> Value {
    serde_json::to_value(kiln_crds::crd()).unwrap()
}

fn schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Follows a printer-column JSON path such as `.status.rebuiltStages` through the schema.
fn schema_at(path: &str) -> Option<Value> {
    let mut node = schema();
    for part in path.trim_start_matches('.').split('.') {
        node = node["properties"].get(part)?.clone();
    }
    Some(node)
}

#[test]
fn names_scope_and_version() {
    let crd = crd_json();
    assert_eq!(crd["metadata"]["name"], "imagebuilds.kiln.dev");
    let spec = &crd["spec"];
    assert_eq!(spec["group"], "kiln.dev");
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["kind"], "ImageBuild");
    assert_eq!(spec["names"]["plural"], "imagebuilds");
    assert_eq!(spec["names"]["singular"], "imagebuild");
    assert_eq!(spec["names"]["shortNames"], serde_json::json!(["ib"]));
    let versions = spec["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0]["name"], "v1alpha1");
    assert_eq!(versions[0]["served"], true);
    assert_eq!(versions[0]["storage"], true);
    assert_eq!(versions[0]["subresources"]["status"], serde_json::json!({}));
}

#[test]
fn printer_columns_show_phase_images_rebuilt_age() {
    let crd = crd_json();
    let cols = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .clone();
    let default_cols: Vec<(&str, &str, &str)> = cols
        .iter()
        .filter(|c| c.get("priority").is_none())
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["type"].as_str().unwrap(),
                c["jsonPath"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        default_cols,
        [
            ("Phase", "string", ".status.phase"),
            ("Images", "integer", ".status.imageCount"),
            ("Rebuilt", "integer", ".status.rebuiltStages"),
            ("Age", "date", ".metadata.creationTimestamp"),
        ]
    );
    // Each status column points at a field of the schema with the column's type.
    for (name, ty, path) in &default_cols[..3] {
        let field = schema_at(path).unwrap_or_else(|| panic!("{name}: {path} not in schema"));
        assert_eq!(field["type"], *ty, "{name}");
    }
    // `kubectl get ib -o wide` adds the commit and the Succeeded reason.
    let wide: Vec<&str> = cols
        .iter()
        .filter(|c| c.get("priority").is_some())
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(wide, ["Commit", "Reason"]);
}

/// Walks every `properties` entry of the schema; returns the paths lacking a description.
fn undescribed(node: &Value, path: &str, missing: &mut Vec<String>) {
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            let p = format!("{path}.{name}");
            let has = prop
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.trim().is_empty());
            if !has {
                missing.push(p.clone());
            }
            undescribed(prop, &p, missing);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = node.get(key).filter(|c| c.is_object()) {
            undescribed(child, &format!("{path}[]"), missing);
        }
    }
}

#[test]
fn every_field_has_a_description_for_kubectl_explain() {
    let schema = schema();
    let mut missing = Vec::new();
    undescribed(&schema["properties"]["spec"], "spec", &mut missing);
    undescribed(&schema["properties"]["status"], "status", &mut missing);
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:#?}"
    );
    // Spot checks that the descriptions are ours and reflowed to one paragraph.
    let repo = schema_at(".spec.repo").unwrap();
    let d = repo["description"].as_str().unwrap();
    assert!(d.starts_with("The stages storage"), "{d}");
    assert!(
        !d.contains('\n'),
        "doc-comment line breaks are joined: {d:?}"
    );
    let images = schema_at(".status.report").unwrap()["properties"]["Images"].clone();
    assert!(
        images["description"]
            .as_str()
            .unwrap()
            .contains("manifest-list record")
    );
}

#[test]
fn config_has_an_exclusivity_rule_for_the_apiserver() {
    let config = schema_at(".spec.config").unwrap();
    let rules = config["x-kubernetes-validations"].as_array().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["rule"], "has(self.path) != has(self.inline)");
    assert!(
        rules[0]["message"]
            .as_str()
            .unwrap()
            .contains("exactly one of config.path and config.inline")
    );
}

#[test]
fn conditions_merge_by_type_under_server_side_apply() {
    let conditions = schema_at(".status.conditions").unwrap();
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
    let item = &conditions["items"];
    for field in [
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    ] {
        assert!(item["properties"].get(field).is_some(), "Condition.{field}");
    }
}

#[test]
fn enums_and_defaults_reach_the_schema() {
    let phase = schema_at(".status.phase").unwrap();
    assert_eq!(
        phase["enum"],
        serde_json::json!([
            "Pending",
            "Planning",
            "Building",
            "Succeeded",
            "Failed",
            "Cancelled"
        ])
    );
    let v = schema_at(".spec.stagedDockerfileVersion").unwrap();
    assert_eq!(v["enum"], serde_json::json!(["v1", "v2"]));
    assert_eq!(v["default"], "v1");
    assert_eq!(schema_at(".spec.parallel").unwrap()["default"], true);
    assert_eq!(schema_at(".spec.parallelTasksLimit").unwrap()["default"], 5);
    assert_eq!(schema_at(".spec.cancel").unwrap()["default"], false);
    // The report keeps werf's field names and no invented defaults.
    let record =
        &schema_at(".status.report").unwrap()["properties"]["Images"]["additionalProperties"];
    assert!(
        record["properties"]["DockerImageDigest"]
            .get("default")
            .is_none()
    );
    assert_eq!(record["properties"]["Stages"]["nullable"], true);
}

#[test]
fn retention_ttls_share_the_timeout_pattern() {
    let timeout = schema_at(".spec.timeout").unwrap()["pattern"].clone();
    for field in [
        ".spec.retention.ttlAfterSucceeded",
        ".spec.retention.ttlAfterFailed",
    ] {
        assert_eq!(schema_at(field).unwrap()["pattern"], timeout, "{field}");
    }
}

#[test]
fn timeout_pattern_accepts_exactly_what_the_parser_accepts() {
    let field = schema_at(".spec.timeout").unwrap();
    let pattern = regex::Regex::new(field["pattern"].as_str().unwrap()).unwrap();
    // The parser also accepts "0" and rejects zero later; the pattern accepts nonzero
    // forms and "0s". Everything else must agree.
    for s in [
        "30m", "1h30m", "1.5h", ".5s", "1.s", "250ms", "7us", "7µs", "7μs", "12ns", "0s",
        "2h45m10s",
    ] {
        assert!(pattern.is_match(s), "pattern rejects {s:?}");
        assert!(parse_go_duration(s).is_ok(), "parser rejects {s:?}");
    }
    for s in [
        "", "30", "3d", "1h 30m", "-5m", "+5m", "m", ".m", "1H", "5min", "1h30",
    ] {
        assert!(!pattern.is_match(s), "pattern accepts {s:?}");
        assert!(parse_go_duration(s).is_err(), "parser accepts {s:?}");
    }
}

#[test]
fn build_secrets_are_a_list_map_keyed_by_id_with_checked_fields() {
    let field = schema_at(".spec.buildSecrets").expect("spec.buildSecrets in the schema");
    // The apiserver refuses two entries with the same id at admission.
    assert_eq!(field["x-kubernetes-list-type"], "map");
    assert_eq!(
        field["x-kubernetes-list-map-keys"],
        serde_json::json!(["id"])
    );
    let item = &field["items"];
    let mut required: Vec<&str> = item["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort();
    assert_eq!(required, ["id", "secretKeyRef"]);
    assert_eq!(item["properties"]["id"]["pattern"], "^[A-Za-z0-9._-]+$");
    assert_eq!(item["properties"]["id"]["minLength"], 1);
    let key_ref = &item["properties"]["secretKeyRef"];
    assert_eq!(key_ref["properties"]["name"]["minLength"], 1);
    assert_eq!(key_ref["properties"]["key"]["minLength"], 1);
}

#[test]
fn config_rendering_env_values_from_are_keyed_by_name_with_one_source_each() {
    let field = schema_at(".spec.configRendering.envValuesFrom")
        .expect("spec.configRendering.envValuesFrom in the schema");
    assert_eq!(field["x-kubernetes-list-type"], "map");
    assert_eq!(
        field["x-kubernetes-list-map-keys"],
        serde_json::json!(["name"])
    );
    let item = &field["items"];
    assert_eq!(item["required"], serde_json::json!(["name"]));
    let rules = item["x-kubernetes-validations"].as_array().unwrap();
    assert_eq!(
        rules[0]["rule"],
        "has(self.secretKeyRef) != has(self.configMapKeyRef)"
    );
    for source in ["secretKeyRef", "configMapKeyRef"] {
        let r = &item["properties"][source];
        assert_eq!(r["properties"]["name"]["minLength"], 1, "{source}");
        assert_eq!(r["properties"]["key"]["minLength"], 1, "{source}");
    }
    let values = schema_at(".spec.configRendering.envValues").unwrap();
    assert_eq!(values["additionalProperties"]["type"], "string");
}
