//! Authorization of a request by a token's claims, exactly as Kubernetes RBAC evaluates one
//! `PolicyRule` (`k8s.io/kubernetes/pkg/apis/rbac/v1/evaluation_helpers.go` and `RuleAllows` in
//! `plugin/pkg/auth/authorizer/rbac/rbac.go`), bound like a RoleBinding in the claimed namespace — or
//! like a ClusterRoleBinding when the namespace claim is `*`.
//!
//! A request is allowed when all of these hold:
//! 1. **verb**: a `verbs` entry is `*` or equals the request verb;
//! 2. **scope**: the `namespace` claim is `*`, or the request is a *namespaced resource* request in
//!    exactly that namespace. Cluster-scoped resource requests (nodes, the list of namespaces, ...)
//!    and non-resource requests (`/version`, ...) therefore need `*`, as a RoleBinding cannot grant
//!    them;
//! 3. for a **resource** request:
//!    * `apiGroups`: an entry is `*` or equals the group (`""` is the core group). An unset
//!      (`null`) `apiGroups` allows no resource request (Gen B: "missing APIGroups");
//!    * `resources`: unset allows any; otherwise an entry is `*`, equals `resource` or
//!      `resource/subresource`, or is `*/subresource` for the request's subresource;
//!    * `resourceNames`: unset allows any; otherwise the request's name must be one of them (RBAC has
//!      no wildcard here, and a request without a name — list, watch, create, deletecollection —
//!      never matches a name list);
//! 4. for a **non-resource** request, `nonResourceURLs` has an entry that is `*`, equals the path, or
//!    ends in `*` and is a prefix of the path (plain string prefix, as RBAC). Unset allows none.
//!
//! An explicit empty list (`[]`) allows nothing, for every list claim (Gen B's meaning; RBAC would
//! read an empty `resourceNames` as "any").
//!
//! **Connections need `create` (stricter than RBAC, on purpose).** `pods/exec`, `pods/attach`,
//! `pods/portforward` and every `proxy` subresource (`nodes/proxy`, `services/proxy`,
//! `pods/proxy`, ..., and the legacy `proxy` path verb) open a command, a terminal, a port or a
//! kubelet/service proxy. Over a WebSocket they are a `GET`, which RBAC sees as `get`, and the
//! kubelet's `nodes/proxy` runs `exec` with `get` alone. Upstream, the API server authorizes the
//! gateway's ServiceAccount, never the token holder, so this check is the only one: such a request
//! is allowed only when the token *also* allows the verb `create` on it, whatever the HTTP method,
//! including through wildcards (`verbs: ["*"]` holds `create`; `resources: ["*"]` with
//! `verbs: ["get"]` does not open exec).

use crate::claims::Claims;
use crate::request::RequestInfo;

/// Why a request was denied: the first condition (in the order above) that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// The verb is not in `verbs`.
    #[error("{}", verb_message(.verb))]
    Verb {
        /// The request verb (`""` for an HTTP method with no Kubernetes verb).
        verb: String,
    },
    /// A namespaced request in another namespace than the token's.
    #[error(
        "namespace {namespace:?} is not permitted: the token is limited to namespace {allowed:?}"
    )]
    Namespace {
        /// The request's namespace.
        namespace: String,
        /// The token's namespace claim.
        allowed: String,
    },
    /// A cluster-scoped resource request with a token limited to one namespace.
    #[error(
        "cluster-scoped request for {resource:?} is not permitted: the token is limited to namespace {allowed:?} \
         (cluster-scoped requests need namespace \"*\")"
    )]
    ClusterScoped {
        /// The requested resource (with subresource).
        resource: String,
        /// The token's namespace claim.
        allowed: String,
    },
    /// A non-resource request with a token limited to one namespace.
    #[error(
        "non-resource path {path:?} is not permitted: the token is limited to namespace {allowed:?} \
         (non-resource paths need namespace \"*\")"
    )]
    NonResourceScoped {
        /// The request path.
        path: String,
        /// The token's namespace claim.
        allowed: String,
    },
    /// A resource request with a token whose `apiGroups` is unset.
    #[error("resource requests are not permitted: the token sets no apiGroups")]
    NoApiGroups,
    /// The API group is not in `apiGroups`.
    #[error("API group {} is not permitted", group_name(.group))]
    ApiGroup {
        /// The request's API group.
        group: String,
    },
    /// The resource (with subresource) is not in `resources`.
    #[error("resource {resource:?} in API group {} is not permitted", group_name(.group))]
    Resource {
        /// The resource, as `resource` or `resource/subresource`.
        resource: String,
        /// The request's API group.
        group: String,
    },
    /// The object name is not in `resourceNames`.
    #[error("{}", name_message(.name, .resource))]
    ResourceName {
        /// The request's object name (empty for list, watch, create, deletecollection).
        name: String,
        /// The resource, as `resource` or `resource/subresource`.
        resource: String,
    },
    /// A non-resource request with a token whose `nonResourceURLs` is unset.
    #[error("non-resource path {path:?} is not permitted: the token sets no nonResourceURLs")]
    NoNonResourceUrls {
        /// The request path.
        path: String,
    },
    /// The path is not matched by `nonResourceURLs`.
    #[error("non-resource path {path:?} is not permitted")]
    NonResourceUrl {
        /// The request path.
        path: String,
    },
    /// A connection (exec, attach, port-forward, proxy) with a token that does not allow
    /// `create` on it.
    #[error(
        "{resource:?} opens a connection (exec, attach, port-forward or proxy), which needs the verb \"create\" \
         in the token whatever the HTTP method (a deliberate rule, stricter than RBAC)"
    )]
    ConnectNeedsCreate {
        /// The resource, as `resource/subresource`.
        resource: String,
    },
}

fn verb_message(verb: &str) -> String {
    if verb.is_empty() {
        "the HTTP method maps to no Kubernetes verb, and the token does not allow all verbs"
            .to_owned()
    } else {
        format!("verb {verb:?} is not permitted")
    }
}

fn group_name(group: &str) -> String {
    if group.is_empty() {
        "\"\" (core)".to_owned()
    } else {
        format!("{group:?}")
    }
}

fn name_message(name: &str, resource: &str) -> String {
    if name.is_empty() {
        format!(
            "a request for {resource:?} without an object name (list, watch, create, deletecollection) is not \
             permitted: the token is limited to named objects"
        )
    } else {
        format!("{resource:?} named {name:?} is not permitted")
    }
}

/// `VerbMatches`.
fn verb_matches(verbs: &[String], verb: &str) -> bool {
    verbs.iter().any(|v| v == "*" || v == verb)
}

/// `APIGroupMatches`.
fn api_group_matches(groups: &[String], group: &str) -> bool {
    groups.iter().any(|g| g == "*" || g == group)
}

/// `ResourceMatches`, with `combined` = `resource` or `resource/subresource`.
fn resource_matches(resources: &[String], combined: &str, subresource: &str) -> bool {
    resources.iter().any(|r| {
        r == "*"
            || r == combined
            || (!subresource.is_empty()
                && r.len() == subresource.len() + 2
                && r.starts_with("*/")
                && r.ends_with(subresource))
    })
}

/// `ResourceNameMatches` for a non-empty list (the empty list is handled by the caller: Gen B's
/// "nothing").
fn resource_name_matches(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n == name)
}

/// `NonResourceURLMatches`.
fn non_resource_url_matches(urls: &[String], path: &str) -> bool {
    urls.iter().any(|u| {
        u == "*" || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*')))
    })
}

/// The pod subresources that open a connection into a container.
const POD_CONNECT_SUBRESOURCES: [&str; 3] = ["exec", "attach", "portforward"];

/// Whether `request` opens a connection (exec, attach, port-forward, or any proxy), which needs
/// `create` whatever its verb.
pub fn is_connect_request(request: &RequestInfo) -> bool {
    request.is_resource_request
        && (request.verb == "proxy"
            || request.subresource == "proxy"
            || (request.api_group.is_empty()
                && request.resource == "pods"
                && POD_CONNECT_SUBRESOURCES.contains(&request.subresource.as_str())))
}

/// Decides whether `claims` allow `request`; on denial, says precisely what was not permitted.
pub fn authorize(claims: &Claims, request: &RequestInfo) -> Result<(), Denied> {
    if !verb_matches(&claims.verbs, &request.verb) {
        return Err(Denied::Verb {
            verb: request.verb.clone(),
        });
    }

    let all_namespaces = claims.namespace == crate::claims::ALL_NAMESPACES;
    if !all_namespaces {
        let allowed = claims.namespace.clone();
        if !request.is_resource_request {
            return Err(Denied::NonResourceScoped {
                path: request.path.clone(),
                allowed,
            });
        }
        if request.namespace.is_empty() {
            return Err(Denied::ClusterScoped {
                resource: request.combined_resource(),
                allowed,
            });
        }
        if request.namespace != claims.namespace {
            return Err(Denied::Namespace {
                namespace: request.namespace.clone(),
                allowed,
            });
        }
    }

    if !request.is_resource_request {
        return match &claims.non_resource_urls {
            None => Err(Denied::NoNonResourceUrls {
                path: request.path.clone(),
            }),
            Some(urls) if non_resource_url_matches(urls, &request.path) => Ok(()),
            Some(_) => Err(Denied::NonResourceUrl {
                path: request.path.clone(),
            }),
        };
    }

    let Some(groups) = &claims.api_groups else {
        return Err(Denied::NoApiGroups);
    };
    if !api_group_matches(groups, &request.api_group) {
        return Err(Denied::ApiGroup {
            group: request.api_group.clone(),
        });
    }
    let combined = request.combined_resource();
    if let Some(resources) = &claims.resources
        && !resource_matches(resources, &combined, &request.subresource)
    {
        return Err(Denied::Resource {
            resource: combined,
            group: request.api_group.clone(),
        });
    }
    if let Some(names) = &claims.resource_names
        && !resource_name_matches(names, &request.name)
    {
        return Err(Denied::ResourceName {
            name: request.name.clone(),
            resource: combined,
        });
    }
    // The rest of the rule matched with the request's verb; the same rule must also allow
    // `create` (every other attribute is the same, so only the verbs decide).
    if is_connect_request(request) && !verb_matches(&claims.verbs, "create") {
        return Err(Denied::ConnectNeedsCreate { resource: combined });
    }
    Ok(())
}
