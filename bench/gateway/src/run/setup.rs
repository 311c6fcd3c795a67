//! What every scenario shares: the signing key and tokens, the CA and serving certificate, the
//! ServiceAccount token file and the files a gateway is started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use virt_gateway_auth::jwt::{self, Claims};
use virt_gateway_auth::keys::{KeyAlgorithm, KeyPair};
use virt_gateway_testenv::certs::Authority;

use super::plan::Plan;
use super::spawn::GatewayFiles;
use crate::net::tls_client;
use crate::wrk;

/// Keys, tokens and files of a run, in its scratch directory.
pub struct Setup {
    /// The RSA-4096 signing key.
    pub key: KeyPair,
    /// Its public key (PEM), the gateways' `-jwt-token-key-file`.
    pub key_file: PathBuf,
    /// The token every load generator sends.
    pub token: String,
    /// Fresh tokens for the end-to-end cache-miss measurement.
    pub fresh: Vec<String>,
    /// Fresh tokens for the in-process cache-miss measurement.
    pub fresh_micro: Vec<String>,
    /// The bench CA (PEM file).
    pub ca_file: PathBuf,
    /// The upstream's serving certificate and key.
    pub cert_file: PathBuf,
    /// Its key.
    pub serving_key_file: PathBuf,
    /// The ServiceAccount-style token file of the minimal upstream.
    pub sa_file: PathBuf,
    /// What a gateway is started with.
    pub files: GatewayFiles,
    /// A TLS client trusting the bench CA.
    pub client_tls: Arc<rustls::ClientConfig>,
    /// wrk's Lua script (adds the Authorization header).
    pub script: PathBuf,
}

/// Claims of a bench token: the ConfigMap and the VNC path of the bench namespace, for 6 hours.
pub fn claims(jti: String) -> Claims {
    let now = kube_gateway::util::now_unix();
    let mut c = Claims::new(now + 6 * 3600);
    c.nbf = Some(now - 60);
    c.iat = Some(now - 60);
    c.jti = Some(jti);
    c.namespace = "bench".into();
    c.api_groups = Some(vec!["".into(), "subresources.kubevirt.io".into()]);
    c.resources = Some(vec![
        "configmaps".into(),
        "virtualmachineinstances".into(),
        "virtualmachineinstances/vnc".into(),
    ]);
    c.resource_names = Some(vec!["bench".into(), "testvm".into()]);
    c
}

impl Setup {
    /// Generates everything into `dir`.
    pub fn new(dir: &Path, plan: &Plan) -> Result<Self> {
        eprintln!("[bench] generating the RSA-4096 signing key and tokens");
        let key = KeyPair::generate(KeyAlgorithm::Rsa)?;
        let key_file = dir.join("jwt-public.pem");
        std::fs::write(&key_file, key.public_key().to_pem())?;
        let token = jwt::sign(
            &key,
            &claims("5c1e0c1c-bench-0000-0000-000000000000".into()),
        )?;
        let sign_n = |kind: &str| -> Result<Vec<String>> {
            (0..plan.fresh_tokens)
                .map(|i| {
                    Ok(jwt::sign(
                        &key,
                        &claims(format!("5c1e0c1c-bench-{kind}-{i:012}")),
                    )?)
                })
                .collect()
        };
        let (fresh, fresh_micro) = (sign_n("fresh")?, sign_n("micro")?);
        let ca = Authority::new("virt-gateway-bench-ca")?;
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.cert_pem())?;
        let serving = ca.serving(&["localhost"], &["127.0.0.1".parse()?])?;
        let (cert_file, serving_key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert_file, &serving.cert_pem)?;
        std::fs::write(&serving_key_file, &serving.key_pem)?;
        let sa_file = dir.join("sa-token");
        std::fs::write(&sa_file, "bench-serviceaccount-token\n")?;
        let public_dir = dir.join("public");
        std::fs::create_dir_all(&public_dir)?;
        let files = GatewayFiles {
            key_file: key_file.clone(),
            serving_cert: cert_file.clone(),
            serving_key: serving_key_file.clone(),
            public_dir,
        };
        Ok(Self {
            client_tls: tls_client(&ca.cert_pem())?,
            script: wrk::write_script(dir)?,
            key,
            key_file,
            token,
            fresh,
            fresh_micro,
            ca_file,
            cert_file,
            serving_key_file,
            sa_file,
            files,
        })
    }
}
