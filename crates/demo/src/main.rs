//! `make demo`: the whole product on this machine, and a console link that works.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use virt_gateway_demo::{Stack, StackOptions};

const VNC_PATH: &str =
    "/k8s/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances";

#[tokio::main]
async fn main() -> ExitCode {
    let repo = std::env::var_os("VIRT_GATEWAY_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."));
    let repo = repo.canonicalize().unwrap_or(repo);
    let dir = repo.join(".demo");
    let mut options = StackOptions::from_repo(&repo);
    options.dir = Some(dir.clone());

    let started = Instant::now();
    let step = |what: &str| eprintln!("[demo {:>5.1}s] {what}", started.elapsed().as_secs_f64());
    let stack = match Stack::start(options, step).await {
        Ok(stack) => stack,
        Err(e) => {
            eprintln!("\n[demo] failed: {e}");
            eprintln!("[demo] logs are in {}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    let setup = started.elapsed();
    let url = stack.gateway_url().to_string();
    let token = stack.sample_token.clone();

    // Show, not tell: one allowed and one refused request through the gateway.
    let allowed = websocket_probe(&url, &format!("{VNC_PATH}/testvm/vnc"), &token).await;
    let refused = websocket_probe(&url, &format!("{VNC_PATH}/testvm2/vnc"), &token).await;

    println!();
    println!(
        "virt-gateway demo is running (set up in {:.1}s).",
        setup.as_secs_f64()
    );
    println!();
    println!("Open testvm's console (the seed GateToken `gatetoken-sample` allows exactly that):");
    println!();
    println!("  {}", stack.console_link(&token, "testvm"));
    println!();
    println!("The gateway runs with the operator's command line:");
    println!("  {}", stack.gateway_command_line().join(" "));
    println!();
    println!("Allowed — testvm's VNC WebSocket answers with the RFB banner:");
    println!(
        "  TOKEN=$({} -n kube-gateway get gatetoken gatetoken-sample -o jsonpath='{{.status.token}}')",
        stack.kubectl_prefix()
    );
    println!("  {}", curl_line(&url, "testvm"));
    println!("  => {allowed}");
    println!("Refused — the same token for testvm2:");
    println!("  {}", curl_line(&url, "testvm2"));
    println!("  => {refused}");
    println!();
    println!("Use the cluster while the demo runs:");
    println!(
        "  export KUBECONFIG={} PATH={}:$PATH",
        stack.control_plane().kubeconfig().display(),
        stack
            .control_plane()
            .binary("kubectl")
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    println!("  kubectl get gateservers,gatetokens -A");
    println!(
        "logs: {} (operator), {} (gateway)",
        stack.operator_log().display(),
        stack.gateway_log().display()
    );
    println!();
    println!("Press Ctrl-C to stop and clean up.");

    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match terminate.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
    eprintln!("\n[demo] stopping");
    stack.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    ExitCode::SUCCESS
}

fn curl_line(url: &str, vm: &str) -> String {
    format!(
        "curl -s --max-time 2 --http1.1 -o - -w '\\n%{{http_code}}\\n' -H 'Authorization: Bearer '$TOKEN -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' -H 'Sec-WebSocket-Protocol: plain.kubevirt.io' {url}{VNC_PATH}/{vm}/vnc"
    )
}

/// Opens the VNC WebSocket through the gateway and describes what came back: `101` and the VNC
/// server's first bytes, or the refusal's status line and message.
async fn websocket_probe(url: &str, path: &str, token: &str) -> String {
    let authority = url.trim_start_matches("http://");
    let Ok(mut stream) = tokio::net::TcpStream::connect(authority).await else {
        return "cannot connect to the gateway".into();
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: plain.kubevirt.io\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return "the gateway closed the connection".into();
    }
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(3).any(|w| w == b"RFB") || got.ends_with(b"}") {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&got);
    let status = text.lines().next().unwrap_or("no answer").to_string();
    if status.contains(" 101 ") {
        // The first WebSocket frame carries the RFB ProtocolVersion ("RFB 003.008\n").
        let banner = text
            .find("RFB ")
            .map(|i| text[i..].chars().take(11).collect::<String>())
            .unwrap_or_default();
        format!("{status}, then the VNC server says {banner:?}")
    } else {
        // The refusal is a Kubernetes Status object; show its message.
        let message = text
            .split_once("\r\n\r\n")
            // The body may be chunked: take the JSON object inside it.
            .and_then(|(_, body)| Some(&body[body.find('{')?..=body.rfind('}')?]))
            .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok())
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_default();
        format!("{status}: {message}")
    }
}
