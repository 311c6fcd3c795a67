//! No VNC server outlives its owner, and the binary works with nothing but a kubeconfig.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{subresource, websocket};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::Api;
use kubevirt_standin::rfb::Client as Rfb;
use kubevirt_standin::{Fleet, PLAIN_PROTOCOL, Rgb};
use serde_json::Value;
use virt_gateway_testenv::ControlPlane;
use virt_gateway_testenv::process::{self, alive};

fn wait_gone(pids: &[u32]) {
    process::wait_all_gone(pids, Duration::from_secs(15));
}

/// Starts the binary and reads its `{"ready":true,...}` line.
fn start_binary(args: &[&str]) -> (Child, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubevirt-standin"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("no ready line from the binary ({e}): {line:?}"));
    assert_eq!(ready["ready"], true);
    (child, ready)
}

fn pids(ready: &Value) -> Vec<u32> {
    ready["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|vm| vm["pid"].as_u64().unwrap() as u32)
        .collect()
}

#[tokio::test]
async fn dropping_a_fleet_stops_its_vnc_servers() {
    let fleet = Fleet::new(None).unwrap();
    let vm = fleet
        .add("default", "vm-drop", Rgb::new(1, 2, 3))
        .await
        .unwrap();
    let pid = vm.server().pid();
    let addr = vm.server().addr();
    assert!(addr.ip().is_loopback());
    // A real RFB server with the VM's colour.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut rfb = Rfb::handshake(tcp).await.unwrap();
    assert_eq!(
        rfb.framebuffer().await.unwrap().pixel(600, 450),
        Rgb::new(1, 2, 3)
    );
    drop(rfb);
    assert!(alive(pid));
    drop(vm);
    drop(fleet);
    wait_gone(&[pid]);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[test]
fn killing_the_binary_outright_kills_its_vnc_servers() {
    let web_root = tempfile::tempdir().unwrap();
    std::fs::write(web_root.path().join("index.html"), "<!doctype html>").unwrap();
    // Logs inside our temporary directory: a SIGKILLed binary cannot remove its own.
    let logs = web_root.path().join("logs");
    let (mut child, ready) = start_binary(&[
        "dev-gateway",
        "--web-root",
        web_root.path().to_str().unwrap(),
        "--log-dir",
        logs.to_str().unwrap(),
    ]);
    let pids = pids(&ready);
    assert_eq!(pids.len(), 2, "testvm and testvm2: {ready}");
    assert!(pids.iter().all(|p| alive(*p)));
    child.kill().unwrap(); // SIGKILL: no cleanup code runs; PR_SET_PDEATHSIG does it.
    child.wait().unwrap();
    wait_gone(&pids);
}

#[tokio::test]
async fn the_binary_registers_with_only_a_kubeconfig_and_cleans_up_on_sigterm() {
    let cp = ControlPlane::shared().await;
    let colour = Rgb::new(0x00, 0x80, 0x80);
    let kubeconfig = cp.kubeconfig().to_str().unwrap().to_string();
    let (mut child, ready) = tokio::task::spawn_blocking(move || {
        start_binary(&["run", "--kubeconfig", &kubeconfig, "--vm", "binvm=#008080"])
    })
    .await
    .unwrap();
    let pids = pids(&ready);
    assert_eq!(pids.len(), 1);

    let (ws, _) = websocket(
        cp,
        &subresource("v1", "default", "binvm", "vnc"),
        Some(PLAIN_PROTOCOL),
    )
    .await
    .unwrap();
    let mut rfb = Rfb::handshake(ws).await.unwrap();
    assert_eq!(rfb.server_init().name, "binvm");
    assert_eq!(rfb.framebuffer().await.unwrap().pixel(320, 240), colour);
    drop(rfb);

    // SIGTERM: the APIServices are deleted and Xvnc stops.
    // SAFETY: kill(2) on the child we started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    wait_gone(&pids);
    let api_services = Api::<APIService>::all(cp.client().await);
    for name in [
        "v1.subresources.kubevirt.io",
        "v1alpha3.subresources.kubevirt.io",
    ] {
        let err = api_services.get(name).await.unwrap_err();
        assert!(
            matches!(err, kube::Error::Api(ref s) if s.code == 404),
            "{name}: {err}"
        );
    }
}
