//! `kubectl gate token VM`: create a GateToken for the VM's VNC console, wait until the operator
//! has signed it, print the link.

use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use virt_gateway_api::{GateServer, GateToken, GateTokenPhase, GateTokenSpec, find_condition};

use crate::cli::{TokenArgs, TokenOutput};
use crate::duration::{format_rfc3339, human, parse_from};
use crate::error::{Action, Error, GATESERVERS, GATETOKENS};
use crate::kube_api::{Kube, api_error};
use crate::link;
use crate::select::{
    check_namespace, check_object_name, elsewhere, parse_server_arg, select_server,
};

/// Label naming the VM a token was made for.
pub const LABEL_VM: &str = "ocgate.yaacov.com/vm";
/// Standard label naming the tool that created an object.
pub const LABEL_CREATED_BY: &str = "app.kubernetes.io/created-by";
/// Its value.
pub const CREATED_BY: &str = "kubectl-gate";

/// The API group of KubeVirt's subresources (VNC, console, ...).
pub const KUBEVIRT_SUBRESOURCES: &str = "subresources.kubevirt.io";
/// The resource of a VM's VNC console.
pub const VNC_RESOURCE: &str = "virtualmachineinstances/vnc";

/// What a GateToken for one VM's console looks like before it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The VM.
    pub vm: String,
    /// The VM's namespace (the token's `spec.namespace`).
    pub vm_namespace: String,
    /// The GateServer's namespace, where the GateToken is created.
    pub namespace: String,
    /// An explicit name; `None` means `<vm>-console-<random5>` (generateName).
    pub name: Option<String>,
    /// `spec.durationSec`.
    pub duration_sec: i64,
    /// `spec.from`; `None` means now.
    pub from: Option<String>,
}

/// The GateToken for `req`: `verbs: [get]`, `apiGroups: [subresources.kubevirt.io]`,
/// `resources: [virtualmachineinstances/vnc]`, `resourceNames: [VM]` in the VM's namespace.
pub fn build_token(req: &TokenRequest) -> GateToken {
    let mut labels = std::collections::BTreeMap::new();
    labels.insert(LABEL_CREATED_BY.to_owned(), CREATED_BY.to_owned());
    // A label value has at most 63 characters; longer VM names are in spec.resourceNames anyway.
    if req.vm.len() <= 63 {
        labels.insert(LABEL_VM.to_owned(), req.vm.clone());
    }
    GateToken {
        metadata: ObjectMeta {
            name: req.name.clone(),
            generate_name: req.name.is_none().then(|| format!("{}-console-", req.vm)),
            namespace: Some(req.namespace.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: GateTokenSpec {
            from: req.from.clone(),
            duration_sec: req.duration_sec,
            namespace: req.vm_namespace.clone(),
            verbs: vec!["get".to_owned()],
            raw_api_groups: Some(vec![KUBEVIRT_SUBRESOURCES.to_owned()]),
            resources: vec![VNC_RESOURCE.to_owned()],
            resource_names: Some(vec![req.vm.clone()]),
            ..GateTokenSpec::default()
        },
        status: None,
    }
}

/// Runs `kubectl gate token`.
pub async fn run(kube: &Kube, args: TokenArgs) -> Result<(), Error> {
    // Check everything that needs no API call first.
    check_object_name(&args.vm, "VM")?;
    check_namespace(&kube.namespace, "-n")?;
    if let Some(name) = &args.name {
        check_object_name(name, "--name")?;
    }
    let (server_ns_arg, server_name) = match &args.server {
        Some(s) => {
            let (ns, name) = parse_server_arg(s)?;
            (ns, Some(name))
        }
        None => (None, None),
    };
    if let (Some(a), Some(b)) = (&server_ns_arg, &args.server_namespace)
        && a != b
    {
        return Err(Error::Usage(format!(
            "--server {} names namespace {a}, but --server-namespace is {b}",
            args.server.as_deref().unwrap_or_default()
        )));
    }
    let explicit_server_ns = server_ns_arg.is_some() || args.server_namespace.is_some();
    let server_ns = server_ns_arg
        .or_else(|| args.server_namespace.clone())
        .unwrap_or_else(|| kube.context_namespace.clone());
    check_namespace(&server_ns, "--server-namespace")?;
    let now = Timestamp::now();
    let (from, start) = match &args.from {
        Some(f) => parse_from(f, now).map_err(Error::Usage)?,
        None => (None, now),
    };
    let end = start
        .checked_add(SignedDuration::from_secs(args.duration))
        .map_err(|e| Error::Usage(format!("--from/--duration: {e}")))?;
    if end <= now {
        return Err(Error::Usage(format!(
            "the token would already have expired (at {}); choose a later --from or a longer --duration",
            format_rfc3339(end)
        )));
    }
    if let Some(url) = &args.gateway_url {
        link::gateway_url(Some(url), None, None, "")?;
    }

    // The GateServer: where the token is created, and the gateway's address.
    let client = &kube.client;
    let server = match find_server(client, server_name.as_deref(), &server_ns).await {
        Ok(gs) => Some(gs),
        Err(Error::Forbidden { message, .. })
            if explicit_server_ns
                && (args.output != TokenOutput::Link || args.gateway_url.is_some()) =>
        {
            eprintln!(
                "warning: cannot read GateServers ({message}); creating the GateToken in namespace {server_ns} as given"
            );
            None
        }
        Err(e) => return Err(e),
    };
    let server_display = match &server {
        Some(gs) => format!("{server_ns}/{}", gs.name_any()),
        None => format!("{server_ns}/{}", server_name.as_deref().unwrap_or("?")),
    };
    let gateway = if args.output == TokenOutput::Link {
        let advertised = server.as_ref().and_then(|gs| gs.gateway_url_annotation());
        let route = server.as_ref().and_then(|gs| gs.spec.route());
        let url = link::gateway_url(
            args.gateway_url.as_deref(),
            advertised,
            route,
            &server_display,
        )?;
        if let Some(warning) = cleartext_warning(&url) {
            eprintln!("warning: {warning}");
        }
        Some(url)
    } else {
        None
    };
    if let Some(gs) = &server {
        warn_if_not_ready(gs, &server_display);
    }

    // Create.
    let request = TokenRequest {
        vm: args.vm.clone(),
        vm_namespace: kube.namespace.clone(),
        namespace: server_ns.clone(),
        name: args.name.clone(),
        duration_sec: args.duration,
        from,
    };
    let tokens: Api<GateToken> = Api::namespaced(client.clone(), &server_ns);
    let created = match tokens
        .create(&PostParams::default(), &build_token(&request))
        .await
    {
        Ok(t) => t,
        Err(e) => {
            return Err(api_error(
                client,
                Action::new("create", GATETOKENS, Some(&server_ns)),
                e,
            )
            .await);
        }
    };
    let name = created.name_any();
    let display = format!("{server_ns}/{name}");
    eprintln!(
        "gatetoken.ocgate.yaacov.com/{name} created in namespace {server_ns}, waiting for the operator to sign it"
    );

    // Wait.
    let accept_pending = start > now;
    let end = match wait_signed(tokens.clone(), &name, args.wait_timeout, accept_pending).await {
        Waited::Signed(tok) => tok,
        Waited::Failed { phase, condition } => {
            let cleanup = cleanup(&tokens, &name, &server_ns, args.keep_on_failure).await;
            return Err(Error::TokenFailed {
                token: display,
                phase,
                condition,
                cleanup,
            });
        }
        Waited::Deleted => {
            return Err(Error::TokenFailed {
                token: display,
                phase: "gone".to_owned(),
                condition: "it was deleted while waiting for it".to_owned(),
                cleanup: String::new(),
            });
        }
        Waited::TimedOut { last, watch_error } => {
            let mut state = timeout_state(last.as_ref(), &server_ns);
            if let Some(e) = watch_error {
                state.push_str(&format!("; last watch error: {e}"));
            }
            let cleanup = cleanup(&tokens, &name, &server_ns, args.keep_on_failure).await;
            return Err(Error::Timeout {
                token: display,
                after: args.wait_timeout,
                state,
                cleanup,
            });
        }
        Waited::WatchFailed(e) => {
            let err = match e {
                watcher::Error::InitialListFailed(e) => {
                    api_error(client, Action::new("list", GATETOKENS, Some(&server_ns)), e).await
                }
                watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
                    api_error(
                        client,
                        Action::new("watch", GATETOKENS, Some(&server_ns)),
                        e,
                    )
                    .await
                }
                other => Error::Watch {
                    what: format!("GateToken {display}"),
                    message: crate::kube_api::describe_watch(&other),
                },
            };
            let note = cleanup(&tokens, &name, &server_ns, args.keep_on_failure).await;
            eprintln!("{}", note.trim_start());
            return Err(err);
        }
    };

    // Print.
    let status = end.status.clone().unwrap_or_default();
    let data = &status.data;
    let valid = if accept_pending {
        format!("valid from {} until {}", data.from, data.until)
    } else {
        format!(
            "valid until {} ({})",
            data.until,
            human(data.exp - now.as_second())
        )
    };
    eprintln!(
        "GateToken {display} is {}: console of VM {}/{}, {valid}",
        status.phase, kube.namespace, args.vm
    );
    match args.output {
        TokenOutput::Link => {
            let gateway = gateway.unwrap_or_default();
            println!(
                "{}",
                link::console_link(
                    if args.query_link {
                        link::LinkForm::Query
                    } else {
                        link::LinkForm::Fragment
                    },
                    &gateway,
                    &status.token,
                    &kube.namespace,
                    &args.vm
                )
            );
        }
        TokenOutput::Token => println!("{}", status.token),
        TokenOutput::Json => {
            let text = serde_json::to_string_pretty(&for_output(end))
                .map_err(|e| Error::Output(e.to_string()))?;
            println!("{text}");
        }
        TokenOutput::Yaml => {
            let text = serde_yaml::to_string(&for_output(end))
                .map_err(|e| Error::Output(e.to_string()))?;
            print!("{text}");
        }
    }
    Ok(())
}

/// A warning for a link that would carry its token unencrypted over a network: `http://` to a
/// host other than a loopback address or `localhost`.
fn cleartext_warning(gateway_url: &str) -> Option<String> {
    let uri: http::Uri = gateway_url.parse().ok()?;
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| {
        format!(
            "the gateway URL {gateway_url} is plain http: the link's token would cross the network unencrypted"
        )
    })
}

/// The object as `kubectl get -o yaml` shows it, without managedFields.
fn for_output(mut tok: GateToken) -> GateToken {
    tok.metadata.managed_fields = None;
    tok
}

async fn find_server(
    client: &Client,
    name: Option<&str>,
    namespace: &str,
) -> Result<GateServer, Error> {
    let api: Api<GateServer> = Api::namespaced(client.clone(), namespace);
    if let Some(name) = name {
        return match api.get(name).await {
            Ok(gs) => Ok(gs),
            Err(e) => {
                match api_error(client, Action::on("get", GATESERVERS, namespace, name), e).await {
                    Error::NotFound { .. } => {
                        let mut available: Vec<String> = api
                            .list(&ListParams::default())
                            .await
                            .map(|l| l.items.iter().map(ResourceExt::name_any).collect())
                            .unwrap_or_default();
                        available.sort();
                        Err(Error::GateServerNotFound {
                            namespace: namespace.to_owned(),
                            name: name.to_owned(),
                            available,
                        })
                    }
                    other => Err(other),
                }
            }
        };
    }
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => {
            return Err(
                api_error(client, Action::new("list", GATESERVERS, Some(namespace)), e).await,
            );
        }
    };
    match select_server(list.items, namespace) {
        Err(Error::NoGateServer { namespace, .. }) => {
            // Say where GateServers are, when the caller may see them.
            let all: Api<GateServer> = Api::all(client.clone());
            let others = all
                .list(&ListParams::default())
                .await
                .map(|l| elsewhere(&l.items, &namespace))
                .unwrap_or_default();
            Err(Error::NoGateServer {
                namespace,
                elsewhere: others,
            })
        }
        other => other,
    }
}

fn warn_if_not_ready(gs: &GateServer, display: &str) {
    let status = gs.status.clone().unwrap_or_default();
    if status.phase == "Ready" {
        return;
    }
    let why = ["Degraded", "Ready"]
        .into_iter()
        .filter_map(|t| find_condition(&status.conditions, t))
        .find(|c| !c.message.is_empty())
        .map(|c| format!(": {}", c.message))
        .unwrap_or_default();
    let phase = if status.phase.is_empty() {
        "not handled by the operator yet".to_owned()
    } else {
        format!("phase {}", status.phase)
    };
    eprintln!("warning: GateServer {display} is not Ready ({phase}){why}");
}

/// How waiting for the signature ended.
enum Waited {
    Signed(GateToken),
    Failed {
        phase: String,
        condition: String,
    },
    Deleted,
    TimedOut {
        last: Option<GateToken>,
        watch_error: Option<String>,
    },
    WatchFailed(watcher::Error),
}

/// Watches the GateToken until it is signed and Ready (or Pending, when it starts later), fails,
/// disappears, or `timeout` passes.
async fn wait_signed(
    api: Api<GateToken>,
    name: &str,
    timeout: Duration,
    accept_pending: bool,
) -> Waited {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut events = pin!(watcher::watch_object(api, name));
    let mut last: Option<GateToken> = None;
    let mut watch_error: Option<String> = None;
    loop {
        let event = match tokio::time::timeout_at(deadline, events.next()).await {
            Err(_) | Ok(None) => return Waited::TimedOut { last, watch_error },
            Ok(Some(event)) => event,
        };
        match event {
            Ok(Some(tok)) => {
                let status = tok.status.clone().unwrap_or_default();
                let signed = !status.token.is_empty();
                match status.parsed_phase() {
                    Ok(GateTokenPhase::Ready) if signed => return Waited::Signed(tok),
                    Ok(GateTokenPhase::Pending) if signed && accept_pending => {
                        return Waited::Signed(tok);
                    }
                    Ok(
                        GateTokenPhase::Error | GateTokenPhase::Completed | GateTokenPhase::Revoked,
                    ) => {
                        return Waited::Failed {
                            phase: status.phase.clone(),
                            condition: describe_conditions(&status.phase, &status.conditions),
                        };
                    }
                    _ => last = Some(tok),
                }
            }
            Ok(None) => {
                if last.is_some() {
                    return Waited::Deleted;
                }
            }
            Err(e) => {
                if let watcher::Error::InitialListFailed(kube::Error::Api(s))
                | watcher::Error::WatchStartFailed(kube::Error::Api(s)) = &e
                    && matches!(s.code, 401 | 403 | 404)
                {
                    return Waited::WatchFailed(e);
                }
                // Transient (connection reset, watch expired): the watcher restarts; back off.
                watch_error = Some(crate::kube_api::describe_watch(&e));
                let pause = tokio::time::Instant::now() + Duration::from_secs(1);
                tokio::time::sleep_until(pause.min(deadline)).await;
            }
        }
    }
}

/// The condition that explains `phase`: `Ready=False (PrivateKeyError): message`.
pub fn describe_conditions(phase: &str, conditions: &[Condition]) -> String {
    let wanted: &[&str] = match phase {
        "Error" => &["Error", "Ready"],
        "Completed" => &["Completed", "Ready"],
        "Revoked" => &["Revoked", "Ready"],
        _ => &["Ready"],
    };
    wanted
        .iter()
        .find_map(|t| find_condition(conditions, t))
        .or_else(|| conditions.last())
        .map(|c| {
            let reason = if c.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.reason)
            };
            format!("{}={}{reason}: {}", c.type_, c.status, c.message)
        })
        .unwrap_or_else(|| "no condition says why".to_owned())
}

/// What the timeout message says about the token's state.
fn timeout_state(last: Option<&GateToken>, namespace: &str) -> String {
    let status = last.and_then(|t| t.status.clone()).unwrap_or_default();
    if status.phase.is_empty() {
        return format!(
            "its phase is still empty: the operator has not handled it. Is virt-gateway-operator running, and does it \
             watch namespace {namespace}?"
        );
    }
    format!(
        "phase {}, {}",
        status.phase,
        describe_conditions(&status.phase, &status.conditions)
    )
}

/// Deletes the token we created unless asked to keep it; says what happened.
async fn cleanup(api: &Api<GateToken>, name: &str, namespace: &str, keep: bool) -> String {
    if keep {
        return format!(
            "\nthe GateToken was kept: kubectl get gatetoken {name} -n {namespace} -o yaml"
        );
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => "\nthe GateToken was deleted (use --keep-on-failure to keep it for inspection)"
            .to_owned(),
        Err(e) => format!(
            "\nwarning: could not delete the GateToken ({}); delete it with kubectl delete gatetoken {name} -n {namespace}",
            crate::kube_api::describe(&e)
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use virt_gateway_api::ConditionStatus;
    use virt_gateway_api::new_condition;

    use super::*;

    fn request() -> TokenRequest {
        TokenRequest {
            vm: "testvm".into(),
            vm_namespace: "default".into(),
            namespace: "kube-gateway".into(),
            name: None,
            duration_sec: 1800,
            from: None,
        }
    }

    #[test]
    fn the_token_grants_only_the_vnc_console_of_the_vm() {
        let tok = build_token(&request());
        let value = serde_json::to_value(&tok).unwrap();
        assert_eq!(value["apiVersion"], "ocgate.yaacov.com/v1beta1");
        assert_eq!(value["kind"], "GateToken");
        assert_eq!(
            value["metadata"],
            json!({
                "generateName": "testvm-console-",
                "namespace": "kube-gateway",
                "labels": {"ocgate.yaacov.com/vm": "testvm", "app.kubernetes.io/created-by": "kubectl-gate"}
            })
        );
        assert_eq!(
            value["spec"],
            json!({
                "durationSec": 1800,
                "generateServiceAccount": false,
                "namespace": "default",
                "verbs": ["get"],
                "apiGroups": ["subresources.kubevirt.io"],
                "resources": ["virtualmachineinstances/vnc"],
                "resourceNames": ["testvm"],
                "revoked": false
            })
        );
        tok.spec.validate().unwrap();
    }

    #[test]
    fn explicit_name_and_from() {
        let mut req = request();
        req.name = Some("mine".into());
        req.from = Some("2026-05-01T09:00:00Z".into());
        let tok = build_token(&req);
        assert_eq!(tok.metadata.name.as_deref(), Some("mine"));
        assert_eq!(tok.metadata.generate_name, None);
        assert_eq!(tok.spec.from.as_deref(), Some("2026-05-01T09:00:00Z"));
    }

    #[test]
    fn a_long_vm_name_gets_no_label() {
        let mut req = request();
        req.vm = "v".repeat(64);
        let tok = build_token(&req);
        assert!(!tok.labels().contains_key(LABEL_VM));
        assert_eq!(tok.spec.resource_names, Some(vec!["v".repeat(64)]));
    }

    #[test]
    fn plain_http_warns_unless_it_stays_on_this_machine() {
        for quiet in [
            "https://gw.example.com",
            "http://127.0.0.1:8080",
            "http://127.3.4.5",
            "http://localhost:9000",
            "http://[::1]:8080",
        ] {
            assert_eq!(cleartext_warning(quiet), None, "{quiet}");
        }
        for loud in ["http://gw.example.com", "http://10.0.0.5:8080"] {
            let warning = cleartext_warning(loud).unwrap();
            assert!(
                warning.contains(loud) && warning.contains("unencrypted"),
                "{warning}"
            );
        }
    }

    #[test]
    fn conditions_are_described() {
        let now = Timestamp::now();
        let conditions = vec![
            new_condition(
                "Ready",
                ConditionStatus::False,
                "PrivateKeyError",
                "no key",
                None,
                now,
            ),
            new_condition(
                "Error",
                ConditionStatus::True,
                "PrivateKeyError",
                "Secret kube-gateway-jwt-secret not found",
                None,
                now,
            ),
        ];
        assert_eq!(
            describe_conditions("Error", &conditions),
            "Error=True (PrivateKeyError): Secret kube-gateway-jwt-secret not found"
        );
        assert_eq!(
            describe_conditions("Pending", &conditions),
            "Ready=False (PrivateKeyError): no key"
        );
        assert_eq!(describe_conditions("", &[]), "no condition says why");
    }
}
