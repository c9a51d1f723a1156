//! Rendering a 500-line templated werf.yaml: a monorepo of 20 services, each image document
//! built from Sprig pipelines, `range`, `with`, `if`, variables and one `include` of a
//! `.werf` partial (20 includes), plus `.Files.Get` + `fromYaml` of a shared file and `env`.
//! The target is a few milliseconds per render.

use std::collections::BTreeMap;

use criterion::{Criterion, criterion_group, criterion_main};
use kiln_operator::config::render::{CommitFiles, CommitInfo, EnvValues, RenderContext, render};

const SERVICES: usize = 20;

struct Files(BTreeMap<String, String>);

impl CommitFiles for Files {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        Ok(self.0.get(path).map(|s| s.as_bytes().to_vec()))
    }

    fn is_dir(&self, path: &str) -> Result<bool, String> {
        Ok(self.0.keys().any(|k| k.starts_with(&format!("{path}/"))))
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, String> {
        Ok(self
            .0
            .keys()
            .filter(|k| k.starts_with(&format!("{dir}/")))
            .cloned()
            .collect())
    }
}

fn werf_yaml() -> String {
    let mut out = String::from(
        "{{- $shared := .Files.Get \"shared/values.yaml\" | fromYaml }}\n\
         {{- $_ := set . \"Registry\" (env \"CI_REGISTRY\" \"registry.example.org\") }}\n\
         project: {{ env \"CI_PROJECT\" \"shop\" }}\n\
         configVersion: 1\n\
         build:\n  platform:\n  - linux/amd64\n",
    );
    for i in 0..SERVICES {
        out.push_str(&format!(
            r#"---
{{{{- $name := printf "svc-%02d" {i} }}}}
{{{{- $svc := index $shared.services {i} }}}}
image: {{{{ $name }}}}
dockerfile: {{{{ $svc.dockerfile | default "Dockerfile" }}}}
context: services/{{{{ $name }}}}
{{{{ include "common" (dict "name" $name "root" $) }}}}
args:
  REGISTRY: {{{{ $.Registry | quote }}}}
  SERVICE: {{{{ $name | upper | quote }}}}
  GO_VERSION: {{{{ $shared.go | toString | quote }}}}
{{{{- range $k, $v := $svc.args }}}}
  {{{{ $k }}}}: {{{{ $v | quote }}}}
{{{{- end }}}}
{{{{- if $svc.staged }}}}
staged: true
{{{{- end }}}}
{{{{- with $svc.target }}}}
target: {{{{ . }}}}
{{{{- end }}}}
dependencies:
{{{{- range $dep := $svc.deps }}}}
- image: {{{{ $dep }}}}
  imports:
  - type: ImageName
    targetBuildArg: {{{{ $dep | upper | replace "-" "_" }}}}_IMAGE
{{{{- end }}}}
"#
        ));
    }
    out
}

fn files() -> Files {
    let mut map = BTreeMap::new();
    let mut values = String::from("go: 1.22\nservices:\n");
    for i in 0..SERVICES {
        values.push_str(&format!(
            "- args: {{A: a{i}, B: b{i}, C: c{i}}}\n  staged: {}\n  target: {}\n  deps: [{}]\n",
            i % 2 == 0,
            if i % 3 == 0 { "prod" } else { "\"\"" },
            if i > 0 {
                format!("svc-{:02}", i - 1)
            } else {
                String::new()
            }
        ));
    }
    map.insert("shared/values.yaml".to_string(), values);
    map.insert(
        ".werf/common.tmpl".to_string(),
        "{{- define \"common\" -}}\ncacheVersion: {{ .root.Registry }}-{{ .name }}\nfinal: {{ ne .name \"svc-00\" }}\n{{- end }}"
            .to_string(),
    );
    Files(map)
}

fn bench(c: &mut Criterion) {
    let text = werf_yaml();
    let files = files();
    let commit = CommitInfo {
        hash: "0".repeat(40),
        time_unix: 1_700_000_000,
        offset_minutes: 0,
    };
    let context = RenderContext {
        env: EnvValues::Map(BTreeMap::new()),
        loose_giterminism: true,
        ..RenderContext::default()
    };
    let rendered = render(&text, &files, &commit, &context).expect("renders");
    assert!(
        text.lines().count() >= 500,
        "{} lines",
        text.lines().count()
    );
    assert_eq!(rendered.matches("cacheVersion: registry").count(), SERVICES);
    kiln_operator::config::WerfConfig::parse("werf.yaml", &rendered).expect("valid werf.yaml");
    c.bench_function("render 500-line werf.yaml with 20 includes", |b| {
        b.iter(|| render(&text, &files, &commit, &context).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
