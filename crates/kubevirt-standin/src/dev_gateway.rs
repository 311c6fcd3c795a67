//! A tiny stand-in for the gateway's browser-facing side, to test the web app in a real browser
//! without the real gateway, operator or control plane. It is NOT the gateway and checks no
//! signatures: it only speaks the same contract to the page (see `web/README.md`):
//!
//! - static files from the web root, under the Content-Security-Policy `web/README.md`
//!   recommends;
//! - `GET|POST /auth/token` (`token`, `then`): sets the HttpOnly cookie `ocgate-session-token`,
//!   expiring with the token (`Max-Age`), and redirects (302) to `then`, a local path; refused
//!   (403) when the browser says the request comes from another site (`Sec-Fetch-Site`);
//! - `GET /auth/session`: `{"exp", "namespace", "jti"}` for the cookie's token, or 401;
//! - `/k8s/apis/subresources.kubevirt.io/...`: the stand-in's VNC WebSocket (the `/k8s` prefix
//!   removed), refused with a Kubernetes `Status` when the token is missing (401), expired (401,
//!   "token expired"), revoked (401, "token revoked") or for another VM or subresource (403);
//!   an open session is closed with code 4001 "token expired" at expiry and 4003
//!   "token revoked" on revocation;
//! - `POST /dev/revoke`: revokes every token (test hook; the real gateway revokes when the
//!   GateToken is deleted).
//!
//! Tokens are `dev.<vm>.<seconds>` (for example `dev.testvm.45`): valid for VM `<vm>` in
//! namespace `default`, for `<seconds>` from when they were first presented to `/auth/token`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::fleet::Fleet;
use crate::{Error, handler, status};

/// The session cookie (the upstream gateway's name).
pub const COOKIE: &str = "ocgate-session-token";
/// Close code for a session whose token expired.
pub const CLOSE_EXPIRED: u16 = 4001;
/// Close code for a session whose token was revoked.
pub const CLOSE_REVOKED: u16 = 4003;

struct Token {
    vm: String,
    expires: Instant,
    exp_unix: u64,
    revoked: watch::Sender<bool>,
}

struct State {
    fleet: Arc<Fleet>,
    web_root: PathBuf,
    tokens: Mutex<HashMap<String, Arc<Token>>>,
}

/// A running dev gateway; stops when dropped.
pub struct DevGateway {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl DevGateway {
    /// Serves `web_root` and the VMs of `fleet` on `listen` (a loopback address).
    pub async fn start(
        fleet: Arc<Fleet>,
        web_root: &Path,
        listen: SocketAddr,
    ) -> Result<Self, Error> {
        if !listen.ip().is_loopback() {
            return Err(Error::Invalid(format!(
                "the dev gateway listens on loopback only, not {listen}"
            )));
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| Error::Io(format!("cannot bind {listen}: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Io(e.to_string()))?;
        let state = Arc::new(State {
            fleet,
            web_root: web_root.to_path_buf(),
            tokens: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(route(&state, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .http1_only()
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for DevGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Resp = Response<Full<Bytes>>;

async fn route(state: &Arc<State>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/auth/token" => auth_token(state, req).await,
        "/auth/session" => session(state, &req),
        "/dev/revoke" if req.method() == Method::POST => {
            for token in state.lock().values() {
                token.revoked.send_replace(true);
            }
            Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Full::new(Bytes::new()))
                .expect("valid response")
        }
        p if p.starts_with("/k8s/") => api(state, req),
        _ => static_file(&state.web_root, &path, req.method()).await,
    }
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Token>>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a `dev.<vm>.<seconds>` token the first time it is seen.
    fn register(&self, raw: &str) -> Option<Arc<Token>> {
        let mut tokens = self.lock();
        if let Some(token) = tokens.get(raw) {
            return Some(token.clone());
        }
        let mut parts = raw.split('.');
        let (Some("dev"), Some(vm), Some(secs), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let secs: u64 = secs.parse().ok()?;
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let token = Arc::new(Token {
            vm: vm.to_string(),
            expires: Instant::now() + Duration::from_secs(secs),
            exp_unix: now_unix + secs,
            revoked: watch::channel(false).0,
        });
        tokens.insert(raw.to_string(), token.clone());
        Some(token)
    }

    /// The cookie's token if it is valid now, or the refusal (always 401, as the gateway).
    fn token_of<B>(&self, req: &Request<B>) -> Result<Arc<Token>, &'static str> {
        let raw = cookie(req).ok_or("no token: open your access link again")?;
        let token = self.lock().get(&raw).cloned().ok_or("invalid token")?;
        if *token.revoked.borrow() {
            return Err("token revoked");
        }
        if Instant::now() >= token.expires {
            return Err("token expired");
        }
        Ok(token)
    }
}

fn cookie<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

fn form_value(form: &str, key: &str) -> Option<String> {
    form.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(&v.replace('+', " ")))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi * 16 + lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn auth_token(state: &Arc<State>, req: Request<Incoming>) -> Resp {
    // As the gateway does (login CSRF): no session from another site's link, frame or form.
    let fetch_site = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    if fetch_site != "same-origin" && fetch_site != "none" {
        return status::failure(
            StatusCode::FORBIDDEN,
            "cross-site request refused: sign in from the gateway's own login page",
        );
    }
    let query = req.uri().query().unwrap_or("").to_string();
    let form = if req.method() == Method::POST {
        match Limited::new(req.into_body(), 64 * 1024).collect().await {
            Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
            Err(_) => return status::failure(StatusCode::BAD_REQUEST, "unreadable form"),
        }
    } else {
        String::new()
    };
    let get = |key: &str| form_value(&form, key).or_else(|| form_value(&query, key));
    let token = get("token").unwrap_or_default();
    let then = get("then").filter(|t| !t.is_empty()).unwrap_or("/".into());
    if !then.starts_with('/') || then.starts_with("//") || then.contains('\\') {
        return status::failure(StatusCode::BAD_REQUEST, "then must be a local path");
    }
    let token = token.trim().trim_matches('"').to_string();
    // As the gateway does, the cookie expires with the token.
    let max_age = state
        .register(&token)
        .map(|t| {
            format!(
                "; Max-Age={}",
                t.expires
                    .saturating_duration_since(Instant::now())
                    .as_secs()
            )
        })
        .unwrap_or_default();
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, then)
        .header(
            header::SET_COOKIE,
            format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax{max_age}"),
        )
        .body(Full::new(Bytes::new()))
        .expect("valid response")
}

fn session(state: &Arc<State>, req: &Request<Incoming>) -> Resp {
    match state.token_of(req) {
        Err(why) => status::failure(StatusCode::UNAUTHORIZED, why),
        Ok(token) => Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-store")
            .body(Full::new(Bytes::from(
                json!({"exp": token.exp_unix, "namespace": "default", "jti": format!("dev-{}", token.vm)})
                    .to_string(),
            )))
            .expect("valid response"),
    }
}

fn api(state: &Arc<State>, mut req: Request<Incoming>) -> Resp {
    let token = match state.token_of(&req) {
        Ok(token) => token,
        Err(why) => return status::failure(StatusCode::UNAUTHORIZED, why),
    };
    let path = req.uri().path().trim_start_matches("/k8s").to_string();
    let allowed = handler::parse_path(&path)
        .is_some_and(|t| t.namespace == "default" && t.name == token.vm && t.subresource == "vnc")
        && req.method() == Method::GET;
    if !allowed {
        return status::failure(
            StatusCode::FORBIDDEN,
            &format!(
                "not allowed: this token grants the VNC console of default/{} only",
                token.vm
            ),
        );
    }
    let pq = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    match pq.parse() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return status::failure(StatusCode::BAD_REQUEST, "malformed path"),
    }
    let stop = move || {
        let mut revoked = token.revoked.subscribe();
        let expires = token.expires;
        async move {
            let frame = |code: u16, reason: &str| CloseFrame {
                code: CloseCode::from(code),
                reason: reason.to_string().into(),
            };
            tokio::select! {
                _ = tokio::time::sleep_until(expires) => frame(CLOSE_EXPIRED, "token expired"),
                _ = revoked.wait_for(|r| *r) => frame(CLOSE_REVOKED, "token revoked"),
            }
        }
    };
    handler::handle(&state.fleet, req, stop)
}

async fn static_file(root: &Path, path: &str, method: &Method) -> Resp {
    if method != Method::GET && method != Method::HEAD {
        return status::failure(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let relative = Path::new(path.trim_start_matches('/'));
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return status::failure(StatusCode::NOT_FOUND, "not found");
    }
    let mut file = root.join(relative);
    if path.ends_with('/') || path.is_empty() {
        file = file.join("index.html");
    }
    let content_type = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("txt") | Some("md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
    match tokio::fs::read(&file).await {
        Ok(bytes) => Response::builder()
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CACHE_CONTROL, "no-cache")
            .header("x-content-type-options", "nosniff")
            // The policy web/README.md recommends to the gateway: the pages must work under it.
            .header(
                "content-security-policy",
                "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
            )
            .body(Full::new(Bytes::from(bytes)))
            .expect("valid response"),
        Err(_) => status::failure(StatusCode::NOT_FOUND, "not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_forms() {
        assert_eq!(
            form_value(
                "token=a.b&then=%2FnoVNC%2Fvnc_lite.html%3Fpath%3Dk8s",
                "then"
            )
            .unwrap(),
            "/noVNC/vnc_lite.html?path=k8s"
        );
        assert_eq!(form_value("a=1+2", "a").unwrap(), "1 2");
        assert_eq!(form_value("a=%zz", "a").unwrap(), "%zz");
        assert_eq!(form_value("a=%4", "a").unwrap(), "%4");
        assert!(form_value("a=1", "b").is_none());
    }
}
