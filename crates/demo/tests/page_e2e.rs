//! Issue 17's page ("Your VMs", `web/src/vms.html`) end to end, every part real: the control
//! plane with the delegation policy, the operator, the KubeVirt stand-in with real Xvnc servers,
//! the gateway the operator deploys (which serves the shared links), and Debian's Chromium
//! driven by `web/e2e/page.test.mjs`.
//!
//! The person is a real Kubernetes identity (a ServiceAccount token from the TokenRequest API)
//! reaching the page through a second `kube-gateway` in pass-through mode, which forwards the
//! session cookie as the bearer token: exactly what a signed-in session does (issue 17's OIDC
//! sign-in forwards the person's ID token the same way), so every answer the page shows is the
//! API server's decision for that person.
//!
//! - alice may list VMIs in `default` and open testvm's console (not testvm2's), and may create,
//!   read, list and delete GateTokens in the samples' namespace;
//! - bob may do the same, until the browser test takes his console rights away (his RoleBinding
//!   is deleted) while his page is open.
//!
//! The browser test: alice sees testvm and not testvm2, opens its console (canvas live), shares
//! a 10-minute link that works in a second browser context with no sign-in, and Revoke closes it
//! there; bob's share is refused at admission with the delegation policy's reason.

mod common;

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::json;
use virt_gateway_demo::stack::SAMPLES_NAMESPACE;
use virt_gateway_demo::{Stack, StackOptions};
use virt_gateway_testenv::control_plane::free_port;
use virt_gateway_testenv::helpers;
use virt_gateway_testenv::process::Process;

use common::{build_prerequisites, repo};

const VMS: &str = "default";

fn rule(group: &str, resources: &[&str], verbs: &[&str], names: &[&str]) -> PolicyRule {
    let strings = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        resource_names: (!names.is_empty()).then(|| strings(names)),
        non_resource_urls: None,
    }
}

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

/// Waits until RBAC lets ServiceAccount `user` (of the samples' namespace) do `verb`.
async fn wait_allowed(admin: &Client, user: &str, access: (&str, &str, &str, &str, &str)) {
    let (verb, group, resource, name, ns) = access;
    helpers::wait_allowed(
        admin,
        &format!("system:serviceaccount:{SAMPLES_NAMESPACE}:{user}"),
        &["system:serviceaccounts", "system:authenticated"],
        helpers::resource_access(verb, group, resource, name, ns),
    )
    .await;
}

/// Binds the Role `ns/role` to the ServiceAccount `user` of the samples' namespace.
async fn bind(admin: &Client, ns: &str, role: &str, user: &str) {
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{role}-{user}"), "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": user, "namespace": SAMPLES_NAMESPACE}]
    }))
    .expect("a RoleBinding");
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap_or_else(|e| panic!("RoleBinding {ns}/{role}-{user}: {e}"));
}

/// The two people: alice may open testvm's console, bob may open none; both may see the VMIs
/// in `default` and manage GateTokens in the samples' namespace. Returns their tokens.
async fn people(stack: &Stack, admin: &Client) -> (String, String) {
    let cp = stack.control_plane();
    let alice = cp
        .service_account_token(SAMPLES_NAMESPACE, "alice", 3600)
        .await;
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
    for user in ["alice", "bob"] {
        bind(admin, VMS, "vm-viewer", user).await;
        bind(admin, SAMPLES_NAMESPACE, "share-links", user).await;
    }
    bind(admin, VMS, "console-testvm", "alice").await;
    bind(admin, VMS, "console-testvm", "bob").await;
    for user in ["alice", "bob"] {
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
    }
    let vnc = (
        "get",
        "subresources.kubevirt.io",
        "virtualmachineinstances/vnc",
        "testvm",
        VMS,
    );
    wait_allowed(admin, "alice", vnc).await;
    wait_allowed(admin, "bob", vnc).await;
    (alice, bob)
}

/// A `kube-gateway` in pass-through mode serving a copy of `web/dist` with a `config.json` that
/// points shared links at the operator's gateway: the page as a signed-in person reaches it.
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

async fn start_page_gateway(stack: &Stack, options: &StackOptions) -> PageGateway {
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
    let port = free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let args = vec![
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
    let options = StackOptions::from_repo(&repo);
    let stack = Stack::start(options.clone(), |step| eprintln!("page e2e: {step}"))
        .await
        .unwrap_or_else(|e| panic!("the stack did not start: {e}"));
    let admin = stack.control_plane().client().await;
    let (alice, bob) = people(&stack, &admin).await;
    let mut page = start_page_gateway(&stack, &options).await;

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
            .env("TOKEN_ALICE", alice)
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
