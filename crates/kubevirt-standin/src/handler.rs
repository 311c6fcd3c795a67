//! The `subresources.kubevirt.io` requests the stand-in answers, as KubeVirt's virt-api does:
//!
//! - `GET /apis/subresources.kubevirt.io/{v1,v1alpha3}/namespaces/{ns}/virtualmachineinstances/{name}/vnc`
//!   upgrades to a WebSocket with the subprotocol `plain.kubevirt.io` (required: 400 without it)
//!   carrying raw RFB bytes to and from the VM's Xvnc. An unknown VMI is a 404 `Status`. One
//!   session per VMI: a new connection takes over the open one, and with
//!   `?preserveSession=true` it is refused with 503 instead (checked before the upgrade, so a
//!   plain GET with that parameter also tells whether the VM is busy).
//! - `.../{name}/console` upgrades the same way and only greets with a login prompt: it exists so
//!   that tests can prove a token for `vnc` cannot open it.
//! - Anything else is a 404 `Status`.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use virt_gateway_testenv::aggregated::Handler;
use virt_gateway_testenv::websocket;

use crate::fleet::{Fleet, bridge};
use crate::{PLAIN_PROTOCOL, SUBRESOURCES_GROUP, status};

/// API versions of `subresources.kubevirt.io` the stand-in answers.
pub const VERSIONS: &[&str] = &["v1", "v1alpha3"];

/// A parsed subresource request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub version: String,
    pub namespace: String,
    pub name: String,
    pub subresource: String,
}

/// Parses `/apis/subresources.kubevirt.io/<version>/namespaces/<ns>/virtualmachineinstances/<name>/<sub>`.
pub fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        [
            "apis",
            group,
            version,
            "namespaces",
            namespace,
            "virtualmachineinstances",
            name,
            subresource,
        ] if *group == SUBRESOURCES_GROUP
            && VERSIONS.contains(version)
            && !namespace.is_empty()
            && !name.is_empty() =>
        {
            Some(Target {
                version: version.to_string(),
                namespace: namespace.to_string(),
                name: name.to_string(),
                subresource: subresource.to_string(),
            })
        }
        _ => None,
    }
}

/// Whether the query asks for `preserveSession=true`.
pub fn preserve_session(query: Option<&str>) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .any(|(k, v)| k == "preserveSession" && v.eq_ignore_ascii_case("true"))
}

/// The handler to register with [`virt_gateway_testenv::AggregatedApi`].
pub fn aggregated_handler(fleet: Arc<Fleet>) -> Handler {
    Arc::new(move |req| {
        let response = handle(&fleet, req, std::future::pending::<CloseFrame>);
        Box::pin(async move { response })
    })
}

/// Answers one request (its path without any gateway prefix). For an accepted VNC session,
/// `stop()` is called once to make a future that, when it completes, ends the session with the
/// close frame it yields (the dev gateway uses it for token expiry and revocation; behind the
/// API server it never completes).
pub fn handle<B, S, F>(fleet: &Fleet, mut req: Request<B>, stop: S) -> Response<Full<Bytes>>
where
    S: FnOnce() -> F,
    F: Future<Output = CloseFrame> + Send + 'static,
{
    let Some(target) = parse_path(req.uri().path()) else {
        return status::failure(
            StatusCode::NOT_FOUND,
            "the server could not find the requested resource",
        );
    };
    if req.method() != Method::GET {
        return status::failure(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!(
                "{} is not supported on {}",
                req.method(),
                target.subresource
            ),
        );
    }
    let Some(vm) = fleet.get(&target.namespace, &target.name) else {
        return status::vmi_not_found(&target.name);
    };
    let preserve = preserve_session(req.uri().query());
    match target.subresource.as_str() {
        "vnc" => {
            if preserve && vm.busy() {
                return busy(&target);
            }
            if let Some(refusal) = precheck_upgrade(&req) {
                return refusal;
            }
            let (response, pending) = match websocket::accept(&mut req, PLAIN_PROTOCOL) {
                Ok(accepted) => accepted,
                Err(refusal) => return refusal,
            };
            let Some(claim) = vm.claim(preserve) else {
                return busy(&target);
            };
            let stop = stop();
            tokio::spawn(async move {
                match pending.socket().await {
                    Ok(ws) => {
                        let ended = bridge(ws, claim, stop).await;
                        tracing::debug!(vm = %target.name, ?ended, "VNC session ended");
                    }
                    Err(e) => tracing::warn!("WebSocket upgrade failed: {e}"),
                }
            });
            response
        }
        "console" => {
            if let Some(refusal) = precheck_upgrade(&req) {
                return refusal;
            }
            let (response, pending) = match websocket::accept(&mut req, PLAIN_PROTOCOL) {
                Ok(accepted) => accepted,
                Err(refusal) => return refusal,
            };
            let banner = format!(
                "\r\nVM {} serial console (kubevirt-standin)\r\n{} login: ",
                target.name, target.name
            );
            tokio::spawn(async move {
                let Ok(mut ws) = pending.socket().await else {
                    return;
                };
                let _ = ws.send(Message::binary(banner.into_bytes())).await;
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_close() {
                        break;
                    }
                }
            });
            response
        }
        other => status::failure(
            StatusCode::NOT_FOUND,
            &format!("unknown subresource {other:?}"),
        ),
    }
}

fn busy(target: &Target) -> Response<Full<Bytes>> {
    status::failure(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!(
            "VNC session of VirtualMachineInstance {}/{} is in use and preserveSession=true was requested",
            target.namespace, target.name
        ),
    )
}

/// The refusals KubeVirt gives before upgrading, as `Status` bodies.
fn precheck_upgrade<B>(req: &Request<B>) -> Option<Response<Full<Bytes>>> {
    if !websocket::is_upgrade(req) {
        return Some(status::failure(
            StatusCode::BAD_REQUEST,
            "this subresource is a WebSocket: expected a GET with Upgrade: websocket",
        ));
    }
    if !websocket::offered_protocols(req)
        .iter()
        .any(|p| p == PLAIN_PROTOCOL)
    {
        return Some(status::failure(
            StatusCode::BAD_REQUEST,
            &format!("the WebSocket subprotocol {PLAIN_PROTOCOL} is required"),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vnc_paths_of_both_versions_only() {
        let t = parse_path(
            "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/vnc",
        )
        .unwrap();
        assert_eq!(
            t,
            Target {
                version: "v1".into(),
                namespace: "default".into(),
                name: "testvm".into(),
                subresource: "vnc".into()
            }
        );
        assert!(parse_path("/apis/subresources.kubevirt.io/v1alpha3/namespaces/a/virtualmachineinstances/b/console").is_some());
        assert!(
            parse_path(
                "/apis/subresources.kubevirt.io/v2/namespaces/a/virtualmachineinstances/b/vnc"
            )
            .is_none()
        );
        assert!(
            parse_path("/apis/kubevirt.io/v1/namespaces/a/virtualmachineinstances/b/vnc").is_none()
        );
        assert!(
            parse_path("/apis/subresources.kubevirt.io/v1/namespaces/a/virtualmachineinstances/b")
                .is_none()
        );
        assert!(
            parse_path(
                "/apis/subresources.kubevirt.io/v1/namespaces//virtualmachineinstances/b/vnc"
            )
            .is_none()
        );
    }

    #[test]
    fn preserve_session_needs_true() {
        assert!(preserve_session(Some("preserveSession=true")));
        assert!(preserve_session(Some("a=b&preserveSession=TRUE")));
        assert!(!preserve_session(Some("preserveSession=false")));
        assert!(!preserve_session(Some("preservesession=true")));
        assert!(!preserve_session(None));
    }
}
