//! Issue 17's page ("Your VMs", `web/src/vms.html`) end to end, every part real: the control
//! plane with the delegation policy, the operator, the KubeVirt stand-in with real Xvnc servers,
//! the gateway the operator deploys (which serves the shared links), and Debian's Chromium
//! driven by `web/e2e/page.test.mjs`.
//!
//! The page is served by a second `kube-gateway` with issue 17's sign-in: alice signs in through
//! Dex's own login form (Dex from testenv, trusted by the API server), and the gateway forwards
//! her ID token, so every answer the page shows is the API server's decision for her. The same
//! gateway runs in pass-through mode for bob, a ServiceAccount whose token is his session
//! cookie (forwarded the same way).
//!
//! - alice (`oidc:alice@virt-gateway.test`) may list VMIs in `default` and open testvm's console
//!   (not testvm2's), and may create, read, list and delete GateTokens in the samples' namespace;
//! - bob may do the same, until the browser test takes his console rights away (his RoleBinding
//!   is deleted) while his page is open.
//!
//! The browser test: alice sees testvm and not testvm2, opens its console (canvas live), shares
//! a 10-minute link that works in a second browser context with no sign-in, and Revoke closes it
//! there; bob's share is refused at admission with the delegation policy's reason.

mod common;

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use virt_gateway_api::GateToken;
use virt_gateway_api::gatetoken::CREATED_BY_ANNOTATION;
use virt_gateway_demo::stack::SAMPLES_NAMESPACE;
use virt_gateway_demo::{Stack, StackOptions};
use virt_gateway_testenv::control_plane::{free_port, random_suffix};
use virt_gateway_testenv::process::Process;
use virt_gateway_testenv::{ProviderSettings, helpers, identity_provider};

use common::{build_prerequisites, repo, rule};

const VMS: &str = "default";

async fn role(admin: &Client, ns: &str, name: &str, rules: Vec<PolicyRule>) {
    let role = Role {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..ObjectMeta::default()
        },
        rules: Some(rules),
    };
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap_or_else(|e| panic!("Role {ns}/{name}: {e}"));
}

/// Waits until RBAC lets `user` (an authenticated user) do `verb`.
async fn wait_allowed(admin: &Client, user: &str, access: (&str, &str, &str, &str, &str)) {
    let (verb, group, resource, name, ns) = access;
    helpers::wait_allowed(
        admin,
        user,
        &["system:authenticated"],
        helpers::resource_access(verb, group, resource, name, ns),
    )
    .await;
}

/// Binds the Role `ns/role` to `subject` (`kind`, `name`, `namespace` of a RoleBinding subject).
async fn bind(admin: &Client, ns: &str, role: &str, name: &str, subject: serde_json::Value) {
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{role}-{name}"), "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [subject]
    }))
    .expect("a RoleBinding");
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap_or_else(|e| panic!("RoleBinding {ns}/{role}-{name}: {e}"));
}

/// The two people: alice (signed in with Dex) may open testvm's console; bob (a ServiceAccount)
/// too, until the browser test deletes his RoleBinding. Both may see the VMIs in `default` and
/// manage GateTokens in the samples' namespace. Returns bob's token.
async fn people(stack: &Stack, admin: &Client, alice: &str) -> String {
    let cp = stack.control_plane();
    let bob = cp
        .service_account_token(SAMPLES_NAMESPACE, "bob", 3600)
        .await;
    let vmis = rule(
        "kubevirt.io",
        &["virtualmachineinstances"],
        &["get", "list"],
        &[],
    );
    role(admin, VMS, "vm-viewer", vec![vmis]).await;
    let vnc = &["virtualmachineinstances/vnc"];
    let console = rule("subresources.kubevirt.io", vnc, &["get"], &["testvm"]);
    role(admin, VMS, "console-testvm", vec![console]).await;
    let verbs = &["create", "get", "list", "delete"];
    let links = rule("ocgate.yaacov.com", &["gatetokens"], verbs, &[]);
    role(admin, SAMPLES_NAMESPACE, "share-links", vec![links]).await;
    let people = [
        (
            "alice",
            alice.to_owned(),
            json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": alice}),
        ),
        (
            "bob",
            format!("system:serviceaccount:{SAMPLES_NAMESPACE}:bob"),
            json!({"kind": "ServiceAccount", "name": "bob", "namespace": SAMPLES_NAMESPACE}),
        ),
    ];
    for (name, _, subject) in &people {
        bind(admin, VMS, "vm-viewer", name, subject.clone()).await;
        bind(
            admin,
            SAMPLES_NAMESPACE,
            "share-links",
            name,
            subject.clone(),
        )
        .await;
        bind(admin, VMS, "console-testvm", name, subject.clone()).await;
    }
    for (_, user, _) in &people {
        let list = ("list", "kubevirt.io", "virtualmachineinstances", "", VMS);
        wait_allowed(admin, user, list).await;
        let gt = (
            "delete",
            "ocgate.yaacov.com",
            "gatetokens",
            "",
            SAMPLES_NAMESPACE,
        );
        wait_allowed(admin, user, gt).await;
        let vnc = (
            "get",
            "subresources.kubevirt.io",
            "virtualmachineinstances/vnc",
            "testvm",
            VMS,
        );
        wait_allowed(admin, user, vnc).await;
    }
    bob
}

/// The policy that makes the creator annotation trustworthy, as the operator's install ships it
/// (`deploy/virt-gateway-operator.yaml`); the demo's stack installs only `deploy/crds`.
const CREATOR_POLICY: &str = "virt-gateway-gatetoken-creator";

/// Applies [`CREATOR_POLICY`] and its binding from the install manifest, and waits until the
/// API server enforces it: a dry-run GateToken from bob naming someone else is refused.
async fn install_creator_policy(stack: &Stack, admin: &Client, repo: &std::path::Path, bob: &str) {
    let text = std::fs::read_to_string(repo.join("deploy/virt-gateway-operator.yaml")).unwrap();
    let params = PatchParams::apply("page-e2e").force();
    let mut found = 0;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if value["metadata"]["name"] != CREATOR_POLICY {
            continue;
        }
        found += 1;
        match value["kind"].as_str() {
            Some("ValidatingAdmissionPolicy") => {
                Api::<ValidatingAdmissionPolicy>::all(admin.clone())
                    .patch(CREATOR_POLICY, &params, &Patch::Apply(&value))
                    .await
                    .unwrap();
            }
            Some("ValidatingAdmissionPolicyBinding") => {
                Api::<ValidatingAdmissionPolicyBinding>::all(admin.clone())
                    .patch(CREATOR_POLICY, &params, &Patch::Apply(&value))
                    .await
                    .unwrap();
            }
            other => panic!("unexpected {other:?} named {CREATOR_POLICY}"),
        }
    }
    assert_eq!(
        found, 2,
        "the install manifest has the creator policy and its binding"
    );
    let user = stack.control_plane().client_with_token(bob).await;
    let forged: GateToken = serde_json::from_value(json!({
        "apiVersion": "ocgate.yaacov.com/v1beta1", "kind": "GateToken",
        "metadata": {"generateName": "probe-", "namespace": SAMPLES_NAMESPACE,
                     "annotations": {CREATED_BY_ANNOTATION: "someone-else"}},
        "spec": {"namespace": VMS, "resourceNames": ["testvm"], "resources": ["virtualmachineinstances/vnc"]}
    }))
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    loop {
        match Api::<GateToken>::namespaced(user.clone(), SAMPLES_NAMESPACE)
            .create(&dry_run, &forged)
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains(CREATOR_POLICY) => {
                break;
            }
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "the creator policy is not enforced within 30 s: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nor can the annotation be added afterwards, even by a cluster admin.
    let api = Api::<GateToken>::namespaced(admin.clone(), SAMPLES_NAMESPACE);
    let unnamed: GateToken = serde_json::from_value(json!({
        "apiVersion": "ocgate.yaacov.com/v1beta1", "kind": "GateToken",
        "metadata": {"name": "creator-probe", "namespace": SAMPLES_NAMESPACE},
        "spec": {"namespace": VMS, "resourceNames": ["testvm"]}
    }))
    .unwrap();
    api.create(&PostParams::default(), &unnamed).await.unwrap();
    let add = json!({"metadata": {"annotations": {CREATED_BY_ANNOTATION: "someone-else"}}});
    match api
        .patch(
            "creator-probe",
            &PatchParams::default(),
            &Patch::Merge(&add),
        )
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{}", s.message);
            assert!(
                s.message.contains("cannot be added, changed or removed"),
                "{}",
                s.message
            );
        }
        other => panic!("the creator annotation was added afterwards: {other:?}"),
    }
    api.delete("creator-probe", &Default::default())
        .await
        .unwrap();
}

/// A `kube-gateway` with OIDC sign-in (Dex) and in pass-through mode, on `port`, serving a copy
/// of `web/dist` with a `config.json` that points shared links at the operator's gateway.
struct PageGateway {
    process: Process,
    url: String,
    _dir: tempfile::TempDir,
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

async fn start_page_gateway(stack: &Stack, options: &StackOptions, port: u16) -> PageGateway {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web");
    copy_dir(&options.web_public, &web);
    let config = json!({
        "tokenNamespace": SAMPLES_NAMESPACE,
        "gatewayUrl": stack.gateway_url(),
        "namespace": VMS,
    });
    std::fs::write(web.join("config.json"), config.to_string()).unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, stack.control_plane().ca_pem()).unwrap();
    let dex = stack
        .control_plane()
        .identity_provider("dex")
        .expect("Dex runs");
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, &dex.client().secret).unwrap();
    let dex_ca = dir.path().join("dex-ca.pem");
    std::fs::write(&dex_ca, dex.ca_pem()).unwrap();
    let seal = dir.path().join("signin-key");
    std::fs::write(&seal, random_suffix(48)).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let args = vec![
        format!("--oidc-issuer-url={}", dex.issuer()),
        format!("--oidc-client-id={}", identity_provider::CLIENT_ID),
        format!("--oidc-client-secret-file={}", secret.display()),
        format!("--signin-ca-file={}", dex_ca.display()),
        format!("--signin-key-file={}", seal.display()),
        format!("--signin-redirect-url={url}/auth/callback"),
        format!("-api-server={}", stack.control_plane().api_server_url()),
        format!("-ca-file={}", ca.display()),
        format!("-listen={url}"),
        format!("-public-dir={}", web.display()),
        "-oauth-server-disable".into(),
        "-k8s-bearer-token-passthrough=true".into(),
    ];
    let log = dir.path().join("page-gateway.log");
    let process = Process::spawn("page-gateway", &options.gateway_binary, &args, &log)
        .expect("kube-gateway starts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pass-through gateway did not listen within 30 s:\n{}",
            process.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    PageGateway {
        process,
        url,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_opens_and_shares_only_the_consoles_they_may_open() {
    build_prerequisites();
    let repo = repo();
    // The page gateway's port is known before Dex starts: Dex registers its callback.
    let port = free_port().unwrap();
    let mut options = StackOptions::from_repo(&repo);
    options.identity_providers = vec![ProviderSettings {
        redirect_uris: vec![format!("http://127.0.0.1:{port}/auth/callback")],
        ..ProviderSettings::new("dex")
    }];
    let stack = Stack::start(options.clone(), |step| eprintln!("page e2e: {step}"))
        .await
        .unwrap_or_else(|e| panic!("the stack did not start: {e}"));
    let admin = stack.control_plane().client().await;
    let dex = stack
        .control_plane()
        .identity_provider("dex")
        .expect("Dex runs");
    let (dex_origin, password) = (dex.issuer().to_owned(), dex.user_password().to_owned());
    let bob = people(&stack, &admin, &dex.kubernetes_username()).await;
    install_creator_policy(&stack, &admin, &repo, &bob).await;
    let mut page = start_page_gateway(&stack, &options, port).await;

    let url = page.url.clone();
    let link_gateway = stack.gateway_url().to_owned();
    let revoke_bob = format!(
        "{} -n {VMS} delete rolebinding console-testvm-bob",
        stack.kubectl_prefix()
    );
    let web = repo.join("web");
    let node = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "e2e/page.test.mjs"])
            .current_dir(web)
            .env("PAGE_URL", url)
            .env("LINK_GATEWAY_URL", link_gateway)
            .env("DEX_URL", dex_origin)
            .env("ALICE_EMAIL", identity_provider::USER_EMAIL)
            .env("ALICE_PASSWORD", password)
            .env("TOKEN_BOB", bob)
            .env("REVOKE_BOB_CMD", revoke_bob)
            .status()
            .expect("node runs")
    })
    .await
    .expect("the browser run finishes");
    let page_log = page.process.log_tail(30);
    let gateway_log = virt_gateway_testenv::process::tail(stack.gateway_log(), 30);
    page.process.stop(Duration::from_secs(5));
    stack.stop().await;
    assert!(
        node.success(),
        "the browser test failed ({node})\n--- page gateway (pass-through) ---\n{page_log}\n--- link gateway ---\n{gateway_log}"
    );
}
