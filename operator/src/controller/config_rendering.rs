//! werf.yaml rendering inputs of an ImageBuild: `spec.configRendering`, with its Secret and
//! ConfigMap values read, becomes the plain [`RenderContext`] planning renders with. A
//! cluster has no process environment to give `env`; these values take its place.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kiln_crds::ImageBuild;
use kiln_crds::imagebuild::ConfigRenderingSpec;
use kube::{Api, Client, ResourceExt};

use super::error::Error;
use crate::config::render::{EnvValues, RenderContext};

/// The spec field named in errors.
const FIELD: &str = "spec.configRendering.envValuesFrom";

/// Reads `spec.configRendering` of `ib`, resolving `envValuesFrom` entries from Secrets and
/// ConfigMaps in its namespace.
///
/// Errors: [`Error::TemplateEnvNotFound`] for a missing Secret, ConfigMap or key (terminal),
/// [`Error::Kube`] for API failures.
pub async fn render_context(ib: &ImageBuild, client: &Client) -> Result<RenderContext, Error> {
    let Some(spec) = &ib.spec.config_rendering else {
        return Ok(render_context_from(None, BTreeMap::new()));
    };
    let namespace = ib.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let mut resolved = BTreeMap::new();
    for source in &spec.env_values_from {
        let missing = |what: String| Error::TemplateEnvNotFound {
            what,
            namespace: namespace.clone(),
            variable: source.name.clone(),
            field: FIELD,
        };
        let value = if let Some(r) = &source.secret_key_ref {
            let secret = secrets
                .get_opt(&r.name)
                .await?
                .ok_or_else(|| missing(format!("Secret {:?}", r.name)))?;
            secret_value(&secret, &r.key)
                .ok_or_else(|| missing(format!("key {:?} of Secret {:?}", r.key, r.name)))?
        } else if let Some(r) = &source.config_map_key_ref {
            let map = config_maps
                .get_opt(&r.name)
                .await?
                .ok_or_else(|| missing(format!("ConfigMap {:?}", r.name)))?;
            config_map_value(&map, &r.key)
                .ok_or_else(|| missing(format!("key {:?} of ConfigMap {:?}", r.key, r.name)))?
        } else {
            return Err(missing("a secretKeyRef or configMapKeyRef".into()));
        };
        resolved.insert(source.name.clone(), value);
    }
    Ok(render_context_from(Some(spec), resolved))
}

/// The render context of a spec, given the values of its `envValuesFrom` entries (which win
/// over `envValues` of the same name).
pub fn render_context_from(
    spec: Option<&ConfigRenderingSpec>,
    resolved: BTreeMap<String, String>,
) -> RenderContext {
    let Some(spec) = spec else {
        return RenderContext::default();
    };
    let mut values = spec.env_values.clone();
    values.extend(resolved);
    RenderContext {
        env: EnvValues::Map(values),
        werf_env: spec.env.clone().unwrap_or_default(),
        loose_giterminism: spec.loose_giterminism,
        templates_dir: spec.templates_dir.clone(),
    }
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Some(String::from_utf8_lossy(&v.0).into_owned());
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .cloned()
}

fn config_map_value(map: &ConfigMap, key: &str) -> Option<String> {
    if let Some(v) = map.data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.clone());
    }
    map.binary_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_win_over_plain_values_and_fields_map_over() {
        let spec = ConfigRenderingSpec {
            env: Some("production".into()),
            env_values: BTreeMap::from([
                ("A".to_string(), "plain".to_string()),
                ("B".to_string(), "b".to_string()),
            ]),
            templates_dir: Some("ci/templates".into()),
            loose_giterminism: true,
            ..ConfigRenderingSpec::default()
        };
        let ctx = render_context_from(
            Some(&spec),
            BTreeMap::from([("A".to_string(), "from-secret".to_string())]),
        );
        let EnvValues::Map(values) = &ctx.env else {
            panic!("a cluster never reads the process environment");
        };
        assert_eq!(values["A"], "from-secret");
        assert_eq!(values["B"], "b");
        assert_eq!(ctx.werf_env, "production");
        assert_eq!(ctx.templates_dir.as_deref(), Some("ci/templates"));
        assert!(ctx.loose_giterminism);
        assert_eq!(
            render_context_from(None, BTreeMap::new()),
            RenderContext::default()
        );
    }

    #[test]
    fn keys_come_from_data_or_string_data() {
        let secret = Secret {
            data: Some(BTreeMap::from([(
                "k".to_string(),
                k8s_openapi::ByteString(b"v".to_vec()),
            )])),
            string_data: Some(BTreeMap::from([("s".to_string(), "w".to_string())])),
            ..Secret::default()
        };
        assert_eq!(secret_value(&secret, "k").as_deref(), Some("v"));
        assert_eq!(secret_value(&secret, "s").as_deref(), Some("w"));
        assert_eq!(secret_value(&secret, "x"), None);
        let map = ConfigMap {
            data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
            ..ConfigMap::default()
        };
        assert_eq!(config_map_value(&map, "k").as_deref(), Some("v"));
        assert_eq!(config_map_value(&map, "x"), None);
    }
}
