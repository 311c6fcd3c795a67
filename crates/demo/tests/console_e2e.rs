//! Issue 6's end-to-end test with every part real: the control plane, the operator (its binary)
//! signing the seed GateToken and the test's tokens, the KubeVirt stand-in with real Xvnc servers
//! behind the aggregation layer, the gateway run with the command line and mounts the operator
//! wrote into the GateServer's Deployment (as `make demo` does), and Debian's Chromium driven by
//! `web/e2e/gateway.test.mjs`:
//!
//! 1. the seed GateServer and GateToken are applied as written and become Ready;
//! 2. the console link (`/login.html#token=…&then=/noVNC/vnc_lite.html?path=…testvm/vnc`) opens
//!    after the person clicks "Open console"; the upstream `/auth/token?token=…` link still works;
//! 3. the console reaches "connected" and the canvas shows testvm's colour (screenshot saved);
//! 4. with the same cookie, testvm2 is refused and the page says so;
//! 5. deleting the GateToken ends the open session and the page says it was revoked;
//! 6. a 45-second token runs out: the session ends at expiry, the page says so, and reconnecting
//!    is refused.
//!
//! Needs Chromium and Xvnc (`scripts/install-system-deps.sh`) and node; builds the operator, the
//! gateway and the web app if they are not up to date.

mod common;

use std::process::Command;

use common::{build_prerequisites, repo};
use virt_gateway_demo::stack::{SAMPLE_TOKEN, SAMPLES_NAMESPACE};
use virt_gateway_demo::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_opens_the_console_link_and_sees_only_that_vm_until_the_token_ends() {
    build_prerequisites();
    let repo = repo();

    let stack = Stack::start(StackOptions::from_repo(&repo), |step| {
        eprintln!("console e2e: {step}")
    })
    .await
    .unwrap_or_else(|e| panic!("the stack did not start: {e}"));

    // The short token is minted last so that it still has time left when the browser reaches
    // step 6; the operator signs it like any GateToken.
    let short = stack
        .create_vnc_token("e2e-short", "testvm", 45)
        .await
        .expect("the operator signs a 45-second token");
    let revoke = format!(
        "{} -n {SAMPLES_NAMESPACE} delete gatetoken {SAMPLE_TOKEN}",
        stack.kubectl_prefix()
    );
    let url = stack.gateway_url().to_string();
    let token = stack.sample_token.clone();
    let web = repo.join("web");
    let node = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "e2e/gateway.test.mjs"])
            .current_dir(web)
            .env("GATEWAY_URL", url)
            .env("TOKEN_TESTVM", token)
            .env("TOKEN_SHORT", short)
            .env("REVOKE_CMD", revoke)
            .env("REQUIRE_SESSION_ENDPOINT", "1")
            .status()
            .expect("node runs")
    })
    .await
    .expect("the browser run finishes");
    let gateway_log = virt_gateway_testenv::process::tail(stack.gateway_log(), 40);
    let operator_log = virt_gateway_testenv::process::tail(stack.operator_log(), 20);
    stack.stop().await;
    assert!(
        node.success(),
        "the browser test failed ({node})\n--- kube-gateway ---\n{gateway_log}\n--- operator ---\n{operator_log}"
    );
}
