//! The closed loop against the real kube-apiserver of the test control plane.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use virt_gateway_testenv::{ControlPlane, Options};

use super::closed_loop::{Loop, check_ok, closed_loop};
use super::results::Results;
use super::revocation;
use super::spawn::{Extra, Kind, spawn_gateway};
use super::watched::{self, ApiFiles};
use super::{Env, OBJECT_PATH};
use crate::net::{Target, tls_client};
use crate::procs;
/// Starts the test control plane, gives a ServiceAccount GET on one ConfigMap, and runs the
/// closed loop direct, through ours and through the Go peer.
pub async fn run(env: &Env, results: &mut Results) -> Result<()> {
    let mut cp = ControlPlane::start(Options {
        dir: Some(env.dir.join("control-plane")),
        ..Options::default()
    })
    .await?;
    let r = measure(env, &cp, results).await;
    cp.stop();
    r
}

/// The ConfigMap `bench/bench` (about 1 KiB of JSON, like the minimal upstream's body) and a
/// ServiceAccount allowed to GET it; returns a token of that ServiceAccount.
async fn grant(client: kube::Client) -> Result<String> {
    let meta = |name: &str| ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    };
    let pp = PostParams::default();
    create_namespace(client.clone(), "bench").await?;
    // About 1 KiB of JSON, like the minimal upstream's body.
    let payload: String = std::iter::repeat_n('x', 600).collect();
    Api::<ConfigMap>::namespaced(client.clone(), "bench")
        .create(
            &pp,
            &ConfigMap {
                metadata: meta("bench"),
                data: Some([("payload".to_string(), payload)].into()),
                ..Default::default()
            },
        )
        .await?;
    let sas = Api::<ServiceAccount>::namespaced(client.clone(), "bench");
    sas.create(
        &pp,
        &ServiceAccount {
            metadata: meta("gateway"),
            ..Default::default()
        },
    )
    .await?;
    grant_role(
        client.clone(),
        "bench",
        vec![
            PolicyRule {
                api_groups: Some(vec!["".into()]),
                resources: Some(vec!["configmaps".into()]),
                resource_names: Some(vec!["bench".into()]),
                verbs: vec!["get".into()],
                ..Default::default()
            },
            // The revocation watch of the watched-GateTokens measurement.
            PolicyRule {
                api_groups: Some(vec!["ocgate.yaacov.com".into()]),
                resources: Some(vec!["gatetokens".into()]),
                verbs: vec!["list".into(), "watch".into()],
                ..Default::default()
            },
        ],
    )
    .await?;
    let issued = sas
        .create_token_request("gateway", &pp, &{
            use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
            TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(3 * 3600),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .await?;
    issued
        .status
        .and_then(|s| s.token)
        .context("no token from the TokenRequest API")
}

async fn measure(env: &Env, cp: &ControlPlane, results: &mut Results) -> Result<()> {
    let dir = &env.dir;
    let sa_token = grant(cp.client().await).await?;
    let sa_file = dir.join("apiserver-sa-token");
    std::fs::write(&sa_file, format!("{sa_token}\n"))?;
    let ca_file = dir.join("apiserver-ca.pem");
    std::fs::write(&ca_file, cp.ca_pem())?;
    let api_url = cp.api_server_url().to_string();
    if env.want("apiserver") {
        closed_loop_on(env, cp, &api_url, &ca_file, &sa_file, &sa_token, results).await?;
    }
    // The project's CRDs, for the GateTokens of §4c and §4d.
    cp.install_crds(&std::path::PathBuf::from("deploy/crds"))
        .await;
    let files = ApiFiles {
        api_url: &api_url,
        ca_file: &ca_file,
        sa_file: &sa_file,
    };
    if env.want("watched") {
        let r = watched::run(env, cp, &files, results).await;
        super::record(results, "watched", r);
    }
    if env.want("revocation") {
        let r = revocation::run(env, cp, &files, results).await;
        super::record(results, "revocation", r);
    }
    Ok(())
}

/// §1b: the closed loop direct, through ours and through the Go peer.
async fn closed_loop_on(
    env: &Env,
    cp: &ControlPlane,
    api_url: &str,
    ca_file: &std::path::Path,
    sa_file: &std::path::Path,
    sa_token: &str,
    results: &mut Results,
) -> Result<()> {
    let (dir, files, token) = (&env.dir, &env.setup.files, &env.setup.token);
    let direct = direct_target(cp, api_url, sa_token).await?;
    let (mut gw, gw_addr) = spawn_gateway(
        Kind::Ours,
        &env.args.gateway,
        dir,
        "gateway-apiserver",
        files,
        api_url,
        ca_file,
        sa_file,
        None,
        &Extra::NONE,
    )
    .await?;
    let through = Target {
        name: "gateway".into(),
        addr: gw_addr,
        tls: None,
        prefix: "/k8s".into(),
        authorization: Some(format!("Bearer {token}")),
    };
    check_ok(&through, OBJECT_PATH).await?;
    let mut watch = vec![("gateway".to_string(), gw.pid())];
    let go_gw = match env
        .go
        .start("go-apiserver", api_url, ca_file, sa_file)
        .await
    {
        Ok(g) => g,
        Err(e) => {
            results
                .failures
                .push(("go-apiserver".into(), format!("{e:#}")));
            None
        }
    };
    if let Some((p, _)) = &go_gw {
        watch.push(("go".into(), p.pid()));
    }
    for pid in cp.pids() {
        let name = procs::comm(pid);
        if name == "kube-apiserver" || name == "etcd" {
            watch.push((name, pid));
        }
    }
    let mut targets = vec![direct.clone(), through.clone()];
    targets.extend(go_gw.as_ref().map(|(_, t)| t.clone()));
    let spec = Loop {
        upstream: "kube-apiserver",
        concurrency: &env.plan.concurrency,
        rounds: env.plan.api_rounds,
        secs: env.plan.api_secs,
        warmup: env.plan.warmup_secs.max(1.0),
        script: &env.setup.script,
    };
    let r = closed_loop(&spec, &|_| targets.clone(), &watch, &mut results.http).await;
    gw.stop();
    if let Some((mut p, _)) = go_gw {
        p.stop();
    }
    r
}

/// The API server with the ServiceAccount's token, once RBAC (evaluated from an informer
/// cache) lets it GET the ConfigMap.
async fn direct_target(cp: &ControlPlane, api_url: &str, sa_token: &str) -> Result<Target> {
    let api_addr: SocketAddr = api_url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .parse()
        .context("API server address")?;
    let direct = Target {
        name: "direct".into(),
        addr: api_addr,
        tls: Some(tls_client(cp.ca_pem())?),
        prefix: String::new(),
        authorization: Some(format!("Bearer {sa_token}")),
    };
    // RBAC is evaluated from an informer cache: wait until the binding is seen.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if check_ok(&direct, OBJECT_PATH).await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            bail!("the ServiceAccount cannot GET the ConfigMap after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(direct)
}

/// Creates the namespace `name`.
pub(super) async fn create_namespace(client: kube::Client, name: &str) -> Result<()> {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client)
        .create(&PostParams::default(), &namespace)
        .await?;
    Ok(())
}

/// A Role `gateway` with `rules` in `namespace`, bound to the gateway's ServiceAccount
/// (`bench/gateway`).
pub(super) async fn grant_role(
    client: kube::Client,
    namespace: &str,
    rules: Vec<PolicyRule>,
) -> Result<()> {
    let meta = ObjectMeta {
        name: Some("gateway".into()),
        ..Default::default()
    };
    let pp = PostParams::default();
    Api::<Role>::namespaced(client.clone(), namespace)
        .create(
            &pp,
            &Role {
                metadata: meta.clone(),
                rules: Some(rules),
            },
        )
        .await?;
    Api::<RoleBinding>::namespaced(client, namespace)
        .create(
            &pp,
            &RoleBinding {
                metadata: meta,
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: "gateway".into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: "gateway".into(),
                    namespace: Some("bench".into()),
                    ..Default::default()
                }]),
            },
        )
        .await?;
    Ok(())
}
