//! werf.yaml as werf users write it: Go templates with `.werf` partials, a loop over the
//! services of a monorepo, `.Files.Get` of shared snippets, `env` with and without
//! defaults under werf's giterminism rules, `required`, `.Env` and `.Commit`. The expected
//! rendered YAML is written by hand from Go `text/template` and werf semantics; the stage
//! digests of a templated project must be those of the same project with the rendered
//! werf.yaml committed as plain YAML.

mod plan_support;

use std::collections::BTreeMap;

use kiln_operator::config::ConfigErrorKind;
use kiln_operator::config::render::{EnvValues, RenderContext};
use kiln_operator::config::template::Phase;
use kiln_operator::plan::project::{
    PlanRequest, ProjectPlan, ProjectPlanError, plan_project, render_config,
};
use kiln_operator::source::GitTree;
use plan_support::TestRepo;

const GITERMINISM: &str = "\
giterminismConfigVersion: 1
config:
  goTemplateRendering:
    allowEnvVariables:
      - REGISTRY_MIRROR
      - /CI_[A-Z_]+/
";

const PARTIALS: &str = r#"{{- define "dockerfile-image" }}
image: {{ .name }}
dockerfile: Dockerfile
context: services/{{ .name }}
args:
  BASE_IMAGE: {{ .base }}
  SERVICE: {{ .name | quote }}
{{- with .platform }}
platform:
  - {{ . }}
{{- end }}
{{- end }}
"#;

const VERSIONS: &str = "\
base: alpine:3.20
services:
  - api
  - worker
";

const TOOLS_SNIPPET: &str = "\
image: tools
dockerfile: tools.Dockerfile
args:
  BASE_IMAGE: {{ .Base }}
";

const MONOREPO_WERF_YAML: &str = r#"{{- $versions := .Files.Get "shared/versions.yaml" | fromYaml }}
{{- $_ := set . "Base" (env "CI_BASE_IMAGE" $versions.base) }}
project: {{ env "CI_PROJECT_NAME" }}
configVersion: 1
build:
  cacheVersion: {{ env "REGISTRY_MIRROR" "none" | quote }}
{{- range $name := $versions.services }}
---
{{ include "dockerfile-image" (dict "name" $name "base" $.Base "platform" (ternary "linux/arm64" "" (eq $name "worker"))) }}
{{- end }}
---
{{ tpl (.Files.Get "shared/tools.yaml") . -}}
"#;

/// What werf renders for [`MONOREPO_WERF_YAML`] with `CI_PROJECT_NAME=shop`,
/// `REGISTRY_MIRROR=""` and `CI_BASE_IMAGE` unset.
const MONOREPO_RENDERED: &str = r#"
project: shop
configVersion: 1
build:
  cacheVersion: "none"
---

image: api
dockerfile: Dockerfile
context: services/api
args:
  BASE_IMAGE: alpine:3.20
  SERVICE: "api"
---

image: worker
dockerfile: Dockerfile
context: services/worker
args:
  BASE_IMAGE: alpine:3.20
  SERVICE: "worker"
platform:
  - linux/arm64
---
image: tools
dockerfile: tools.Dockerfile
args:
  BASE_IMAGE: alpine:3.20
"#;

const SERVICE_DOCKERFILE: &str = "\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG SERVICE
COPY . /srv/
RUN echo $SERVICE > /service
";

fn project_files(werf_yaml: &str) -> Vec<(String, String)> {
    [
        ("werf.yaml", werf_yaml),
        ("werf-giterminism.yaml", GITERMINISM),
        (".werf/images.tmpl", PARTIALS),
        ("shared/versions.yaml", VERSIONS),
        ("shared/tools.yaml", TOOLS_SNIPPET),
        ("services/api/Dockerfile", SERVICE_DOCKERFILE),
        ("services/api/main.go", "package main\n"),
        ("services/worker/Dockerfile", SERVICE_DOCKERFILE),
        ("services/worker/worker.py", "print('work')\n"),
        (
            "tools.Dockerfile",
            "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN apk add git\n",
        ),
    ]
    .into_iter()
    .map(|(p, c)| (p.to_string(), c.to_string()))
    .collect()
}

fn env(pairs: &[(&str, &str)]) -> RenderContext {
    RenderContext {
        env: EnvValues::Map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..RenderContext::default()
    }
}

fn ci_env() -> RenderContext {
    env(&[("CI_PROJECT_NAME", "shop"), ("REGISTRY_MIRROR", "")])
}

fn committed(files: &[(String, String)]) -> TestRepo {
    let repo = TestRepo::new();
    repo.commit(files);
    repo
}

fn render(files: &[(String, String)], context: RenderContext) -> Result<String, ProjectPlanError> {
    let repo = committed(files);
    let tree = GitTree::open(repo.path(), None).unwrap();
    let request = PlanRequest {
        render: context,
        ..PlanRequest::default()
    };
    render_config(&tree, &request).map(|(_, text)| text)
}

fn plan(
    files: &[(String, String)],
    context: RenderContext,
) -> Result<ProjectPlan, ProjectPlanError> {
    let repo = committed(files);
    let tree = GitTree::open(repo.path(), None).unwrap();
    let request = PlanRequest {
        render: context,
        ..PlanRequest::default()
    };
    plan_project(&tree, &request)
}

fn digests(plan: &ProjectPlan) -> Vec<(String, String, String, Option<String>)> {
    plan.images
        .iter()
        .flat_map(|i| {
            i.stages.iter().map(move |s| {
                (
                    i.name.clone(),
                    i.platform.to_string(),
                    s.name.clone(),
                    s.digest.clone(),
                )
            })
        })
        .collect()
}

fn template_error(
    err: ProjectPlanError,
) -> (
    kiln_operator::config::template::TemplateError,
    Option<usize>,
) {
    let ProjectPlanError::Config(config) = err else {
        panic!("expected a config error, got {err}");
    };
    let line = config.line;
    match *config.kind {
        ConfigErrorKind::Template(t) => (t, line),
        other => panic!("expected a template error, got {other}"),
    }
}

#[test]
fn monorepo_renders_as_werf_does() {
    let rendered = render(&project_files(MONOREPO_WERF_YAML), ci_env()).unwrap();
    assert_eq!(rendered, MONOREPO_RENDERED);
}

#[test]
fn templated_project_has_the_stage_digests_of_its_plain_equivalent() {
    let templated = plan(&project_files(MONOREPO_WERF_YAML), ci_env()).unwrap();
    // The plain project: the rendered text committed as werf.yaml, no templates at all.
    let plain = plan(&project_files(MONOREPO_RENDERED), RenderContext::default()).unwrap();
    assert_eq!(templated.project, "shop");
    let names: Vec<&str> = templated.images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["api", "worker", "tools"]);
    assert_eq!(templated.images[1].platform.to_string(), "linux/arm64");
    assert_eq!(digests(&templated), digests(&plain));
    assert!(digests(&templated).iter().all(|d| d.3.is_some()));
    // A different value from the environment is a different build.
    let other_base = plan(
        &project_files(MONOREPO_WERF_YAML),
        env(&[
            ("CI_PROJECT_NAME", "shop"),
            ("CI_BASE_IMAGE", "alpine:3.21"),
        ]),
    )
    .unwrap();
    assert_ne!(digests(&other_base)[0].3, digests(&templated)[0].3);
}

#[test]
fn env_uses_set_values_then_defaults() {
    let files = project_files(
        "{{ env \"CI_A\" \"d\" }}|{{ env \"CI_B\" \"d\" }}|{{ env \"CI_C\" \"d\" }}|{{ env \"CI_A\" }}",
    );
    let rendered = render(&files, env(&[("CI_A", "set"), ("CI_B", "")])).unwrap();
    // Set → its value; empty → the default; unset → the default.
    assert_eq!(rendered, "set|d|d|set");
}

#[test]
fn env_without_default_must_be_set_under_giterminism() {
    let files = project_files("project: {{ env \"CI_PROJECT_NAME\" }}\n");
    let (err, line) = template_error(render(&files, env(&[])).unwrap_err());
    assert_eq!(err.function.as_deref(), Some("env"));
    assert_eq!(
        (err.template.as_str(), err.line, err.column),
        ("werfConfig", 1, 13)
    );
    assert_eq!(line, Some(1));
    assert_eq!(
        err.message,
        "the environment variable \"CI_PROJECT_NAME\" must be set or default must be provided"
    );
    // werf --loose-giterminism: an unset variable renders empty.
    let loose = RenderContext {
        loose_giterminism: true,
        ..env(&[])
    };
    assert_eq!(render(&files, loose).unwrap(), "project: \n");
}

#[test]
fn env_not_in_the_allow_list_is_an_error_naming_it_even_with_a_default() {
    let files = project_files("a: b\n{{ env \"SECRET_TOKEN\" \"x\" }}\n");
    let (err, _) = template_error(render(&files, env(&[("SECRET_TOKEN", "t")])).unwrap_err());
    assert_eq!((err.line, err.column), (2, 4));
    assert!(
        err.message.contains("env name 'SECRET_TOKEN' not allowed"),
        "{err}"
    );
    // Without a giterminism file nothing is allowed.
    let mut bare = project_files("{{ env \"CI_PROJECT_NAME\" \"x\" }}");
    bare.retain(|(p, _)| p != "werf-giterminism.yaml");
    let (err, _) = template_error(render(&bare, env(&[])).unwrap_err());
    assert!(
        err.message
            .contains("env name 'CI_PROJECT_NAME' not allowed"),
        "{err}"
    );
    // The regex entry is anchored: CI_X matches /CI_[A-Z_]+/, xCI_X does not.
    let files = project_files("{{ env \"xCI_X\" \"d\" }}");
    assert!(render(&files, env(&[])).is_err());
}

#[test]
fn required_fails_with_its_message_at_its_line() {
    let files = project_files(
        "project: shop\nconfigVersion: 1\n---\nimage: api\nfrom: {{ required \"set CI_BASE_IMAGE to the base image\" (env \"CI_BASE_IMAGE\" \"\") }}\n",
    );
    let err = plan(&files, env(&[])).unwrap_err();
    let text = err.to_string();
    let (t, line) = template_error(err);
    assert_eq!(t.phase, Phase::Execute);
    assert_eq!(t.function.as_deref(), Some("required"));
    assert_eq!(
        (t.template.as_str(), t.line, t.column),
        ("werfConfig", 5, 10)
    );
    assert_eq!(t.message, "set CI_BASE_IMAGE to the base image");
    assert_eq!(line, Some(5));
    assert!(
        text.starts_with(
            "werf.yaml, line 5: template: werfConfig:5:10: executing \"werfConfig\" at <required"
        ),
        "{text}"
    );
    assert!(
        text.contains("error calling required: set CI_BASE_IMAGE to the base image"),
        "{text}"
    );
}

#[test]
fn errors_in_partials_name_the_partial_file_and_line() {
    let broken = PARTIALS.replace("{{ .base }}", "{{ .base | nosuch }}");
    let mut files = project_files(MONOREPO_WERF_YAML);
    files.retain(|(p, _)| p != ".werf/images.tmpl");
    files.push((".werf/images.tmpl".into(), broken));
    let (err, line) = template_error(render(&files, ci_env()).unwrap_err());
    assert_eq!(err.phase, Phase::Parse);
    assert_eq!((err.template.as_str(), err.line), ("images.tmpl", 6));
    assert_eq!(err.message, "function \"nosuch\" not defined");
    // Not a line of werf.yaml.
    assert_eq!(line, None);
}

#[test]
fn files_come_from_the_commit_never_the_work_tree() {
    let files = project_files(
        "{{ .Files.Exists \"shared/versions.yaml\" }} {{ .Files.IsDir \"shared\" }} {{ .Files.Exists \"uncommitted.txt\" }} {{ range $path, $_ := .Files.Glob \"services/*/Dockerfile\" }}{{ $path }} {{ end }}",
    );
    let repo = committed(&files);
    std::fs::write(repo.path().join("uncommitted.txt"), "local").unwrap();
    let tree = GitTree::open(repo.path(), None).unwrap();
    let request = PlanRequest {
        render: ci_env(),
        ..PlanRequest::default()
    };
    let (_, rendered) = render_config(&tree, &request).unwrap();
    assert_eq!(
        rendered,
        "true true false services/api/Dockerfile services/worker/Dockerfile "
    );
    let missing = project_files("{{ .Files.Get \"uncommitted.txt\" }}");
    let (err, _) = template_error(render(&missing, ci_env()).unwrap_err());
    assert_eq!(err.function.as_deref(), Some("Get"));
    assert!(
        err.message.contains("\"uncommitted.txt\" not found"),
        "{err}"
    );
}

#[test]
fn env_and_commit_data() {
    let files = project_files(
        "{{ .Env }}|{{ .Commit.Date.Unix }}|{{ .Commit.Date.Human }}|{{ len .Commit.Hash }}",
    );
    let context = RenderContext {
        werf_env: "production".into(),
        ..ci_env()
    };
    // The test commits are authored at 1700000000 (UTC).
    assert_eq!(
        render(&files, context).unwrap(),
        "production|1700000000|2023-11-14 22:13:20 +0000 UTC|40"
    );
}

#[test]
fn a_custom_templates_directory_replaces_dot_werf() {
    let mut files = project_files("{{ include \"x\" . }}");
    files.push((
        "ci/templates/x.tmpl".into(),
        "{{ define \"x\" }}from ci{{ end }}".into(),
    ));
    let context = RenderContext {
        templates_dir: Some("ci/templates".into()),
        ..ci_env()
    };
    assert_eq!(render(&files, context).unwrap(), "from ci");
    let (err, _) = template_error(render(&files, ci_env()).unwrap_err());
    assert!(err.message.contains("no template \"x\""), "{err}");
}

#[test]
fn plain_yaml_is_not_rendered() {
    // `<no value>`-style surprises cannot happen to a file without actions.
    let text = "project: shop\nconfigVersion: 1\n";
    assert_eq!(
        render(&project_files(text), RenderContext::default()).unwrap(),
        text
    );
}
