//! The base image environment a staged digest needs, read from a real registry holding a
//! real two-platform busybox (a manifest list of linux/amd64 and linux/arm64 images whose
//! config sets `PATH`, as Docker Hub's does), through a docker.io mirror and directly.

use std::collections::BTreeMap;

use kiln_operator::facts::base_image_env;
use kiln_operator::storage::{RegistryClient, RegistryClientConfig, StorageError};
use kiln_testkit::base_images::push_busybox;
use kiln_testkit::registry::TestRegistry;

const BUSYBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[tokio::test]
async fn base_env_comes_from_the_platform_image_of_the_manifest_list() {
    let registry = TestRegistry::start().unwrap();
    let address = registry.address().to_owned();
    let pushed = address.clone();
    tokio::task::spawn_blocking(move || push_busybox(&pushed, "hub/library/busybox"))
        .await
        .unwrap()
        .unwrap();
    let client = RegistryClient::new(RegistryClientConfig::default());
    let expected = BTreeMap::from([("PATH".to_owned(), BUSYBOX_PATH.to_owned())]);

    // `FROM busybox` reads docker.io/library/busybox through the mirror's path.
    let mirrors = vec![format!("http://{address}/hub")];
    for platform in ["linux/amd64", "linux/arm64"] {
        let env = base_image_env(&client, &mirrors, "busybox", platform)
            .await
            .unwrap();
        assert_eq!(env, expected, "{platform}");
    }
    // A reference with a registry is read there; a single-platform tag directly.
    let direct = format!("{address}/hub/library/busybox:arm64");
    assert_eq!(
        base_image_env(&client, &[], &direct, "linux/arm64")
            .await
            .unwrap(),
        expected
    );
    // scratch has no environment and needs no registry.
    assert_eq!(
        base_image_env(&client, &[], "scratch", "linux/amd64")
            .await
            .unwrap(),
        BTreeMap::new()
    );

    // The list has no image for the platform: the error names it.
    let err = base_image_env(&client, &mirrors, "busybox", "linux/s390x")
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::InvalidManifest { .. }), "{err}");
    assert!(err.to_string().contains("linux/s390x"), "{err}");

    // Missing everywhere: the mirror's 404 is reported, not the unreachable docker.io
    // tried after it (this machine has no internet).
    let err = base_image_env(&client, &mirrors, "nothing:1", "linux/amd64")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("hub/library/nothing"), "{err}");
}
