//! Connecting like kubectl, and turning API errors into messages that say what to do.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::cli::GlobalArgs;
use crate::error::{Action, Error, GATESERVERS};

/// A client and the namespaces the command works in.
#[derive(Clone)]
pub struct Kube {
    /// The client, with the caller's credentials.
    pub client: Client,
    /// The current context's namespace (`default` when it sets none).
    pub context_namespace: String,
    /// `-n` when given, else [`context_namespace`](Self::context_namespace).
    pub namespace: String,
}

/// Loads the configuration as kubectl does: `--kubeconfig`, else `$KUBECONFIG` (a list of files
/// is merged), else `~/.kube/config`, else the in-cluster ServiceAccount; `--context` selects the
/// context; `-n` overrides the context's namespace.
pub async fn connect(global: &GlobalArgs) -> Result<Kube, Error> {
    let options = KubeConfigOptions {
        context: global.context.clone(),
        cluster: None,
        user: None,
    };
    let config = match &global.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| Error::Kubeconfig(format!("--kubeconfig {}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| Error::Kubeconfig(format!("--kubeconfig {}: {e}", path.display())))?
        }
        None => match Config::from_kubeconfig(&options).await {
            Ok(config) => config,
            Err(e) if global.context.is_none() => Config::incluster().map_err(|_| {
                Error::Kubeconfig(format!(
                    "{e} (set KUBECONFIG, pass --kubeconfig FILE, or create ~/.kube/config)"
                ))
            })?,
            Err(e) => return Err(Error::Kubeconfig(e.to_string())),
        },
    };
    let context_namespace = config.default_namespace.clone();
    let client = Client::try_from(config).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    Ok(Kube {
        client,
        namespace: global
            .namespace
            .clone()
            .unwrap_or_else(|| context_namespace.clone()),
        context_namespace,
    })
}

/// A client error in one line: the API server's message with its code and reason, without the
/// debug dump of the whole `Status`.
pub fn describe(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            let mut out = status.message.clone();
            if out.is_empty() {
                out = "the API server gave no message".to_owned();
            }
            match (status.code, status.reason.as_str()) {
                (0, "") => out,
                (code, "") => format!("{out} ({code})"),
                (code, reason) => format!("{out} ({code} {reason})"),
            }
        }
        other => other.to_string(),
    }
}

/// [`describe`] for watcher errors.
pub fn describe_watch(err: &kube::runtime::watcher::Error) -> String {
    use kube::runtime::watcher::Error as W;
    match err {
        W::InitialListFailed(e) | W::WatchStartFailed(e) | W::WatchFailed(e) => describe(e),
        other => other.to_string(),
    }
}

/// Turns a failed call into an [`Error`]: 403 is [`Error::NotDelegable`] when the delegation
/// policy refused, else [`Error::Forbidden`] with the API server's message; 404 is [`Error::CrdsNotInstalled`] when the API is not served, else
/// [`Error::NotFound`] for a named object.
pub async fn api_error(client: &Client, action: Action, err: kube::Error) -> Error {
    if let kube::Error::Api(status) = &err {
        match status.code {
            // The delegation policy, not RBAC on gatetokens: a different fix.
            403 if status
                .message
                .contains(virt_gateway_api::admission::GATETOKEN_POLICY) =>
            {
                return Error::NotDelegable {
                    message: status.message.clone(),
                };
            }
            403 => {
                return Error::Forbidden {
                    action,
                    message: status.message.clone(),
                };
            }
            404 => {
                if let Some(detail) = crds_missing(client).await {
                    return Error::CrdsNotInstalled { detail };
                }
                if let (Some(name), Some(namespace)) = (&action.name, &action.namespace) {
                    return Error::NotFound {
                        kind: if action.resource == GATESERVERS {
                            "GateServer"
                        } else {
                            "GateToken"
                        },
                        namespace: namespace.clone(),
                        name: name.clone(),
                    };
                }
            }
            _ => {}
        }
    }
    Error::Api {
        action,
        source: Box::new(err),
    }
}

/// Why the API server does not serve GateServers and GateTokens, or `None` when it does (or when
/// discovery itself fails, so that the original error is reported).
pub async fn crds_missing(client: &Client) -> Option<String> {
    match client
        .list_api_group_resources(virt_gateway_api::API_VERSION)
        .await
    {
        Ok(list) => {
            let missing: Vec<&str> = ["gateservers", "gatetokens"]
                .into_iter()
                .filter(|plural| !list.resources.iter().any(|r| r.name == *plural))
                .collect();
            (!missing.is_empty()).then(|| {
                format!(
                    "{} not served under {}",
                    missing.join(" and "),
                    virt_gateway_api::API_VERSION
                )
            })
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Some(format!(
            "the API server does not serve {}",
            virt_gateway_api::API_VERSION
        )),
        Err(_) => None,
    }
}
