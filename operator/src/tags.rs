//! Custom tag templates (`--add-custom-tag` in werf, `spec.customTags` in Kiln).
//!
//! werf parses a custom tag as a Go template with `%` as both delimiters, where each action is
//! one of four functions: `%image%` (the werf.yaml image name), `%image_slug%` ([`slug::slug`]),
//! `%image_safe_slug%` ([`slug::docker_tag`]) and `%image_content_based_tag%` (the image's stage
//! tag `DIGEST-TIMESTAMP`, or the bare digest of a manifest list). Any other text is literal.
//!
//! Validation follows werf (`getCustomTagFuncList`): every final image's rendering, with a
//! 70-character stub standing in for the content-based tag, must be a valid docker tag, and with
//! more than one final image the renderings must all differ (in practice: the template needs an
//! image placeholder).

use std::collections::BTreeMap;

use crate::slug;

/// Length of a stage tag `DIGEST-TIMESTAMP_MILLISEC` (56 + 1 + 13), used for the validation stub.
pub const CONTENT_BASED_TAG_STUB_LEN: usize = 70;

/// Why a custom tag template is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagTemplateError {
    /// `%name%` is not one of the four known placeholders.
    #[error(
        "custom tag template {template:?}: unknown placeholder %{name}% (known: %image%, %image_slug%, %image_safe_slug%, %image_content_based_tag%)"
    )]
    UnknownPlaceholder {
        /// The template as given.
        template: String,
        /// The text between the `%` delimiters.
        name: String,
    },
    /// A `%` opens a placeholder that is never closed.
    #[error(
        "custom tag template {template:?}: unclosed placeholder at byte {offset} (a placeholder is %name%)"
    )]
    Unclosed {
        /// The template as given.
        template: String,
        /// Byte offset of the opening `%`.
        offset: usize,
    },
    /// The template renders to something that is not a valid docker tag.
    #[error(
        "custom tag template {template:?} gives {tag:?} for image {image:?}, which is not a valid docker tag (ASCII letters, digits, `_`, `.`, `-`; not starting with `.` or `-`; at most 128 characters)"
    )]
    InvalidTag {
        /// The template as given.
        template: String,
        /// The final image it was rendered for.
        image: String,
        /// The rendering, with a 70×`x` stub for the content-based tag.
        tag: String,
    },
    /// Two final images would get the same tag.
    #[error(
        "custom tag template {template:?} gives the same tag {tag:?} to images {first:?} and {second:?}; with several final images a custom tag must contain %image%, %image_slug% or %image_safe_slug%"
    )]
    NotUnique {
        /// The template as given.
        template: String,
        /// The shared rendering.
        tag: String,
        /// One image getting it.
        first: String,
        /// Another image getting it.
        second: String,
    },
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Literal text.
    Text(String),
    /// `%image%`: the image name.
    Image,
    /// `%image_slug%`: werf's `Slug(name)`.
    ImageSlug,
    /// `%image_safe_slug%`: werf's `DockerTag(name)`.
    ImageSafeSlug,
    /// `%image_content_based_tag%`: the image's content-based tag.
    ContentBasedTag,
}

/// A parsed custom tag template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomTagTemplate {
    template: String,
    parts: Vec<TemplatePart>,
}

impl CustomTagTemplate {
    /// Parses `%`-delimited placeholders; surrounding spaces inside a placeholder are allowed
    /// (`% image %`), as in a Go template action.
    ///
    /// Errors: [`TagTemplateError::Unclosed`] for an odd `%`, [`TagTemplateError::UnknownPlaceholder`]
    /// for any other action (including the empty one, `%%`).
    pub fn parse(template: &str) -> Result<Self, TagTemplateError> {
        let mut parts = Vec::new();
        let mut rest = template;
        let mut offset = 0;
        while let Some(open) = rest.find('%') {
            if open > 0 {
                parts.push(TemplatePart::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let Some(close) = after.find('%') else {
                return Err(TagTemplateError::Unclosed {
                    template: template.to_string(),
                    offset: offset + open,
                });
            };
            let name = after[..close].trim();
            parts.push(match name {
                "image" => TemplatePart::Image,
                "image_slug" => TemplatePart::ImageSlug,
                "image_safe_slug" => TemplatePart::ImageSafeSlug,
                "image_content_based_tag" => TemplatePart::ContentBasedTag,
                _ => {
                    return Err(TagTemplateError::UnknownPlaceholder {
                        template: template.to_string(),
                        name: after[..close].to_string(),
                    });
                }
            });
            let consumed = open + 1 + close + 1;
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Text(rest.to_string()));
        }
        Ok(CustomTagTemplate {
            template: template.to_string(),
            parts,
        })
    }

    /// The template text as given.
    pub fn as_str(&self) -> &str {
        &self.template
    }

    /// The parsed pieces, in order.
    pub fn parts(&self) -> &[TemplatePart] {
        &self.parts
    }

    /// Whether the template names the image (`%image%`, `%image_slug%` or `%image_safe_slug%`).
    pub fn has_image_placeholder(&self) -> bool {
        self.parts.iter().any(|p| {
            matches!(
                p,
                TemplatePart::Image | TemplatePart::ImageSlug | TemplatePart::ImageSafeSlug
            )
        })
    }

    /// Renders the tag for `image` whose content-based tag is `content_based_tag`.
    pub fn render(&self, image: &str, content_based_tag: &str) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                TemplatePart::Text(text) => out.push_str(text),
                TemplatePart::Image => out.push_str(image),
                TemplatePart::ImageSlug => out.push_str(&slug::slug(image)),
                TemplatePart::ImageSafeSlug => out.push_str(&slug::docker_tag(image)),
                TemplatePart::ContentBasedTag => out.push_str(content_based_tag),
            }
        }
        out
    }
}

/// Parses and validates custom tag templates against the final images of a build, as werf does
/// before building: each rendering (content-based tag stubbed with 70 `x`) must be a non-empty
/// valid docker tag, and distinct final images must get distinct tags.
///
/// `final_images` are werf.yaml image names (order only affects which pair an error names).
pub fn validate_custom_tags(
    templates: &[String],
    final_images: &[&str],
) -> Result<Vec<CustomTagTemplate>, TagTemplateError> {
    let stub = "x".repeat(CONTENT_BASED_TAG_STUB_LEN);
    let mut parsed = Vec::with_capacity(templates.len());
    for template in templates {
        let tpl = CustomTagTemplate::parse(template)?;
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for image in final_images {
            let tag = tpl.render(image, &stub);
            if tag.is_empty() || !slug::is_valid_docker_tag(&tag) {
                return Err(TagTemplateError::InvalidTag {
                    template: template.clone(),
                    image: image.to_string(),
                    tag,
                });
            }
            if let Some(first) = seen.insert(tag.clone(), image) {
                return Err(TagTemplateError::NotUnique {
                    template: template.clone(),
                    tag,
                    first: first.to_string(),
                    second: image.to_string(),
                });
            }
        }
        parsed.push(tpl);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(templates: &[&str]) -> Vec<String> {
        templates.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn renders_every_placeholder() {
        let tpl = CustomTagTemplate::parse(
            "%image%_%image_slug%_%image_safe_slug%_%image_content_based_tag%",
        )
        .unwrap();
        assert_eq!(
            tpl.render("Front/End", "abc-123"),
            // slugify("Front/End") = "front-end"; DockerTag hashes: murmur3("Front/End").
            format!(
                "Front/End_front-end_front-end-{}_abc-123",
                slug::legacy_murmur_hash("Front/End")
            )
        );
        assert_eq!(
            CustomTagTemplate::parse("% image %-latest")
                .unwrap()
                .render("api", ""),
            "api-latest"
        );
        assert_eq!(
            CustomTagTemplate::parse("latest")
                .unwrap()
                .render("api", "t"),
            "latest"
        );
    }

    #[test]
    fn unknown_placeholder_is_an_error() {
        let err = CustomTagTemplate::parse("%image%-%branch%").unwrap_err();
        assert_eq!(
            err,
            TagTemplateError::UnknownPlaceholder {
                template: "%image%-%branch%".into(),
                name: "branch".into()
            }
        );
        assert!(err.to_string().contains("%branch%"));
        assert!(matches!(
            CustomTagTemplate::parse("a%%b"),
            Err(TagTemplateError::UnknownPlaceholder { .. })
        ));
    }

    #[test]
    fn unclosed_placeholder_is_an_error() {
        assert_eq!(
            CustomTagTemplate::parse("v1-%image").unwrap_err(),
            TagTemplateError::Unclosed {
                template: "v1-%image".into(),
                offset: 3
            }
        );
    }

    #[test]
    fn one_final_image_accepts_a_constant_tag() {
        let parsed = validate_custom_tags(&tags(&["latest", "main"]), &["backend"]).unwrap();
        assert_eq!(parsed.len(), 2);
        assert!(!parsed[0].has_image_placeholder());
    }

    #[test]
    fn several_final_images_need_an_image_placeholder() {
        let err = validate_custom_tags(&tags(&["latest"]), &["backend", "frontend"]).unwrap_err();
        assert_eq!(
            err,
            TagTemplateError::NotUnique {
                template: "latest".into(),
                tag: "latest".into(),
                first: "backend".into(),
                second: "frontend".into()
            }
        );
        assert!(validate_custom_tags(&tags(&["%image%-latest"]), &["backend", "frontend"]).is_ok());
    }

    #[test]
    fn slug_collisions_between_images_are_caught() {
        // slugify("a_b") == slugify("a.b") == "a-b".
        let err = validate_custom_tags(&tags(&["%image_slug%"]), &["a_b", "a.b"]).unwrap_err();
        assert!(matches!(err, TagTemplateError::NotUnique { ref tag, .. } if tag == "a-b"));
    }

    #[test]
    fn rendering_must_be_a_valid_docker_tag() {
        // `/` is not allowed in a tag; %image% keeps it.
        let err = validate_custom_tags(&tags(&["%image%"]), &["front/end"]).unwrap_err();
        assert!(matches!(err, TagTemplateError::InvalidTag { ref tag, .. } if tag == "front/end"));
        // %image_safe_slug% turns it into a valid tag.
        assert!(validate_custom_tags(&tags(&["%image_safe_slug%"]), &["front/end"]).is_ok());
        // Leading dash.
        assert!(validate_custom_tags(&tags(&["-x"]), &["a"]).is_err());
        // Empty.
        assert!(validate_custom_tags(&tags(&[""]), &["a"]).is_err());
    }

    #[test]
    fn content_based_tag_stub_counts_towards_the_length_limit() {
        // 70 + 1 + 57 = 128: fits; one more byte does not.
        let fits = format!("%image_content_based_tag%-{}", "y".repeat(57));
        assert!(validate_custom_tags(&[fits], &["a"]).is_ok());
        let too_long = format!("%image_content_based_tag%-{}", "y".repeat(58));
        assert!(matches!(
            validate_custom_tags(&[too_long], &["a"]),
            Err(TagTemplateError::InvalidTag { .. })
        ));
    }
}
