//! werf.yaml parsing: typed directives, effective values and every bad-input case, each
//! checked for the error kind and its location (file, document, image, line).

use kiln_operator::config::{
    ConfigError, ConfigErrorKind, ImageKind, Platform, RelationKind, WerfConfig,
};

const META: &str = "project: shop\nconfigVersion: 1\n";

fn parse(text: &str) -> Result<WerfConfig, ConfigError> {
    WerfConfig::parse("werf.yaml", text)
}

fn err(text: &str) -> ConfigError {
    parse(text).expect_err("config should be rejected")
}

fn platforms(list: &[&str]) -> Vec<Platform> {
    list.iter().map(|p| Platform::parse(p).unwrap()).collect()
}

#[test]
fn parses_dockerfile_image_directives() {
    let text = format!(
        "{META}build:\n  cacheVersion: global\n  staged: true\n---\n\
image: backend
final: false
dockerfile: Dockerfile.prod
context: backend
contextAddFiles: [.env, secrets/token]
target: runtime
args:
  NODE_VERSION: 20
  DEBUG: true
  RATIO: 1.5
  NAME: api
addHost: db:10.0.0.2
network: none
ssh: default
staged: false
cacheVersion: v7
platform: [linux/amd64, linux/aarch64]
dependencies:
- image: base
  imports:
  - type: ImageTag
    targetBuildArg: BASE_TAG
secrets:
- id: npmrc
  src: .npmrc
- env: TOKEN
imageSpec:
  author: team
  config:
    labels: {{a: b}}
    removeLabels: [x]
    keepEssentialWerfLabels: true
---
image: base
dockerfile: base.Dockerfile
"
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.project, "shop");
    let backend = config.image("backend").unwrap();
    assert_eq!(backend.document, 2);
    assert_eq!(backend.line, Some(7));
    assert!(!backend.is_final());
    let ImageKind::Dockerfile(d) = &backend.kind else {
        panic!("backend is a Dockerfile image")
    };
    assert_eq!(d.dockerfile, "Dockerfile.prod");
    assert_eq!(d.context.as_deref(), Some("backend"));
    assert_eq!(d.context_add_files(), [".env", "secrets/token"]);
    assert_eq!(d.target.as_deref(), Some("runtime"));
    assert_eq!(d.add_hosts(), ["db:10.0.0.2"]);
    let args = d.args_as_strings().unwrap();
    assert_eq!(args["NODE_VERSION"], "20");
    assert_eq!(args["DEBUG"], "true");
    assert_eq!(args["RATIO"], "1.5");
    assert_eq!(args["NAME"], "api");
    assert_eq!(d.dependencies[0].imports[0].kind.as_str(), "ImageTag");
    assert_eq!(
        d.dependencies[0].imports[0].target_build_arg.as_deref(),
        Some("BASE_TAG")
    );
    assert_eq!(d.secrets.len(), 2);
    assert_eq!(
        backend.platforms,
        platforms(&["linux/amd64", "linux/arm64"])
    );
    // Effective values: image over build.
    assert!(!config.effective_staged(backend));
    assert_eq!(config.effective_cache_version(backend), Some("v7"));
    let base = config.image("base").unwrap();
    assert!(base.is_final());
    assert!(config.effective_staged(base));
    assert_eq!(config.effective_cache_version(base), Some("global"));
    assert_eq!(
        backend.image_references(|_| true)[0].relation,
        RelationKind::Dependency
    );
}

#[test]
fn effective_platforms_follow_cli_image_build_default() {
    let text = format!(
        "{META}build:\n  platform: [linux/arm64]\n---\nimage: a\ndockerfile: D\nplatform: [linux/arm/v7]\n---\nimage: b\ndockerfile: D\n"
    );
    let config = parse(&text).unwrap();
    let a = config.image("a").unwrap();
    let b = config.image("b").unwrap();
    let cli = platforms(&["linux/amd64", "linux/i386"]);
    assert_eq!(config.effective_platforms(a, &cli), cli);
    assert_eq!(
        config.effective_platforms(a, &[]),
        platforms(&["linux/arm/v7"])
    );
    assert_eq!(
        config.effective_platforms(b, &[]),
        platforms(&["linux/arm64"])
    );
    let plain = parse(&format!("{META}---\nimage: c\ndockerfile: D\n")).unwrap();
    let c = plain.image("c").unwrap();
    assert_eq!(
        plain.effective_platforms(c, &[]),
        vec![Platform::linux_amd64()]
    );
    assert!(!plain.effective_staged(c));
    assert_eq!(plain.effective_cache_version(c), None);
}

#[test]
fn parses_stapel_image_directives() {
    let text = format!(
        "{META}---\n\
image: app
from: alpine:3.20
fromLatest: true
fromCacheVersion: f1
disableGitAfterPatch: true
git:
- add: /src
  to: /app
  includePaths: ['**/*.go']
  excludePaths: vendor
  owner: app
  stageDependencies:
    install: go.mod
    setup: ['**/*']
- url: https://example.org/lib.git
  branch: main
  add: /
  to: /lib
shell:
  beforeInstall: apk add git
  install: [go mod download]
  setupCacheVersion: s2
import:
- image: assets
  add: /dist
  to: /app/public
  after: setup
mount:
- from: tmp_dir
  to: /var/cache
docker:
  WORKDIR: /app
  EXPOSE: ['8080']
  ENV: {{MODE: prod}}
  CMD: [/app/server]
dependencies:
- image: assets
  after: install
  imports:
  - type: ImageName
    targetEnv: ASSETS_IMAGE
---
image: assets
from: node:20
ansible:
  install:
  - name: build
    shell: npm run build
---
artifact: legacy
from: alpine
"
    );
    let config = parse(&text).unwrap();
    let app = config.image("app").unwrap();
    let ImageKind::Stapel(s) = &app.kind else {
        panic!("app is a Stapel image")
    };
    assert_eq!(s.from.as_deref(), Some("alpine:3.20"));
    assert_eq!(s.from_latest, Some(true));
    assert_eq!(s.git.len(), 2);
    assert_eq!(s.git[0].exclude_paths.as_ref().unwrap().0, ["vendor"]);
    assert_eq!(
        s.git[0]
            .stage_dependencies
            .as_ref()
            .unwrap()
            .install
            .as_ref()
            .unwrap()
            .0,
        ["go.mod"]
    );
    assert_eq!(
        s.shell.as_ref().unwrap().install.as_ref().unwrap().0,
        ["go mod download"]
    );
    assert_eq!(s.import[0].image.as_deref(), Some("assets"));
    assert_eq!(s.mount[0].to, "/var/cache");
    assert_eq!(s.docker.as_ref().unwrap().workdir.as_deref(), Some("/app"));
    let refs: Vec<_> = app
        .image_references(|n| config.image(n).is_some())
        .into_iter()
        .map(|r| (r.directive, r.image))
        .collect();
    assert_eq!(
        refs,
        vec![
            ("dependencies[0].image".to_string(), "assets".to_string()),
            ("import[0].image".to_string(), "assets".to_string()),
        ]
    );
    let legacy = config.image("legacy").unwrap();
    assert!(!legacy.is_final());
    assert!(config.effective_staged(legacy));
}

#[test]
fn image_lists_and_nameless_images() {
    let config = parse(&format!("{META}---\nimage: [a, b]\ndockerfile: D\n")).unwrap();
    let names: Vec<_> = config.images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let nameless = parse(&format!("{META}---\nimage: ~\ndockerfile: D\n")).unwrap();
    assert_eq!(nameless.images[0].name, "");
    let e = err(&format!(
        "{META}---\nimage: ~\ndockerfile: D\n---\nimage: b\ndockerfile: D\n"
    ));
    assert_eq!(*e.kind, ConfigErrorKind::NamelessAmongOthers);
    assert_eq!(e.document, Some(2));
}

#[test]
fn from_naming_a_werf_image_is_a_relation_but_external_is_not() {
    let config = parse(&format!(
        "{META}---\nimage: base\nfrom: alpine\n---\nimage: app\nfrom: base\n"
    ))
    .unwrap();
    let refs = config
        .image("app")
        .unwrap()
        .image_references(|n| n == "base");
    assert_eq!(refs[0].relation, RelationKind::From);
    assert!(
        config
            .image("base")
            .unwrap()
            .image_references(|n| n == "base")
            .is_empty()
    );
}

#[test]
fn yaml_syntax_error_names_the_line() {
    let e = err(&format!(
        "{META}---\nimage: a\ndockerfile: D\nargs:\n  A: [1, 2\n"
    ));
    assert!(matches!(*e.kind, ConfigErrorKind::Syntax(_)), "{e}");
    assert_eq!(e.document, Some(2));
    assert!(e.line.is_some_and(|l| (7..=8).contains(&l)), "{e}");
    assert!(
        e.to_string().starts_with("werf.yaml, document 2, line"),
        "{e}"
    );
}

#[test]
fn yaml_syntax_error_in_a_middle_document() {
    let e = err(&format!(
        "{META}---\nimage: a\n  dockerfile: D\n---\nimage: b\ndockerfile: D\n"
    ));
    assert!(matches!(*e.kind, ConfigErrorKind::Syntax(_)), "{e}");
    assert_eq!((e.document, e.line), (Some(2), Some(5)), "{e}");
}

#[test]
fn unknown_directive_names_key_document_image_and_line() {
    let e = err(&format!(
        "{META}---\nimage: api\ndockerfile: D\ntarget: x\ncontxt: sub\n"
    ));
    let ConfigErrorKind::UnknownDirective { key, expected } = &*e.kind else {
        panic!("unexpected {e}")
    };
    assert_eq!(key, "contxt");
    assert!(expected.contains("`context`"), "{expected}");
    assert_eq!(e.document, Some(2));
    assert_eq!(e.image.as_deref(), Some("api"));
    assert_eq!(e.line, Some(7));
    assert!(
        e.to_string().starts_with(
            "werf.yaml, document 2, image \"api\", line 7: unknown directive `contxt`"
        ),
        "{e}"
    );
}

#[test]
fn unknown_nested_directive_has_its_path() {
    let e = err(&format!(
        "{META}---\nimage: api\ndockerfile: D\ndependencies:\n- image: api2\n  bogus: 1\n---\nimage: api2\ndockerfile: D\n"
    ));
    assert!(
        matches!(&*e.kind, ConfigErrorKind::UnknownDirective { key, .. } if key == "dependencies[0].bogus"),
        "{e}"
    );
    assert_eq!(e.line, Some(8));
    let meta = err("project: shop\nconfigVersion: 1\nbuild:\n  cachVersion: x\n");
    assert!(
        matches!(&*meta.kind, ConfigErrorKind::UnknownDirective { key, .. } if key == "build.cachVersion"),
        "{meta}"
    );
    assert_eq!(meta.document, Some(1));
    assert_eq!(meta.line, Some(4));
    // A Stapel directive in a Dockerfile image is unknown there.
    let stapel_in_dockerfile = err(&format!(
        "{META}---\nimage: api\ndockerfile: D\nshell:\n  install: make\n"
    ));
    assert!(
        matches!(&*stapel_in_dockerfile.kind, ConfigErrorKind::UnknownDirective { key, .. } if key == "shell")
    );
}

#[test]
fn misspelled_dockerfile_key_is_reported_as_unknown_first() {
    // Regression: `dockerFile:` used to be reported as "image has neither `dockerfile` nor
    // `from`", hiding the typo.
    let e = err(&format!(
        "{META}---\nimage: api\ncontext: api\ndockerFile: Dockerfile\n"
    ));
    assert!(
        matches!(&*e.kind, ConfigErrorKind::UnknownDirective { key, .. } if key == "dockerFile"),
        "{e}"
    );
    assert_eq!((e.document, e.line), (Some(2), Some(6)));
    assert_eq!(e.image.as_deref(), Some("api"));
    // A Stapel key is known, so the image still lacks its base.
    let stapel_only = err(&format!("{META}---\nimage: api\nshell:\n  install: make\n"));
    assert_eq!(*stapel_only.kind, ConfigErrorKind::NoDockerfileNorFrom);
}

#[test]
fn image_with_neither_dockerfile_nor_from() {
    let e = err(&format!("{META}---\nimage: api\ncontext: api\n"));
    assert_eq!(*e.kind, ConfigErrorKind::NoDockerfileNorFrom);
    assert_eq!((e.document, e.line), (Some(2), Some(4)));
    assert_eq!(e.image.as_deref(), Some("api"));
}

#[test]
fn image_with_both_dockerfile_and_from() {
    let e = err(&format!(
        "{META}---\nimage: api\ndockerfile: D\nfromImage: base\n"
    ));
    assert_eq!(
        *e.kind,
        ConfigErrorKind::BothDockerfileAndFrom("fromImage".into())
    );
    assert_eq!(e.line, Some(6));
}

#[test]
fn duplicate_image_names() {
    let e = err(&format!(
        "{META}---\nimage: api\ndockerfile: D\n---\nimage: web\ndockerfile: D\n---\nimage: api\nfrom: alpine\n"
    ));
    assert_eq!(
        *e.kind,
        ConfigErrorKind::DuplicateImage {
            name: "api".into(),
            first_document: 2
        }
    );
    assert_eq!((e.document, e.line), (Some(4), Some(10)));
    let in_list = err(&format!("{META}---\nimage: [a, a]\ndockerfile: D\n"));
    assert!(matches!(
        *in_list.kind,
        ConfigErrorKind::DuplicateImage { .. }
    ));
}

#[test]
fn config_version_must_be_one() {
    let e = err("project: shop\nconfigVersion: 2\n---\nimage: a\ndockerfile: D\n");
    assert_eq!(*e.kind, ConfigErrorKind::ConfigVersion("2".into()));
    assert_eq!((e.document, e.line), (Some(1), Some(2)));
    let missing = err("project: shop\n---\nimage: a\ndockerfile: D\n");
    assert_eq!(
        *missing.kind,
        ConfigErrorKind::ConfigVersion("nothing".into())
    );
    let string = err("project: shop\nconfigVersion: '1'\n");
    assert_eq!(*string.kind, ConfigErrorKind::ConfigVersion("'1'".into()));
}

#[test]
fn project_is_required_and_validated() {
    let e = err("configVersion: 1\n---\nimage: a\ndockerfile: D\n");
    assert_eq!(*e.kind, ConfigErrorKind::MissingProject);
    assert_eq!(e.document, Some(1));
    let no_meta = err("image: a\ndockerfile: D\n");
    assert!(matches!(*no_meta.kind, ConfigErrorKind::ConfigVersion(_)));
    let bad = err("project: My_Shop\nconfigVersion: 1\n");
    assert_eq!(*bad.kind, ConfigErrorKind::InvalidProject("My_Shop".into()));
    assert_eq!(bad.line, Some(1));
    let duplicate = err("project: a\nconfigVersion: 1\n---\nproject: b\nconfigVersion: 1\n");
    assert_eq!(*duplicate.kind, ConfigErrorKind::DuplicateMeta { first: 1 });
    assert_eq!(duplicate.line, Some(4));
}

#[test]
fn invalid_platforms_name_the_value() {
    let e = err(&format!(
        "{META}---\nimage: a\ndockerfile: D\nplatform:\n- linux/amd64\n- linux/amd65\n"
    ));
    assert_eq!(
        *e.kind,
        ConfigErrorKind::InvalidPlatform {
            directive: "platform".into(),
            value: "linux/amd65".into(),
            reason: "unknown architecture \"amd65\"".into()
        }
    );
    assert_eq!((e.image.as_deref(), e.line), (Some("a"), Some(8)));
    let build = err("project: shop\nconfigVersion: 1\nbuild:\n  platform: [windows]\n");
    assert!(
        matches!(&*build.kind, ConfigErrorKind::InvalidPlatform { directive, .. } if directive == "build.platform")
    );
    assert_eq!(build.line, Some(4));
}

#[test]
fn dependency_cycle_names_the_cycle() {
    let e = err(&format!(
        "{META}---\nimage: a\nfromImage: b\n---\nimage: b\nfrom: alpine\ndependencies:\n- image: a\n  after: setup\n"
    ));
    assert_eq!(
        *e.kind,
        ConfigErrorKind::DependencyCycle(vec!["a".into(), "b".into(), "a".into()])
    );
    assert!(
        e.to_string().ends_with("dependency cycle: a → b → a"),
        "{e}"
    );
    assert_eq!((e.document, e.line), (Some(2), Some(4)));
}

#[test]
fn dependency_on_unknown_image() {
    let e = err(&format!(
        "{META}---\nimage: a\ndockerfile: D\ndependencies:\n- image: ghost\n"
    ));
    assert_eq!(
        *e.kind,
        ConfigErrorKind::UnknownImage {
            directive: "dependencies[0].image".into(),
            name: "ghost".into()
        }
    );
    assert_eq!((e.document, e.line), (Some(2), Some(7)));
    let from_image = err(&format!("{META}---\nimage: a\nfromImage: ghost\n"));
    assert!(
        matches!(&*from_image.kind, ConfigErrorKind::UnknownImage { directive, .. } if directive == "fromImage")
    );
    assert_eq!(from_image.line, Some(5));
}

#[test]
fn malformed_documents() {
    let e = err(&format!("{META}---\n- just\n- a list\n"));
    assert_eq!(*e.kind, ConfigErrorKind::NotAMapping);
    assert_eq!((e.document, e.line), (Some(2), Some(4)));
    let e = err(&format!("{META}---\nname: a\n"));
    assert_eq!(*e.kind, ConfigErrorKind::UnrecognizedDocument);
    assert_eq!(e.document, Some(2));
    // Empty documents are skipped.
    assert!(parse(&format!("{META}---\n---\nimage: a\ndockerfile: D\n")).is_ok());
}

#[test]
fn wrong_types_are_invalid_values() {
    let e = err(&format!(
        "{META}---\nimage: a\ndockerfile: D\nstaged: maybe\n"
    ));
    assert!(
        matches!(&*e.kind, ConfigErrorKind::InvalidValue(m) if m.contains("staged")),
        "{e}"
    );
    assert_eq!(e.line, Some(6));
}

#[test]
fn dependency_rules_per_image_kind() {
    // Dockerfile images reject before/after.
    let e = err(&format!(
        "{META}---\nimage: a\ndockerfile: D\ndependencies:\n- image: b\n  before: install\n---\nimage: b\ndockerfile: D\n"
    ));
    assert!(
        matches!(&*e.kind, ConfigErrorKind::InvalidValue(m) if m.contains("Stapel-only")),
        "{e}"
    );
    // Stapel images need before or after.
    let e = err(&format!(
        "{META}---\nimage: a\nfrom: alpine\ndependencies:\n- image: b\n---\nimage: b\ndockerfile: D\n"
    ));
    assert!(
        matches!(&*e.kind, ConfigErrorKind::InvalidValue(m) if m.contains("exactly one of `before`")),
        "{e}"
    );
    // Unknown import type.
    let e = err(&format!(
        "{META}---\nimage: a\ndockerfile: D\ndependencies:\n- image: b\n  imports:\n  - type: ImageSize\n    targetBuildArg: X\n---\nimage: b\ndockerfile: D\n"
    ));
    assert!(
        matches!(&*e.kind, ConfigErrorKind::InvalidValue(m) if m.contains("ImageSize") && m.contains("imports[0].type")),
        "{e}"
    );
    // Dockerfile imports need targetBuildArg.
    let e = err(&format!(
        "{META}---\nimage: a\ndockerfile: D\ndependencies:\n- image: b\n  imports:\n  - type: ImageName\n    targetEnv: X\n---\nimage: b\ndockerfile: D\n"
    ));
    assert!(
        matches!(&*e.kind, ConfigErrorKind::InvalidValue(m) if m.contains("targetBuildArg")),
        "{e}"
    );
}

#[test]
fn secrets_need_exactly_one_source() {
    let e = err(&format!(
        "{META}---\nimage: a\ndockerfile: D\nsecrets:\n- id: x\n  env: A\n  src: f\n"
    ));
    assert!(
        matches!(&*e.kind, ConfigErrorKind::InvalidValue(m) if m.contains("secrets[0]")),
        "{e}"
    );
    let e = err(&format!(
        "{META}---\nimage: a\ndockerfile: D\nsecrets:\n- value: s3cr3t\n"
    ));
    assert!(
        matches!(&*e.kind, ConfigErrorKind::InvalidValue(m) if m.contains("needs an `id`")),
        "{e}"
    );
}

#[test]
fn non_scalar_build_arg_is_rejected() {
    let e = err(&format!(
        "{META}---\nimage: a\ndockerfile: D\nargs:\n  LIST: [1, 2]\n"
    ));
    assert!(
        matches!(&*e.kind, ConfigErrorKind::InvalidValue(m) if m.contains("args.LIST")),
        "{e}"
    );
}
