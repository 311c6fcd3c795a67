//! `kubectl gate list`, `revoke` and `servers`.

use std::pin::pin;

use futures::StreamExt;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use virt_gateway_api::{GateServer, GateToken};

use crate::cli::{ListArgs, RevokeArgs, ServersArgs};
use crate::duration::{human, time_left};
use crate::error::{Action, Error, GATESERVERS, GATETOKENS};
use crate::kube_api::{Kube, api_error};
use crate::select::{check_namespace, check_object_name};
use crate::table;
use crate::token::LABEL_VM;

/// The cells of one `list` row (without the namespace): NAME, PHASE, TARGET-NAMESPACE,
/// RESOURCE-NAMES, TIME-LEFT.
pub fn token_row(tok: &GateToken, now: i64) -> Vec<String> {
    let status = tok.status.clone().unwrap_or_default();
    let names = match (&tok.spec.resource_names, &tok.spec.non_resource_urls) {
        (_, Some(urls)) if !urls.is_empty() => format!("urls:{}", urls.join(",")),
        (Some(names), _) if !names.is_empty() => names.join(","),
        _ => "*".to_owned(),
    };
    vec![
        tok.name_any(),
        or_none(&status.phase),
        tok.spec.namespace.clone(),
        names,
        time_left(&status.phase, status.data.nbf, status.data.exp, now),
    ]
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_owned()
    } else {
        s.to_owned()
    }
}

fn age(created: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>, now: i64) -> String {
    created.map_or_else(|| "<unknown>".to_owned(), |t| human(now - t.0.as_second()))
}

/// Runs `kubectl gate list`.
pub async fn list(kube: &Kube, args: ListArgs) -> Result<(), Error> {
    let client = &kube.client;
    let scope = (!args.all_namespaces).then_some(kube.namespace.as_str());
    if let Some(ns) = scope {
        check_namespace(ns, "-n")?;
    }
    let api: Api<GateToken> = match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut params = ListParams::default();
    if let Some(vm) = &args.vm {
        check_object_name(vm, "--vm")?;
        params = params.labels(&format!("{LABEL_VM}={vm}"));
    }
    let items = match api.list(&params).await {
        Ok(l) => l.items,
        Err(e) => return Err(api_error(client, Action::new("list", GATETOKENS, scope), e).await),
    };
    if items.is_empty() {
        match scope {
            Some(ns) => eprintln!("No GateTokens found in namespace {ns}."),
            None => eprintln!("No GateTokens found."),
        }
        return Ok(());
    }
    let now = Timestamp::now().as_second();
    let mut headers = vec![
        "NAME",
        "PHASE",
        "TARGET-NAMESPACE",
        "RESOURCE-NAMES",
        "TIME-LEFT",
    ];
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|t| {
            let mut row = token_row(t, now);
            if scope.is_none() {
                row.insert(0, t.namespace().unwrap_or_default());
            }
            row
        })
        .collect();
    if scope.is_none() {
        headers.insert(0, "NAMESPACE");
    }
    print!("{}", table::render(&headers, &rows));
    Ok(())
}

/// Runs `kubectl gate servers`.
pub async fn servers(kube: &Kube, args: ServersArgs) -> Result<(), Error> {
    let client = &kube.client;
    let scope = (!args.all_namespaces).then_some(kube.namespace.as_str());
    if let Some(ns) = scope {
        check_namespace(ns, "-n")?;
    }
    let api: Api<GateServer> = match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let items = match api.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => return Err(api_error(client, Action::new("list", GATESERVERS, scope), e).await),
    };
    if items.is_empty() {
        match scope {
            Some(ns) => eprintln!("No GateServers found in namespace {ns}."),
            None => eprintln!("No GateServers found."),
        }
        return Ok(());
    }
    let now = Timestamp::now().as_second();
    let mut headers = vec!["NAME", "PHASE", "ROUTE", "AGE"];
    if scope.is_none() {
        headers.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|gs| {
            let phase = gs
                .status
                .as_ref()
                .map(|s| s.phase.as_str())
                .unwrap_or_default();
            let mut row = vec![
                gs.name_any(),
                or_none(phase),
                or_none(gs.spec.route().unwrap_or_default()),
                age(gs.metadata.creation_timestamp.as_ref(), now),
            ];
            if scope.is_none() {
                row.insert(0, gs.namespace().unwrap_or_default());
            }
            row
        })
        .collect();
    print!("{}", table::render(&headers, &rows));
    Ok(())
}

/// Runs `kubectl gate revoke`.
pub async fn revoke(kube: &Kube, args: RevokeArgs) -> Result<(), Error> {
    let client = &kube.client;
    let ns = kube.namespace.as_str();
    check_namespace(ns, "-n")?;
    for name in &args.names {
        check_object_name(name, "GateToken")?;
    }
    let api: Api<GateToken> = Api::namespaced(client.clone(), ns);
    let mut errors = Vec::new();
    for name in &args.names {
        let result = if args.delete {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {
                    println!("gatetoken.ocgate.yaacov.com/{name} deleted");
                    Ok(())
                }
                Err(e) => {
                    Err(api_error(client, Action::on("delete", GATETOKENS, ns, name), e).await)
                }
            }
        } else {
            let patch = Patch::Merge(json!({"spec": {"revoked": true}}));
            match api.patch(name, &PatchParams::default(), &patch).await {
                Ok(_) => {
                    println!("gatetoken.ocgate.yaacov.com/{name} revoked");
                    Ok(())
                }
                Err(e) => {
                    Err(api_error(client, Action::on("patch", GATETOKENS, ns, name), e).await)
                }
            }
        };
        let result = match result {
            Ok(()) if args.wait => {
                wait_revoked(&api, name, ns, args.delete, args.wait_timeout).await
            }
            other => other,
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Several(errors)),
    }
}

/// Waits until the operator shows the token as Revoked (or, after a delete, until it is gone).
async fn wait_revoked(
    api: &Api<GateToken>,
    name: &str,
    ns: &str,
    deleted: bool,
    timeout: std::time::Duration,
) -> Result<(), Error> {
    let mut events = pin!(watcher::watch_object(api.clone(), name));
    let mut last_phase = String::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Err(_) | Ok(None) => {
                return Err(Error::Watch {
                    what: format!("GateToken {ns}/{name}"),
                    message: format!(
                        "still {} after {}; is virt-gateway-operator running? (the gateway refuses a token with spec.revoked: true anyway)",
                        if deleted {
                            "present".to_owned()
                        } else {
                            format!("in phase {:?}", last_phase)
                        },
                        crate::duration::human_std(timeout)
                    ),
                });
            }
            Ok(Some(Ok(None))) if deleted => {
                println!("gatetoken.ocgate.yaacov.com/{name} is gone");
                return Ok(());
            }
            Ok(Some(Ok(Some(tok)))) => {
                let phase = tok.status.map(|s| s.phase).unwrap_or_default();
                if !deleted && phase == "Revoked" {
                    println!("gatetoken.ocgate.yaacov.com/{name} is Revoked");
                    return Ok(());
                }
                last_phase = phase;
            }
            Ok(Some(Ok(None))) => {
                return Err(Error::NotFound {
                    kind: "GateToken",
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                });
            }
            Ok(Some(Err(e))) => {
                return Err(Error::Watch {
                    what: format!("GateToken {ns}/{name}"),
                    message: crate::kube_api::describe_watch(&e),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn token(v: serde_json::Value) -> GateToken {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn rows_show_phase_target_names_and_time_left() {
        let t = token(json!({
            "apiVersion": "ocgate.yaacov.com/v1beta1", "kind": "GateToken",
            "metadata": {"name": "testvm-console-abcde", "namespace": "gw"},
            "spec": {"namespace": "default", "resourceNames": ["testvm"]},
            "status": {"phase": "Ready", "token": "x", "conditions": [], "service-account-name": "",
                       "data": {"from": "", "until": "", "duration-sec": 3600, "nbf": 1000, "exp": 4600, "alg": "RS256"}}
        }));
        assert_eq!(
            token_row(&t, 1000),
            ["testvm-console-abcde", "Ready", "default", "testvm", "1h"]
        );
        let t = token(json!({
            "apiVersion": "ocgate.yaacov.com/v1beta1", "kind": "GateToken",
            "metadata": {"name": "new", "namespace": "gw"},
            "spec": {"nonResourceURLs": ["/healthz"]}
        }));
        assert_eq!(
            token_row(&t, 1000),
            ["new", "<none>", "*", "urls:/healthz", "-"]
        );
    }
}
