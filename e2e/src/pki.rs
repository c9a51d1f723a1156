//! A throwaway PKI for one control plane, made with the `openssl` command line tool.
//!
//! All certificates are X.509 v3 with P-256 keys (fast to generate; rustls/webpki
//! rejects v1 certificates): a CA, the kube-apiserver serving certificate (IP SAN
//! 127.0.0.1, `localhost` and the in-cluster `kubernetes.default.svc` names), an admin
//! client certificate in group `system:masters`, and the service-account signing key
//! pair.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors generating the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// `openssl` could not be run at all.
    #[error("running openssl to {step}: {source} (install openssl with hack/setup.sh)")]
    Spawn {
        /// What the call was for.
        step: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `openssl` ran and failed.
    #[error("openssl failed to {step} ({status}): {stderr}")]
    Failed {
        /// What the call was for.
        step: &'static str,
        /// Exit status.
        status: std::process::ExitStatus,
        /// Its stderr.
        stderr: String,
    },
    /// Writing an extension file failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Paths of the generated PEM files (all in one directory).
#[derive(Debug, Clone)]
pub struct Pki {
    /// CA certificate; trust anchor for clients and the client-CA of the apiserver.
    pub ca_cert: PathBuf,
    /// CA private key.
    pub ca_key: PathBuf,
    /// kube-apiserver serving certificate.
    pub apiserver_cert: PathBuf,
    /// kube-apiserver serving key.
    pub apiserver_key: PathBuf,
    /// Admin client certificate (CN `kiln-admin`, O `system:masters`).
    pub admin_cert: PathBuf,
    /// Admin client key.
    pub admin_key: PathBuf,
    /// Service-account token signing key (private).
    pub sa_key: PathBuf,
    /// Service-account token verification key (public).
    pub sa_pub: PathBuf,
}

/// The user name of the admin client certificate.
pub const ADMIN_USER: &str = "kiln-admin";

impl Pki {
    /// Generates every key and certificate into `dir` (which must exist).
    pub fn generate(dir: &Path) -> Result<Self, PkiError> {
        let p = |n: &str| dir.join(n);
        let pki = Pki {
            ca_cert: p("ca.crt"),
            ca_key: p("ca.key"),
            apiserver_cert: p("apiserver.crt"),
            apiserver_key: p("apiserver.key"),
            admin_cert: p("admin.crt"),
            admin_key: p("admin.key"),
            sa_key: p("sa.key"),
            sa_pub: p("sa.pub"),
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            "create the CA",
            dir,
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-days",
                    "3650",
                    "-subj",
                    "/CN=kiln-e2e-ca",
                    "-keyout",
                    "ca.key",
                ],
                &[
                    "-out",
                    "ca.crt",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                ],
                &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ]
            .concat(),
        )?;
        write(
            &p("server.ext"),
            "basicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,\
             DNS:kubernetes.default,DNS:kubernetes.default.svc,\
             DNS:kubernetes.default.svc.cluster.local\n",
        )?;
        write(
            &p("client.ext"),
            "basicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=clientAuth\n",
        )?;
        for (what, stem, subj, ext) in [
            (
                "create the apiserver certificate",
                "apiserver",
                "/CN=kube-apiserver".to_owned(),
                "server.ext",
            ),
            (
                "create the admin client certificate",
                "admin",
                format!("/O=system:masters/CN={ADMIN_USER}"),
                "client.ext",
            ),
        ] {
            let key = format!("{stem}.key");
            let csr = format!("{stem}.csr");
            let crt = format!("{stem}.crt");
            openssl(
                what,
                dir,
                &[
                    &["req", "-new"][..],
                    &ec,
                    &["-subj", &subj, "-keyout", &key, "-out", &csr],
                ]
                .concat(),
            )?;
            openssl(
                what,
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "3650",
                    "-extfile",
                    ext,
                    "-out",
                    &crt,
                ],
            )?;
        }
        openssl(
            "create the service-account key",
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "sa.key",
            ],
        )?;
        openssl(
            "extract the service-account public key",
            dir,
            &["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"],
        )?;
        Ok(pki)
    }
}

fn write(path: &Path, text: &str) -> Result<(), PkiError> {
    std::fs::write(path, text).map_err(|source| PkiError::Write {
        path: path.to_owned(),
        source,
    })
}

fn openssl(step: &'static str, dir: &Path, args: &[&str]) -> Result<(), PkiError> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|source| PkiError::Spawn { step, source })?;
    if !out.status.success() {
        return Err(PkiError::Failed {
            step,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn certificates_chain_to_the_ca_and_carry_the_right_names() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path()).unwrap();
        let verify = text(
            dir.path(),
            &["verify", "-CAfile", "ca.crt", "apiserver.crt", "admin.crt"],
        );
        assert_eq!(verify, "apiserver.crt: OK\nadmin.crt: OK\n");
        let server = text(
            dir.path(),
            &["x509", "-in", "apiserver.crt", "-noout", "-text"],
        );
        assert!(server.contains("IP Address:127.0.0.1"), "{server}");
        assert!(server.contains("TLS Web Server Authentication"), "{server}");
        let subject = text(
            dir.path(),
            &[
                "x509",
                "-in",
                "admin.crt",
                "-noout",
                "-subject",
                "-nameopt",
                "compat",
            ],
        );
        assert_eq!(subject, "subject=/O=system:masters/CN=kiln-admin\n");
        assert!(pki.sa_pub.is_file() && pki.sa_key.is_file());
    }

    #[test]
    fn failure_names_the_step() {
        let err = openssl(
            "do nothing useful",
            Path::new("/"),
            &["x509", "-in", "/nonexistent/kiln.crt"],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("do nothing useful"), "{err}");
    }
}
