//! API discovery of the optional OpenShift APIs (Route, OAuthClient, SecurityContextConstraints),
//! cached for a minute.

use std::time::{Duration, Instant};

use kube::Client;
use kube::api::ApiResource;
use tokio::sync::Mutex;

use crate::builders::ApiAvailability;

/// How long a discovery result is reused.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(60);

/// `route.openshift.io/v1` `Route`.
pub fn route_resource() -> ApiResource {
    ApiResource {
        group: "route.openshift.io".to_owned(),
        version: "v1".to_owned(),
        api_version: "route.openshift.io/v1".to_owned(),
        kind: "Route".to_owned(),
        plural: "routes".to_owned(),
    }
}

/// `oauth.openshift.io/v1` `OAuthClient` (cluster-scoped).
pub fn oauth_client_resource() -> ApiResource {
    ApiResource {
        group: "oauth.openshift.io".to_owned(),
        version: "v1".to_owned(),
        api_version: "oauth.openshift.io/v1".to_owned(),
        kind: "OAuthClient".to_owned(),
        plural: "oauthclients".to_owned(),
    }
}

/// `security.openshift.io/v1` `SecurityContextConstraints` (cluster-scoped): its presence means
/// OpenShift's SCC admission judges the gateway pods ([`crate::builders::Platform::OpenShift`]).
pub fn security_context_constraints_resource() -> ApiResource {
    ApiResource {
        group: "security.openshift.io".to_owned(),
        version: "v1".to_owned(),
        api_version: "security.openshift.io/v1".to_owned(),
        kind: "SecurityContextConstraints".to_owned(),
        plural: "securitycontextconstraints".to_owned(),
    }
}

/// Whether the API server serves `resource` (group, version and plural).
pub async fn serves(client: &Client, resource: &ApiResource) -> Result<bool, kube::Error> {
    match client.list_api_group_resources(&resource.api_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == resource.plural)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Discovers which optional APIs exist.
pub async fn discover(client: &Client) -> Result<ApiAvailability, kube::Error> {
    Ok(ApiAvailability {
        route: serves(client, &route_resource()).await?,
        oauth_client: serves(client, &oauth_client_resource()).await?,
        security_context_constraints: serves(client, &security_context_constraints_resource())
            .await?,
    })
}

/// A discovery result reused for [`DISCOVERY_TTL`].
pub struct CachedDiscovery {
    client: Client,
    cached: Mutex<Option<(Instant, ApiAvailability)>>,
}

impl std::fmt::Debug for CachedDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedDiscovery").finish_non_exhaustive()
    }
}

impl CachedDiscovery {
    /// Starts with `initial` (discovered at startup).
    pub fn new(client: Client, initial: ApiAvailability) -> Self {
        Self {
            client,
            cached: Mutex::new(Some((Instant::now(), initial))),
        }
    }

    /// The current availability, rediscovered when older than the TTL. A failed rediscovery
    /// keeps the last result.
    pub async fn get(&self) -> ApiAvailability {
        let mut cached = self.cached.lock().await;
        if let Some((at, apis)) = *cached
            && at.elapsed() < DISCOVERY_TTL
        {
            return apis;
        }
        match discover(&self.client).await {
            Ok(apis) => {
                *cached = Some((Instant::now(), apis));
                apis
            }
            Err(e) => {
                tracing::warn!(error = %e, "API discovery failed; using the last result");
                cached.map(|(_, a)| a).unwrap_or_default()
            }
        }
    }
}
