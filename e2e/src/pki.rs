//! A throwaway PKI for one control plane, made with the `openssl` command line tool.
//!
//! All certificates are X.509 v3 with P-256 keys (fast to generate; rustls/webpki
//! rejects v1 certificates): a CA, the kube-apiserver serving certificate (IP SAN
//! 127.0.0.1, `localhost` and the in-cluster `kubernetes.default.svc` names), an admin
//! client certificate in group `system:masters`, the client certificate kube-apiserver
//! shows kubelets (`kubectl logs`), and the service-account signing key pair. A node
//! issues its kubelet's own certificates from the same CA ([`Pki::issue`]).

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
    /// Client certificate kube-apiserver presents to kubelets (CN `kube-apiserver-kubelet-client`,
    /// O `system:masters`).
    pub kubelet_client_cert: PathBuf,
    /// Its key.
    pub kubelet_client_key: PathBuf,
}

/// What a certificate issued by [`Pki::issue`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertUsage {
    /// TLS client (`extendedKeyUsage=clientAuth`).
    Client,
    /// TLS server with these IP SANs (`extendedKeyUsage=serverAuth`).
    Server,
}

/// The user name of the admin client certificate.
pub const ADMIN_USER: &str = "kiln-admin";

impl Pki {
    /// Generates every key and certificate into `dir` (which must exist). The apiserver
    /// certificate also names `extra_ips` (the node bridge address pods reach it on).
    pub fn generate(dir: &Path, extra_ips: &[std::net::IpAddr]) -> Result<Self, PkiError> {
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
            kubelet_client_cert: p("kubelet-client.crt"),
            kubelet_client_key: p("kubelet-client.key"),
        };
        let ec = EC;
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
            &format!(
                "basicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n\
             subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,\
             DNS:kubernetes.default,DNS:kubernetes.default.svc,\
             DNS:kubernetes.default.svc.cluster.local{}\n",
                extra_ips
                    .iter()
                    .map(|ip| format!(",IP:{ip}"))
                    .collect::<String>()
            ),
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
            (
                "create the apiserver's kubelet client certificate",
                "kubelet-client",
                "/O=system:masters/CN=kube-apiserver-kubelet-client".to_owned(),
                "client.ext",
            ),
        ] {
            sign(what, dir, stem, &subj, ext)?;
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

    /// Issues a key and certificate `STEM.key`/`STEM.crt` in `dir` signed by this CA, with
    /// subject `subject` (e.g. `/O=system:nodes/CN=system:node:kiln-node`), for `usage`
    /// (server certificates name `ips`). Returns (certificate, key).
    pub fn issue(
        &self,
        dir: &Path,
        stem: &str,
        subject: &str,
        usage: CertUsage,
        ips: &[std::net::IpAddr],
    ) -> Result<(PathBuf, PathBuf), PkiError> {
        let ext = dir.join(format!("{stem}.ext"));
        let mut text = String::from(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
        );
        match usage {
            CertUsage::Client => text.push_str("extendedKeyUsage=clientAuth\n"),
            CertUsage::Server => {
                text.push_str("extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost");
                for ip in ips {
                    text.push_str(&format!(",IP:{ip}"));
                }
                text.push('\n');
            }
        }
        write(&ext, &text)?;
        let ca = self.ca_cert.to_string_lossy();
        let ca_key = self.ca_key.to_string_lossy();
        let ext_s = ext.to_string_lossy();
        sign_with(
            "issue a node certificate",
            dir,
            stem,
            subject,
            &ext_s,
            (&ca, &ca_key),
        )?;
        Ok((
            dir.join(format!("{stem}.crt")),
            dir.join(format!("{stem}.key")),
        ))
    }
}

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// Key + CSR + certificate `STEM.{key,crt}` in `dir`, signed by `ca.crt`/`ca.key` there.
fn sign(what: &'static str, dir: &Path, stem: &str, subj: &str, ext: &str) -> Result<(), PkiError> {
    sign_with(what, dir, stem, subj, ext, ("ca.crt", "ca.key"))
}

fn sign_with(
    what: &'static str,
    dir: &Path,
    stem: &str,
    subj: &str,
    ext: &str,
    (ca, ca_key): (&str, &str),
) -> Result<(), PkiError> {
    let key = format!("{stem}.key");
    let csr = format!("{stem}.csr");
    let crt = format!("{stem}.crt");
    openssl(
        what,
        dir,
        &[
            &["req", "-new"][..],
            &EC,
            &["-subj", subj, "-keyout", &key, "-out", &csr],
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
            ca,
            "-CAkey",
            ca_key,
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            ext,
            "-out",
            &crt,
        ],
    )
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
        let pki = Pki::generate(dir.path(), &[]).unwrap();
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
    fn issued_node_certificates_chain_to_the_ca_with_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let ip: std::net::IpAddr = "10.244.9.1".parse().unwrap();
        let pki = Pki::generate(dir.path(), &[ip]).unwrap();
        let api = text(
            dir.path(),
            &["x509", "-in", "apiserver.crt", "-noout", "-text"],
        );
        assert!(api.contains("IP Address:10.244.9.1"), "{api}");
        let node = dir.path().join("node");
        std::fs::create_dir(&node).unwrap();
        let (crt, _) = pki
            .issue(
                &node,
                "kubelet",
                "/O=system:nodes/CN=system:node:n",
                CertUsage::Client,
                &[],
            )
            .unwrap();
        let (serving, _) = pki
            .issue(&node, "serving", "/CN=n", CertUsage::Server, &[ip])
            .unwrap();
        let verify = text(
            dir.path(),
            &[
                "verify",
                "-CAfile",
                "ca.crt",
                crt.to_str().unwrap(),
                serving.to_str().unwrap(),
            ],
        );
        assert_eq!(verify.lines().count(), 2, "{verify}");
        assert!(verify.lines().all(|l| l.ends_with(": OK")), "{verify}");
        let subject = text(
            dir.path(),
            &[
                "x509",
                "-in",
                crt.to_str().unwrap(),
                "-noout",
                "-subject",
                "-nameopt",
                "compat",
            ],
        );
        assert_eq!(subject, "subject=/O=system:nodes/CN=system:node:n\n");
        let s = text(
            dir.path(),
            &["x509", "-in", serving.to_str().unwrap(), "-noout", "-text"],
        );
        assert!(s.contains("IP Address:10.244.9.1"), "{s}");
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
