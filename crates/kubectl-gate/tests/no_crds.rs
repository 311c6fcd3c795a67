//! Against a control plane where virt-gateway is not installed (this test binary has its own
//! control plane, and nothing here installs the CRDs): every command says so and how to fix it.

mod common;

use common::*;
use virt_gateway_testenv::ControlPlane;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_says_the_crds_are_missing() {
    let cp = ControlPlane::shared().await;
    let ns = cp.fresh_namespace().await;
    let server = format!("{ns}/gs");
    for args in [
        vec!["servers", "-n", ns.as_str()],
        vec!["servers", "-A"],
        vec!["list", "-n", ns.as_str()],
        vec!["list", "-A"],
        vec!["token", "testvm", "--server-namespace", ns.as_str()],
        vec!["token", "testvm", "--server", server.as_str()],
        vec!["revoke", "t1", "-n", ns.as_str()],
        vec!["revoke", "t1", "-n", ns.as_str(), "--delete"],
    ] {
        let out = gate(cp, &args).await;
        let err = out.fails(1);
        assert!(
            err.contains("error: the virt-gateway API (ocgate.yaacov.com/v1beta1: GateServer, GateToken) is not installed on this cluster"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("kubectl apply -f deploy/virt-gateway-operator.yaml"),
            "{args:?}: {err}"
        );
    }
}
