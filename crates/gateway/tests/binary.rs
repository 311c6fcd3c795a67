//! The `kube-gateway` binary itself: Gen B command lines start it, bad ones fail clearly with a
//! non-zero exit, audit lines go to stdout, and SIGTERM shuts it down gracefully with exit 0.
//! (No control plane needed: nothing here reaches the API server.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use virt_gateway_auth::keys::{KeyAlgorithm, KeyPair};

const BIN: &str = env!("CARGO_BIN_EXE_kube-gateway");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bad_command_lines_fail_clearly_and_help_succeeds() {
    let (code, _, err) = run(&["-api-server=https://127.0.0.1:1", "-no-such-flag=1"]);
    assert_eq!(code, 2);
    assert!(err.contains("-no-such-flag"), "{err}");
    let (code, _, err) = run(&["--no-such-flag"]);
    assert_eq!(code, 2);
    assert!(err.contains("--no-such-flag"), "{err}");
    let (code, _, err) = run(&["-jwt-token-key-file=/k.pem", "-listen=http://127.0.0.1:0"]);
    assert_ne!(
        code, 0,
        "a missing API server is an error (unlike upstream's exit 0)"
    );
    assert!(err.contains("missing API server address"), "{err}");
    let (code, _, err) = run(&[
        "-api-server=https://127.0.0.1:1",
        "-listen=http://127.0.0.1:0",
        "-jwt-token-key-file=/nonexistent.pem",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("/nonexistent.pem"), "{err}");
    let (code, _, err) = run(&[
        "-api-server=https://127.0.0.1:1",
        "-k8s-bearer-token-passthrough=true",
        "--revocation-namespaces=ns",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("contradictory"), "{err}");
    let (code, out, _) = run(&["-help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("--api-server") && out.contains("KUBE_GATEWAY_API_SERVER"),
        "{out}"
    );
}

#[test]
fn gen_b_flags_start_it_audit_goes_to_stdout_and_sigterm_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let key_file = dir.path().join("cert.pem");
    std::fs::write(&key_file, key.public_key().to_pem()).unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "sa-token\n").unwrap();
    let port = free_port();
    let metrics_port = free_port();
    let mut child = Command::new(BIN)
        .args([
            "-api-server=https://127.0.0.1:1",
            "-oauth-client-id=gw",
            "-oauth-client-secret=gw-oauth-secret",
            &format!("-listen=http://127.0.0.1:{port}"),
            "-base-address=https://gateway.example.com",
            &format!("-jwt-token-key-file={}", key_file.display()),
            "-k8s-bearer-token-file",
            &token_file.display().to_string(),
            "-k8s-bearer-token-passthrough=false",
            "-skip-verify-tls=false",
        ])
        .env(
            "KUBE_GATEWAY_METRICS_LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        )
        .env("KUBE_GATEWAY_LOG_FORMAT", "json")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let http = |port: u16, request: &str| -> Option<String> {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        tcp.write_all(request.as_bytes()).ok()?;
        let mut out = String::new();
        tcp.read_to_string(&mut out).ok()?;
        Some(out)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(answer) = http(
            port,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ) && answer.starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the binary did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let token = "eyJhbGciOiJub25lIn0.eyJleHAiOjF9.c2VjcmV0LXNpZ25hdHVyZS1ieXRlcw";
    let answer = http(
        port,
        &format!("GET /k8s/api/v1/namespaces/default/pods?access_token={token} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("\"kind\":\"Status\""), "{answer}");
    let metrics = http(
        metrics_port,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert!(
        metrics.contains(
            "kube_gateway_requests_total{kind=\"api\",outcome=\"denied\",reason=\"no_token\"} 1"
        ),
        "{metrics}"
    );

    // The audit line is on stdout, without the query string.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let record: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["path"], "/k8s/api/v1/namespaces/default/pods");
    assert_eq!(record["decision"], "deny");
    assert_eq!(record["reason"], "no_token");
    assert_eq!(record["status"], 401);

    // SIGTERM: graceful shutdown, exit 0.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the binary did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(0));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    for text in [&line, &rest, &stderr] {
        assert!(
            !text.contains(token) && !text.contains("c2VjcmV0LXNpZ25hdHVyZS1ieXRlcw"),
            "the query token was logged"
        );
        assert!(
            !text.contains("sa-token"),
            "the ServiceAccount token was logged"
        );
        assert!(
            !text.contains("gw-oauth-secret"),
            "the OAuth client secret was logged"
        );
    }
    assert!(stderr.contains("OpenShift OAuth login is off"), "{stderr}");
}
