//! The ImageBuild spec as users write it, its defaults, and the rules the schema
//! cannot express (config exclusivity, timeout, platforms, node selection).

use std::collections::BTreeMap;
use std::time::Duration;

use kiln_crds::duration::DurationError;
use kiln_crds::imagebuild::{
    BuildSecret, BuilderSpec, ConfigSpec, RetentionSpec, SecretKeyRef, SecretRef,
    StagedDockerfileVersion,
};
use kiln_crds::validate::{NODE_ARCH_LABEL, NODE_OS_LABEL};
use kiln_crds::{ConfigSource, ImageBuild, ImageBuildSpec, ImageBuildStatus, Phase, SpecError};

/// The example from the design document, as a user applies it.
const DESIGN_SAMPLE: &str = r#"
apiVersion: kiln.dev/v1alpha1
kind: ImageBuild
metadata: { name: shop-7f3c2a1, namespace: ci }
spec:
  source:
    git: { url: https://git.example.org/shop.git, revision: 7f3c2a1, secretRef: { name: git-auth } }
  config: { path: werf.yaml }
  repo: registry.example.org/shop
  finalRepo: registry-near-cluster.example.org/shop
  secondaryRepos: [registry.example.org/ci-cache]
  cacheRepos: [cache.local:5000/shop]
  registrySecretRef: { name: push-auth }
  images: [backend, frontend]
  platforms: [linux/amd64, linux/arm64]
  customTags: ["%image%-main", "latest"]
  parallel: true
  parallelTasksLimit: 5
  network: none
  sshKeySecretRefs: [{ name: deploy-key }]
  registryMirrors: [mirror.gcr.io]
  timeout: 1h30m
  stagedDockerfileVersion: v2
  builder:
    nodeSelector: { pool: builders }
    nativePlatforms: true
    platformNodeSelectors: { linux/arm64: { pool: arm-builders } }
    tolerations: [{ key: dedicated, operator: Equal, value: builds, effect: NoSchedule }]
    resources: { requests: { cpu: "2", memory: 4Gi } }
"#;

fn minimal_spec() -> ImageBuildSpec {
    serde_yaml_ng::from_str(
        "source: { git: { url: 'https://git.example.org/shop.git', revision: main } }\nrepo: registry.example.org/shop\n",
    )
    .unwrap()
}

#[test]
fn design_sample_parses_into_every_field() {
    let ib: ImageBuild = serde_yaml_ng::from_str(DESIGN_SAMPLE).unwrap();
    let s = &ib.spec;
    assert_eq!(ib.metadata.name.as_deref(), Some("shop-7f3c2a1"));
    assert_eq!(s.source.git.url, "https://git.example.org/shop.git");
    assert_eq!(s.source.git.revision, "7f3c2a1");
    assert_eq!(
        s.source.git.secret_ref,
        Some(SecretRef {
            name: "git-auth".into()
        })
    );
    assert_eq!(s.config_source().unwrap(), ConfigSource::Path("werf.yaml"));
    assert_eq!(
        s.final_repo.as_deref(),
        Some("registry-near-cluster.example.org/shop")
    );
    assert_eq!(s.secondary_repos, ["registry.example.org/ci-cache"]);
    assert_eq!(s.cache_repos, ["cache.local:5000/shop"]);
    assert_eq!(s.registry_secret_ref.as_ref().unwrap().name, "push-auth");
    assert_eq!(s.images, ["backend", "frontend"]);
    assert_eq!(s.platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(s.custom_tags, ["%image%-main", "latest"]);
    assert!(s.parallel);
    assert_eq!(s.parallel_tasks_limit, 5);
    assert_eq!(s.network.as_deref(), Some("none"));
    assert_eq!(s.ssh_key_secret_refs[0].name, "deploy-key");
    assert_eq!(s.registry_mirrors, ["mirror.gcr.io"]);
    assert_eq!(s.timeout().unwrap(), Some(Duration::from_secs(5400)));
    assert_eq!(s.staged_dockerfile_version, StagedDockerfileVersion::V2);
    assert!(!s.cancel);
    let b = s.builder.as_ref().unwrap();
    assert_eq!(b.tolerations[0].key.as_deref(), Some("dedicated"));
    let requests = b.resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert_eq!(requests["memory"].0, "4Gi");
    s.validate().unwrap();
}

#[test]
fn omitted_fields_take_werf_defaults() {
    let s = minimal_spec();
    assert!(s.parallel, "werf --parallel defaults to true");
    assert_eq!(
        s.parallel_tasks_limit, 5,
        "werf DefaultBuildParallelTasksLimit"
    );
    assert_eq!(s.staged_dockerfile_version, StagedDockerfileVersion::V1);
    assert!(!s.cancel);
    assert_eq!(s.timeout().unwrap(), None);
    assert_eq!(s.config_source().unwrap(), ConfigSource::Default);
    let no_revision: ImageBuildSpec =
        serde_yaml_ng::from_str("source: { git: { url: u } }\nrepo: r\n").unwrap();
    assert_eq!(no_revision.source.git.revision, "HEAD");
    s.validate().unwrap();
}

#[test]
fn rust_default_equals_the_serde_defaults() {
    let from_yaml: ImageBuildSpec =
        serde_yaml_ng::from_str("source: { git: { url: '' } }\nrepo: ''\n").unwrap();
    assert_eq!(ImageBuildSpec::default(), from_yaml);
    assert!(ImageBuildSpec::default().parallel);
    assert_eq!(ImageBuildSpec::default().source.git.revision, "HEAD");
}

#[test]
fn spec_serializes_camel_case_and_skips_unset_fields() {
    let mut s = minimal_spec();
    s.final_repo = Some("near/shop".into());
    s.ssh_key_secret_refs = vec![SecretRef { name: "k".into() }];
    let v = serde_json::to_value(&s).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "cancel",
            "finalRepo",
            "parallel",
            "parallelTasksLimit",
            "repo",
            "source",
            "sshKeySecretRefs",
            "stagedDockerfileVersion"
        ]
    );
    assert_eq!(v["stagedDockerfileVersion"], "v1");
}

#[test]
fn config_path_and_inline_are_exclusive() {
    let mut s = minimal_spec();
    s.config = Some(ConfigSpec {
        path: Some("werf.yaml".into()),
        inline: Some("project: x\nconfigVersion: 1\n".into()),
    });
    assert_eq!(s.config_source(), Err(SpecError::ConfigBothSet));

    s.config = Some(ConfigSpec::default());
    assert_eq!(s.config_source(), Err(SpecError::ConfigNeitherSet));

    s.config = Some(ConfigSpec {
        path: None,
        inline: Some("project: x\nconfigVersion: 1\n".into()),
    });
    assert_eq!(
        s.config_source(),
        Ok(ConfigSource::Inline("project: x\nconfigVersion: 1\n"))
    );

    s.config = Some(ConfigSpec {
        path: None,
        inline: Some("  \n".into()),
    });
    assert_eq!(s.config_source(), Err(SpecError::ConfigInlineEmpty));

    s.config = Some(ConfigSpec {
        path: Some("services/shop/werf.yaml".into()),
        inline: None,
    });
    assert_eq!(
        s.config_source(),
        Ok(ConfigSource::Path("services/shop/werf.yaml"))
    );
}

#[test]
fn config_path_must_stay_in_the_repository() {
    for (path, problem) in [
        ("", "empty path"),
        ("/etc/werf.yaml", "must be relative to the repository root"),
        ("../other/werf.yaml", "must not leave the repository (`..`)"),
        ("a/../../werf.yaml", "must not leave the repository (`..`)"),
        ("conf/", "names a directory, not a file"),
    ] {
        let mut s = minimal_spec();
        s.config = Some(ConfigSpec {
            path: Some(path.into()),
            inline: None,
        });
        assert_eq!(
            s.config_source(),
            Err(SpecError::ConfigPathInvalid {
                path: path.into(),
                problem
            }),
            "{path:?}"
        );
    }
}

#[test]
fn timeout_parses_go_durations_and_rejects_bad_ones() {
    let mut s = minimal_spec();
    for (text, secs) in [("30m", 1800), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400)] {
        s.timeout = Some(text.into());
        assert_eq!(
            s.timeout().unwrap(),
            Some(Duration::from_secs(secs)),
            "{text}"
        );
    }
    s.timeout = Some("0s".into());
    assert_eq!(s.timeout(), Err(SpecError::TimeoutZero("0s".into())));
    s.timeout = Some("3d".into());
    let err = s.timeout().unwrap_err();
    assert_eq!(
        err,
        SpecError::Timeout(DurationError::UnknownUnit {
            input: "3d".into(),
            unit: "d".into()
        })
    );
    assert_eq!(
        err.to_string(),
        "spec.timeout: invalid duration \"3d\": unknown unit \"d\" (use h, m, s, ms, us or ns)"
    );
}

#[test]
fn retention_ttl_follows_the_final_phase() {
    let mut s = minimal_spec();
    assert_eq!(s.retention_ttl(Phase::Succeeded), Ok(None));
    s.retention = Some(RetentionSpec {
        ttl_after_succeeded: Some("24h".into()),
        ttl_after_failed: Some("90m".into()),
    });
    assert_eq!(
        s.retention_ttl(Phase::Succeeded),
        Ok(Some(Duration::from_secs(86_400)))
    );
    assert_eq!(
        s.retention_ttl(Phase::Failed),
        Ok(Some(Duration::from_secs(5_400)))
    );
    assert_eq!(
        s.retention_ttl(Phase::Cancelled),
        Ok(Some(Duration::from_secs(5_400)))
    );
    assert_eq!(s.retention_ttl(Phase::Building), Ok(None));
    s.retention = Some(RetentionSpec {
        ttl_after_succeeded: None,
        ttl_after_failed: Some("2 days".into()),
    });
    assert_eq!(s.retention_ttl(Phase::Succeeded), Ok(None));
    let errors = s.validate().unwrap_err();
    assert!(
        errors
            .to_string()
            .contains("spec.retention.ttlAfterFailed: invalid duration \"2 days\""),
        "{errors}"
    );
}

#[test]
fn validate_reports_every_problem_at_once() {
    let mut s = minimal_spec();
    s.repo = " ".into();
    s.config = Some(ConfigSpec {
        path: Some("werf.yaml".into()),
        inline: Some("x".into()),
    });
    s.timeout = Some("soon".into());
    s.platforms = vec!["linux/amd64".into(), "arm64".into(), "Linux/ARM64".into()];
    s.ssh_key_secret_refs = vec![SecretRef { name: "ok".into() }, SecretRef::default()];
    let errors = s.validate().unwrap_err();
    assert_eq!(
        errors.0,
        vec![
            SpecError::ConfigBothSet,
            SpecError::Empty("spec.repo"),
            SpecError::EmptySecretName {
                field: "spec.sshKeySecretRefs[1]".into()
            },
            SpecError::InvalidPlatform {
                field: "spec.platforms[1]".into(),
                platform: "arm64".into()
            },
            SpecError::InvalidPlatform {
                field: "spec.platforms[2]".into(),
                platform: "Linux/ARM64".into()
            },
            SpecError::Timeout(DurationError::ExpectedNumber {
                input: "soon".into(),
                offset: 0
            }),
        ]
    );
    let msg = errors.to_string();
    assert!(
        msg.starts_with(
            "spec.config: set either path or inline, not both; spec.repo: must not be empty; "
        ),
        "{msg}"
    );
}

#[test]
fn parallel_limit_follows_werf() {
    let mut s = minimal_spec();
    assert_eq!(s.effective_parallel_limit(), Some(5));
    s.parallel_tasks_limit = 0;
    assert_eq!(
        s.effective_parallel_limit(),
        None,
        "<= 0 means unlimited in werf"
    );
    s.parallel_tasks_limit = -3;
    assert_eq!(s.effective_parallel_limit(), None);
    s.parallel_tasks_limit = 8;
    s.parallel = false;
    assert_eq!(
        s.effective_parallel_limit(),
        Some(1),
        "--parallel=false builds one at a time"
    );
}

#[test]
fn builder_node_selector_layers_spec_arch_and_platform_labels() {
    let builder = BuilderSpec {
        node_selector: BTreeMap::from([
            ("pool".into(), "builders".into()),
            (NODE_ARCH_LABEL.into(), "amd64".into()),
        ]),
        native_platforms: true,
        platform_node_selectors: BTreeMap::from([(
            "linux/arm64/v8".into(),
            BTreeMap::from([("pool".into(), "arm-builders".into())]),
        )]),
        ..BuilderSpec::default()
    };
    let arm = builder.node_selector_for("linux/arm64/v8").unwrap();
    assert_eq!(
        arm,
        BTreeMap::from([
            (NODE_ARCH_LABEL.to_owned(), "arm64".to_owned()),
            (NODE_OS_LABEL.to_owned(), "linux".to_owned()),
            ("pool".to_owned(), "arm-builders".to_owned()),
        ])
    );
    let amd = builder.node_selector_for("linux/amd64").unwrap();
    assert_eq!(amd["pool"], "builders");
    assert_eq!(amd[NODE_ARCH_LABEL], "amd64");

    // Without nativePlatforms the platform adds no arch label and any string is fine.
    let plain = BuilderSpec {
        node_selector: BTreeMap::from([("pool".into(), "b".into())]),
        ..BuilderSpec::default()
    };
    assert_eq!(
        plain.node_selector_for("linux/riscv64").unwrap(),
        plain.node_selector
    );

    assert_eq!(
        builder.node_selector_for("arm64"),
        Err(SpecError::InvalidPlatform {
            field: "builder platform".into(),
            platform: "arm64".into()
        })
    );
}

#[test]
fn status_defaults_to_pending_and_serializes_compactly() {
    let status = ImageBuildStatus::default();
    assert_eq!(status.phase, Phase::Pending);
    assert_eq!(
        serde_json::to_string(&status).unwrap(),
        r#"{"phase":"Pending"}"#
    );
    let parsed: ImageBuildStatus = serde_json::from_str("{}").unwrap();
    assert_eq!(parsed, status);
    for (phase, finished) in [
        (Phase::Pending, false),
        (Phase::Planning, false),
        (Phase::Building, false),
        (Phase::Succeeded, true),
        (Phase::Failed, true),
        (Phase::Cancelled, true),
    ] {
        assert_eq!(phase.is_finished(), finished, "{phase}");
        assert_eq!(serde_json::to_value(phase).unwrap(), phase.as_str());
    }
}

#[test]
fn build_secrets_parse_from_yaml() {
    let spec: ImageBuildSpec = serde_yaml_ng::from_str(
        r#"
source: { git: { url: 'https://git.example.org/shop.git' } }
repo: registry.example.org/shop
buildSecrets:
  - { id: aws, secretKeyRef: { name: aws-creds, key: credentials } }
  - { id: NPM_TOKEN, secretKeyRef: { name: npm, key: token } }
"#,
    )
    .unwrap();
    assert_eq!(
        spec.build_secrets,
        vec![
            BuildSecret {
                id: "aws".into(),
                secret_key_ref: SecretKeyRef {
                    name: "aws-creds".into(),
                    key: "credentials".into()
                }
            },
            BuildSecret {
                id: "NPM_TOKEN".into(),
                secret_key_ref: SecretKeyRef {
                    name: "npm".into(),
                    key: "token".into()
                }
            },
        ]
    );
    spec.validate().unwrap();
    // Left out when empty, so existing specs serialize as before.
    assert!(
        !serde_json::to_string(&minimal_spec())
            .unwrap()
            .contains("buildSecrets")
    );
}

#[test]
fn build_secrets_need_ids_names_and_keys_and_unique_ids() {
    let entry = |id: &str, name: &str, key: &str| BuildSecret {
        id: id.into(),
        secret_key_ref: SecretKeyRef {
            name: name.into(),
            key: key.into(),
        },
    };
    let mut s = minimal_spec();
    s.build_secrets = vec![
        entry("aws", "aws-creds", "credentials"),
        entry("", "x", ""),
        entry("aws", "other", "k"),
        entry("a,b", "", "k"),
        entry("token.v2_x-y", "t", "k"),
    ];
    let errors = s.validate().unwrap_err();
    assert_eq!(
        errors.0,
        vec![
            SpecError::BuildSecretEmpty {
                index: 1,
                field: "id"
            },
            SpecError::BuildSecretEmpty {
                index: 1,
                field: "secretKeyRef.key"
            },
            SpecError::BuildSecretDuplicate {
                index: 2,
                first: 0,
                id: "aws".into()
            },
            SpecError::BuildSecretIdInvalid {
                index: 3,
                id: "a,b".into()
            },
            SpecError::BuildSecretEmpty {
                index: 3,
                field: "secretKeyRef.name"
            },
        ]
    );
    let text = errors.to_string();
    assert!(
        text.contains("spec.buildSecrets[2].id \"aws\": duplicate of spec.buildSecrets[0]"),
        "{text}"
    );
    assert!(
        text.contains("spec.buildSecrets[1].secretKeyRef.key: must not be empty"),
        "{text}"
    );
}

#[test]
fn missing_build_secret_names_image_werf_secret_and_id() {
    let e = SpecError::BuildSecretMissing {
        image: "backend".into(),
        secret: "secrets[0] (env: TOKEN)".into(),
        id: "TOKEN".into(),
    };
    assert_eq!(
        e.to_string(),
        "spec.buildSecrets: image \"backend\" declares werf.yaml secret secrets[0] (env: TOKEN) but spec.buildSecrets has no entry with id \"TOKEN\""
    );
}

#[test]
fn network_and_registry_mirrors_are_refused_at_validation_with_the_field_named() {
    let mut s = minimal_spec();
    s.network = Some("bridge".into());
    s.registry_mirrors = vec!["mirror.gcr.io".into(), "ftp://mirror".into()];
    let errors = s.validate().unwrap_err();
    assert_eq!(
        errors.0,
        vec![
            SpecError::NetworkUnknown("bridge".into()),
            SpecError::RegistryMirror {
                index: 1,
                source: kiln_crds::werf::MirrorError::Invalid("ftp://mirror".into()),
            },
        ]
    );
    let message = errors.to_string();
    assert!(message.contains("spec.network \"bridge\""), "{message}");
    assert!(message.contains("spec.registryMirrors[1]"), "{message}");
    for (value, mode) in [
        (None, kiln_crds::job::NetworkMode::Default),
        (Some("default"), kiln_crds::job::NetworkMode::Default),
        (Some("none"), kiln_crds::job::NetworkMode::None),
        (Some("host"), kiln_crds::job::NetworkMode::Host),
    ] {
        s.network = value.map(str::to_owned);
        assert_eq!(s.network_mode(), Ok(mode));
    }
}
