//! Cross-directive and cross-document validation of werf.yaml (after typed deserialization).

use std::collections::HashMap;

use serde_yaml_ng::Value;

use super::{
    ConfigError, ConfigErrorKind, Ctx, ImageConfig, ImageKind, Platform, RawMeta, Secret,
    StringList, WerfConfig,
};
use crate::slug;

/// Parses a platform list; errors name the directive and the value's line.
pub(super) fn parse_platforms(
    ctx: &Ctx<'_>,
    document: usize,
    image: Option<&str>,
    directive: &str,
    raw: Option<&StringList>,
) -> Result<Vec<Platform>, ConfigError> {
    let mut out: Vec<Platform> = Vec::new();
    for value in raw.map(|l| l.0.as_slice()).unwrap_or(&[]) {
        let platform = Platform::parse(value).map_err(|reason| {
            ctx.err(
                Some(document),
                image,
                ctx.line_containing(document, value),
                ConfigErrorKind::InvalidPlatform {
                    directive: directive.to_string(),
                    value: value.clone(),
                    reason,
                },
            )
        })?;
        if !out.contains(&platform) {
            out.push(platform);
        }
    }
    Ok(out)
}

pub(super) fn validate(
    ctx: &Ctx<'_>,
    meta_document: Option<usize>,
    meta: RawMeta,
    images: Vec<ImageConfig>,
) -> Result<WerfConfig, ConfigError> {
    let meta_line = |key: &str| meta_document.and_then(|d| ctx.key_line(d, key));

    // configVersion: required, must be 1.
    match &meta.config_version {
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
        other => {
            let found = match other {
                None => "nothing".to_string(),
                Some(v) => serde_yaml_ng::to_string(v)
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "an unreadable value".into()),
            };
            return Err(ctx.err(
                meta_document,
                None,
                meta_line("configVersion"),
                ConfigErrorKind::ConfigVersion(found),
            ));
        }
    }

    // project: required, werf's project-name rule.
    let project = match meta.project.as_deref() {
        None | Some("") => {
            return Err(ctx.err(
                meta_document,
                None,
                meta_line("project"),
                ConfigErrorKind::MissingProject,
            ));
        }
        Some(p) if !slug::is_valid_project(p) => {
            return Err(ctx.err(
                meta_document,
                None,
                meta_line("project"),
                ConfigErrorKind::InvalidProject(p.to_string()),
            ));
        }
        Some(p) => p.to_string(),
    };

    let build = meta.build.unwrap_or_default();
    let build_platforms = match meta_document {
        Some(d) => parse_platforms(ctx, d, None, "build.platform", build.platform.as_ref())?,
        None => Vec::new(),
    };

    check_names(ctx, &images)?;
    for image in &images {
        check_image(ctx, image)?;
    }
    check_references(ctx, &images)?;

    Ok(WerfConfig {
        file: ctx.file.to_string(),
        project,
        build,
        build_platforms,
        images,
    })
}

fn check_names(ctx: &Ctx<'_>, images: &[ImageConfig]) -> Result<(), ConfigError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for image in images {
        if image.name.is_empty() && images.len() > 1 {
            return Err(ctx.err(
                Some(image.document),
                Some(""),
                image.line,
                ConfigErrorKind::NamelessAmongOthers,
            ));
        }
        if let Some(&first_document) = seen.get(image.name.as_str()) {
            return Err(ctx.err(
                Some(image.document),
                Some(&image.name),
                image.line,
                ConfigErrorKind::DuplicateImage {
                    name: image.name.clone(),
                    first_document,
                },
            ));
        }
        seen.insert(&image.name, image.document);
    }
    Ok(())
}

fn check_image(ctx: &Ctx<'_>, image: &ImageConfig) -> Result<(), ConfigError> {
    let doc = image.document;
    let invalid = |key: &str, message: String| {
        ctx.err(
            Some(doc),
            Some(&image.name),
            ctx.key_line(doc, key)
                .or_else(|| ctx.line_containing(doc, key)),
            ConfigErrorKind::InvalidValue(message),
        )
    };
    let is_dockerfile = matches!(image.kind, ImageKind::Dockerfile(_));
    for (i, dep) in image.dependencies().iter().enumerate() {
        let at = format!("dependencies[{i}]");
        if is_dockerfile {
            if dep.before.is_some() || dep.after.is_some() {
                return Err(invalid(
                    "dependencies",
                    format!(
                        "`{at}`: `before`/`after` are Stapel-only; a Dockerfile image receives dependencies through build args"
                    ),
                ));
            }
        } else {
            let stage = match (&dep.before, &dep.after) {
                (Some(s), None) | (None, Some(s)) => s,
                _ => {
                    return Err(invalid(
                        "dependencies",
                        format!(
                            "`{at}`: a Stapel dependency needs exactly one of `before` or `after` (install or setup)"
                        ),
                    ));
                }
            };
            if stage != "install" && stage != "setup" {
                return Err(invalid(
                    "dependencies",
                    format!(
                        "`{at}`: `before`/`after` must be `install` or `setup`, found {stage:?}"
                    ),
                ));
            }
        }
        for (j, import) in dep.imports.iter().enumerate() {
            let at = format!("{at}.imports[{j}]");
            let (needed, forbidden) = if is_dockerfile {
                (&import.target_build_arg, &import.target_env)
            } else {
                (&import.target_env, &import.target_build_arg)
            };
            let (needed_key, forbidden_key) = if is_dockerfile {
                ("targetBuildArg", "targetEnv")
            } else {
                ("targetEnv", "targetBuildArg")
            };
            if needed.as_deref().is_none_or(str::is_empty) || forbidden.is_some() {
                return Err(invalid(
                    "imports",
                    format!(
                        "`{at}` needs `{needed_key}` (and no `{forbidden_key}`) for a {} image",
                        if is_dockerfile {
                            "Dockerfile"
                        } else {
                            "Stapel"
                        }
                    ),
                ));
            }
        }
    }
    let secrets: &[Secret] = match &image.kind {
        ImageKind::Dockerfile(d) => &d.secrets,
        ImageKind::Stapel(s) => &s.secrets,
    };
    for (i, secret) in secrets.iter().enumerate() {
        let sources = [&secret.env, &secret.src, &secret.value]
            .iter()
            .filter(|s| s.is_some())
            .count();
        if sources != 1 {
            return Err(invalid(
                "secrets",
                format!("`secrets[{i}]` needs exactly one of `env`, `src` or `value`"),
            ));
        }
        if secret.value.is_some() && secret.id.as_deref().is_none_or(str::is_empty) {
            return Err(invalid(
                "secrets",
                format!("`secrets[{i}]` with `value` needs an `id`"),
            ));
        }
    }
    match &image.kind {
        ImageKind::Dockerfile(d) => {
            if d.context_add_file.is_some() && d.context_add_files.is_some() {
                return Err(invalid(
                    "contextAddFile",
                    "`contextAddFile` and `contextAddFiles` are the same directive; use `contextAddFiles` only".into(),
                ));
            }
            if d.dockerfile.is_empty() {
                return Err(invalid(
                    "dockerfile",
                    "`dockerfile` must not be empty".into(),
                ));
            }
            d.args_as_strings().map_err(|m| invalid("args", m))?;
        }
        ImageKind::Stapel(s) => {
            for (i, import) in s.import.iter().enumerate() {
                let sources = [&import.image, &import.artifact, &import.from]
                    .iter()
                    .filter(|s| s.is_some())
                    .count();
                if sources != 1 {
                    return Err(invalid(
                        "import",
                        format!("`import[{i}]` needs exactly one of `image`, `artifact` or `from`"),
                    ));
                }
                if import.before.is_some() == import.after.is_some() {
                    return Err(invalid(
                        "import",
                        format!(
                            "`import[{i}]` needs exactly one of `before` or `after` (install or setup)"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn check_references(ctx: &Ctx<'_>, images: &[ImageConfig]) -> Result<(), ConfigError> {
    let index: HashMap<&str, usize> = images
        .iter()
        .enumerate()
        .map(|(i, img)| (img.name.as_str(), i))
        .collect();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); images.len()];
    for (i, image) in images.iter().enumerate() {
        for reference in image.image_references(|n| index.contains_key(n)) {
            match index.get(reference.image.as_str()) {
                Some(&target) => deps[i].push(target),
                None => {
                    let leaf = reference
                        .directive
                        .rsplit('.')
                        .next()
                        .unwrap_or(&reference.directive);
                    let line = reference_line(ctx, image.document, leaf, &reference.image);
                    return Err(ctx.err(
                        Some(image.document),
                        Some(&image.name),
                        line,
                        ConfigErrorKind::UnknownImage {
                            directive: reference.directive,
                            name: reference.image,
                        },
                    ));
                }
            }
        }
    }
    if let Some(cycle) = crate::plan::find_cycle(&deps) {
        let first = &images[cycle[0]];
        return Err(ctx.err(
            Some(first.document),
            Some(&first.name),
            first.line,
            ConfigErrorKind::DependencyCycle(
                cycle.iter().map(|&i| images[i].name.clone()).collect(),
            ),
        ));
    }
    Ok(())
}

/// The line of `leaf: name` inside a document (nested `- image: name` or top-level
/// `fromImage: name`), skipping the document's own top-level `image:` line.
fn reference_line(ctx: &Ctx<'_>, document: usize, leaf: &str, name: &str) -> Option<usize> {
    let leaf = leaf.split('[').next().unwrap_or(leaf);
    let top_level = leaf != "image" && leaf != "artifact";
    if top_level {
        return ctx.key_line(document, leaf);
    }
    ctx.lines.find_pub(document, |line| {
        line.starts_with([' ', '-']) && line.contains(&format!("{leaf}:")) && line.contains(name)
    })
}
