//! The desired objects of a GateServer (Gen B §1.5.1, fixed).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::HTTPGetAction;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, KeyToPath, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecretVolumeSource,
    SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, TCPSocketAction,
    TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DynamicObject, ObjectMeta};
use serde_json::json;
use virt_gateway_api::{GateServer, JWT_SECRET_NAME, JWT_SECRET_PUBLIC_KEY};

use super::{BuildError, identity};
use crate::keysecret;
use crate::names::{
    ANNOTATION_KID, COMPONENT_ACCESS, COMPONENT_CONSOLE_LEASES, COMPONENT_GATEWAY, COMPONENT_OAUTH,
    COMPONENT_TOKEN_READER, LABEL_APP, console_leases_name, label_value, oauth_client_name,
    oauth_secret_name, server_access_name, server_annotations, server_labels,
    signin_key_secret_name, token_reader_name,
};
use crate::rbac::CONSOLE_LEASES_ROLE;

/// Where the OIDC client secret is mounted in the gateway pod.
pub const OIDC_MOUNT_PATH: &str = "/var/run/secrets/oidc-client";
/// Where the OIDC provider's CA bundle is mounted in the gateway pod.
pub const OIDC_CA_MOUNT_PATH: &str = "/var/run/configmaps/oidc-ca";
/// Where the sign-in cookie key is mounted in the gateway pod.
pub const SIGNIN_KEY_MOUNT_PATH: &str = "/var/run/secrets/signin-key";
/// The key of the sign-in cookie key in its generated Secret.
pub const SIGNIN_KEY_SECRET_KEY: &str = "key";

/// Our gateway image repository; the default image is this at the operator's version.
pub const GATEWAY_IMAGE_REPOSITORY: &str = "quay.io/virt-gateway/kube-gateway";
/// Our web-app image repository.
pub const WEB_APP_IMAGE_REPOSITORY: &str = "quay.io/virt-gateway/kube-gateway-web-app";
/// The gateway's port (Gen B): HTTP or HTTPS.
pub const GATEWAY_PORT: i32 = 8080;
/// The gateway's metrics port (our gateway only; `KUBE_GATEWAY_METRICS_LISTEN`).
pub const GATEWAY_METRICS_PORT: i32 = 9090;
/// The gateway container's name (Gen B).
pub const GATEWAY_CONTAINER: &str = "kube-gateway";
/// The web-app init container's name (Gen B).
pub const WEB_APP_CONTAINER: &str = "kube-gateway-web-app";
/// Where the public key is mounted (Gen B path).
pub const JWT_MOUNT_PATH: &str = "/jwt-secret";
/// Where the web application is copied to (Gen B).
pub const WEB_APP_MOUNT_PATH: &str = "/app/web";
/// Where the serving certificate is mounted in HTTPS mode (Gen B).
pub const TLS_MOUNT_PATH: &str = "/secrets";
/// Environment variable holding the OAuth client secret (expanded into the command as
/// `$(KUBE_GATEWAY_OAUTH_CLIENT_SECRET)`, so it never appears in the pod spec).
pub const ENV_OAUTH_CLIENT_SECRET: &str = "KUBE_GATEWAY_OAUTH_CLIENT_SECRET";
/// Key of the OAuth client secret in its Secret.
pub const OAUTH_SECRET_KEY: &str = "clientSecret";
/// The non-root user the gateway and web-app containers run as on plain Kubernetes (distroless
/// "nonroot"); on OpenShift the SCC picks the user (see [`Platform`]).
pub const RUN_AS_USER: i64 = 65532;

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The operator-wide default images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayDefaults {
    /// Image for GateServers without `image`.
    pub gateway_image: String,
    /// Image for GateServers without `webAppImage`; `None` means no web application.
    pub web_app_image: Option<String>,
}

impl Default for GatewayDefaults {
    /// Our images at the operator's version.
    fn default() -> Self {
        let version = env!("CARGO_PKG_VERSION");
        Self {
            gateway_image: format!("{GATEWAY_IMAGE_REPOSITORY}:{version}"),
            web_app_image: Some(format!("{WEB_APP_IMAGE_REPOSITORY}:{version}")),
        }
    }
}

/// Everything besides the GateServer and its key Secret that shapes the gateway Deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayOptions {
    /// The operator-wide default images.
    pub defaults: GatewayDefaults,
    /// The OAuth client id when interactive OAuth login is enabled (HTTPS gateway with an
    /// OAuthClient); `None` adds `-oauth-server-disable`.
    pub oauth_client_id: Option<String>,
    /// The kind of cluster, which decides who picks the pod's user.
    pub platform: Platform,
}

/// The kind of cluster the gateway pod runs on, as far as its security context is concerned.
/// Both kinds get the Pod Security `restricted` profile (non-root, seccomp `RuntimeDefault`, no
/// capabilities, no privilege escalation, read-only root filesystem); they differ in who picks
/// the user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Platform {
    /// Plain Kubernetes: a fixed non-root user and group ([`RUN_AS_USER`]), so that images that
    /// default to root (the upstream Go gateway of the seed sample) still run as non-root.
    #[default]
    Kubernetes,
    /// OpenShift: no fixed user or group. The default SCC `restricted-v2` assigns a UID from the
    /// namespace's range and refuses any UID outside it, so a fixed 65532 would need the
    /// `nonroot-v2` SCC; without one the pod runs under `restricted-v2` as it is.
    OpenShift,
}

impl Platform {
    /// The user (and group) the pod's containers are given explicitly, if any.
    pub fn run_as_user(self) -> Option<i64> {
        match self {
            Self::Kubernetes => Some(RUN_AS_USER),
            Self::OpenShift => None,
        }
    }
}

/// Which optional APIs the cluster serves (from API discovery).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiAvailability {
    /// `route.openshift.io/v1` `routes`.
    pub route: bool,
    /// `oauth.openshift.io/v1` `oauthclients`.
    pub oauth_client: bool,
    /// `security.openshift.io/v1` `securitycontextconstraints`: OpenShift's SCC admission judges
    /// the pods, so the cluster is treated as OpenShift.
    pub security_context_constraints: bool,
}

impl ApiAvailability {
    /// The kind of cluster: OpenShift where SCCs exist. SCCs, not Routes, decide it: they are
    /// what admits or refuses the pod, and a Route API can exist without them.
    pub fn platform(&self) -> Platform {
        if self.security_context_constraints {
            Platform::OpenShift
        } else {
            Platform::Kubernetes
        }
    }
}

/// How the gateway is exposed, for the `Exposed` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exposure {
    /// An Ingress for the host.
    Ingress {
        /// The host name (`route`).
        host: String,
    },
    /// An OpenShift Route (with the host when `route` is set; OpenShift picks one otherwise).
    Route {
        /// The host name (`route`).
        host: Option<String>,
    },
    /// `generateRoute` is true but the cluster does not serve the Route API.
    RouteApiMissing,
    /// No `route` to build an Ingress for.
    NoHost,
}

/// What happens about the OAuthClient, for the `OAuthClient` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthPlan {
    /// `generateOauthClient` is false.
    NotRequested,
    /// An OAuthClient is created and the gateway logs users in through it.
    Client {
        /// The OAuthClient's name (= client id).
        name: String,
    },
    /// Requested but not possible; the condition reason and message say why.
    Unavailable {
        /// Condition reason.
        reason: &'static str,
        /// Condition message.
        message: String,
    },
}

/// Everything besides the GateServer that [`build_server`] needs.
#[derive(Debug, Clone, Copy)]
pub struct ServerInputs<'a> {
    /// The GateServer (as stored: with name, namespace and uid).
    pub server: &'a GateServer,
    /// The signing-key Secret of the namespace, if it exists.
    pub key_secret: Option<&'a Secret>,
    /// The operator-wide default images.
    pub defaults: &'a GatewayDefaults,
    /// Optional APIs of the cluster.
    pub apis: ApiAvailability,
    /// The OAuth client secret (from the Secret the operator created once), when an OAuthClient
    /// is wanted and the secret exists.
    pub oauth_client_secret: Option<&'a str>,
}

/// Every object a GateServer should have, plus what the status needs to say about exposure and
/// OAuth.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredServer {
    /// ServiceAccount `<name>` the gateway runs as.
    pub service_account: ServiceAccount,
    /// ClusterRole `virt-gateway:<ns>:<name>`: the `serviceAccount*` rule.
    pub cluster_role: ClusterRole,
    /// ClusterRoleBinding `virt-gateway:<ns>:<name>` when `serviceAccountNamespace` is `*`.
    pub cluster_role_binding: Option<ClusterRoleBinding>,
    /// RoleBinding `virt-gateway:<ns>:<name>` in `serviceAccountNamespace` otherwise.
    pub access_role_binding: Option<RoleBinding>,
    /// Role `<name>-gatetoken-reader`: get/list/watch GateTokens (revocation).
    pub token_reader_role: Role,
    /// Its RoleBinding to the gateway ServiceAccount.
    pub token_reader_binding: RoleBinding,
    /// RoleBinding `<name>-console-leases` of the ClusterRole `virt-gateway-console-leases` to
    /// the gateway ServiceAccount, when its replicas coordinate shared consoles.
    pub console_leases_binding: Option<RoleBinding>,
    /// Service `<name>` (ClusterIP, port 8080).
    pub service: Service,
    /// PodDisruptionBudget `<name>` (at most one replica unavailable) when `replicas` > 1.
    pub disruption_budget: Option<PodDisruptionBudget>,
    /// Ingress `<name>` (when not `generateRoute` and `route` is set).
    pub ingress: Option<Ingress>,
    /// Route `<name>` (when `generateRoute` and the Route API exists).
    pub route: Option<DynamicObject>,
    /// OAuthClient (when requested and possible).
    pub oauth_client: Option<DynamicObject>,
    /// Deployment `<name>`: the gateway.
    pub deployment: Deployment,
    /// How the gateway is exposed.
    pub exposure: Exposure,
    /// What happens about the OAuthClient.
    pub oauth: OAuthPlan,
}

/// The desired objects of a GateServer.
pub fn build_server(inputs: ServerInputs<'_>) -> Result<DesiredServer, BuildError> {
    let server = inputs.server;
    let (ns, name, owner) = identity(server, "GateServer")?;
    let spec = &server.spec;
    let access_name = server_access_name(&ns, &name);

    let meta = |obj_name: &str, component: &str, owned: bool| ObjectMeta {
        name: Some(obj_name.to_owned()),
        namespace: Some(ns.clone()),
        labels: Some(server_labels(&ns, &name, component)),
        annotations: Some(server_annotations(&ns, &name)),
        owner_references: owned.then(|| vec![owner.clone()]),
        ..ObjectMeta::default()
    };
    let cluster_meta = |obj_name: &str, component: &str| ObjectMeta {
        namespace: None,
        ..meta(obj_name, component, false)
    };
    let gateway_subject = Subject {
        kind: "ServiceAccount".to_owned(),
        name: name.clone(),
        namespace: Some(ns.clone()),
        api_group: None,
    };

    let service_account = ServiceAccount {
        metadata: meta(&name, COMPONENT_GATEWAY, true),
        ..ServiceAccount::default()
    };

    // The serviceAccount* rule: a resource rule or a non-resource rule, never both (RBAC
    // rejects a rule that mixes them). `[]` means "nothing" (no rule), as in a JWT.
    let effective = spec.effective_rule()?;
    let cluster_role = ClusterRole {
        metadata: cluster_meta(&access_name, COMPONENT_ACCESS),
        rules: Some(effective.policy_rule().into_iter().collect()),
        aggregation_rule: None,
    };
    let role_ref = crate::rbac::cluster_role_ref(&access_name);
    let (cluster_role_binding, access_role_binding) = if spec.service_account_namespace == "*" {
        (
            Some(ClusterRoleBinding {
                metadata: cluster_meta(&access_name, COMPONENT_ACCESS),
                role_ref: role_ref.clone(),
                subjects: Some(vec![gateway_subject.clone()]),
            }),
            None,
        )
    } else {
        let target = spec.service_account_namespace.clone();
        let own = target == ns;
        let mut metadata = meta(&access_name, COMPONENT_ACCESS, own);
        metadata.namespace = Some(target);
        (
            None,
            Some(RoleBinding {
                metadata,
                role_ref: role_ref.clone(),
                subjects: Some(vec![gateway_subject.clone()]),
            }),
        )
    };

    let reader_name = token_reader_name(&name);
    let token_reader_role = Role {
        metadata: meta(&reader_name, COMPONENT_TOKEN_READER, true),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![virt_gateway_api::GROUP.to_owned()]),
            resources: Some(vec!["gatetokens".to_owned()]),
            verbs: vec!["get".to_owned(), "list".to_owned(), "watch".to_owned()],
            ..PolicyRule::default()
        }]),
    };
    let token_reader_binding = RoleBinding {
        metadata: meta(&reader_name, COMPONENT_TOKEN_READER, true),
        role_ref: crate::rbac::role_ref(&reader_name),
        subjects: Some(vec![gateway_subject.clone()]),
    };
    let console_leases_binding = spec.coordinates_consoles().then(|| {
        let binding_name = console_leases_name(&name);
        RoleBinding {
            metadata: meta(&binding_name, COMPONENT_CONSOLE_LEASES, true),
            role_ref: crate::rbac::cluster_role_ref(CONSOLE_LEASES_ROLE),
            subjects: Some(vec![gateway_subject]),
        }
    });

    let https = spec.generate_route;
    let mut service_meta = meta(&name, COMPONENT_GATEWAY, true);
    if https {
        // On OpenShift the service-CA operator then creates the serving certificate Secret
        // `<name>-secret` (tls.crt, tls.key) that the HTTPS gateway mounts (Gen B).
        service_meta.annotations.get_or_insert_default().insert(
            "service.alpha.openshift.io/serving-cert-secret-name".to_owned(),
            format!("{name}-secret"),
        );
    }
    let service = Service {
        metadata: service_meta,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(BTreeMap::from([(LABEL_APP.to_owned(), label_value(&name))])),
            ports: Some(vec![ServicePort {
                name: Some(port_name(https).to_owned()),
                port: GATEWAY_PORT,
                target_port: Some(IntOrString::Int(GATEWAY_PORT)),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    };

    // Several replicas are for availability: a node drain must not evict them all at once.
    let disruption_budget = (spec.replicas() > 1).then(|| PodDisruptionBudget {
        metadata: meta(&name, COMPONENT_GATEWAY, true),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(gateway_selector(&name)),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    });

    let host = spec.route().map(str::to_owned);
    let (ingress, route, exposure) = if spec.generate_route {
        if inputs.apis.route {
            let route = route_object(meta(&name, COMPONENT_GATEWAY, true), &name, host.as_deref());
            (None, Some(route), Exposure::Route { host: host.clone() })
        } else {
            (None, None, Exposure::RouteApiMissing)
        }
    } else if let Some(host) = host.clone() {
        let ingress = Ingress {
            metadata: ObjectMeta {
                annotations: Some({
                    let mut a = server_annotations(&ns, &name);
                    // ingress-nginx closes idle upstream connections after 60 s by default,
                    // which ends quiet VNC WebSockets; other controllers ignore these.
                    a.insert(
                        "nginx.ingress.kubernetes.io/proxy-read-timeout".to_owned(),
                        "3600".to_owned(),
                    );
                    a.insert(
                        "nginx.ingress.kubernetes.io/proxy-send-timeout".to_owned(),
                        "3600".to_owned(),
                    );
                    a
                }),
                ..meta(&name, COMPONENT_GATEWAY, true)
            },
            spec: Some(IngressSpec {
                ingress_class_name: spec.ingress_class_name.clone().filter(|c| !c.is_empty()),
                rules: Some(vec![IngressRule {
                    host: Some(host.clone()),
                    http: Some(HTTPIngressRuleValue {
                        paths: vec![HTTPIngressPath {
                            path: Some("/".to_owned()),
                            path_type: "Prefix".to_owned(),
                            backend: IngressBackend {
                                service: Some(IngressServiceBackend {
                                    name: name.clone(),
                                    port: Some(ServiceBackendPort {
                                        number: Some(GATEWAY_PORT),
                                        name: None,
                                    }),
                                }),
                                resource: None,
                            },
                        }],
                    }),
                }]),
                tls: spec
                    .ingress_tls_secret_name
                    .clone()
                    .filter(|s| !s.is_empty())
                    .map(|secret| {
                        vec![IngressTLS {
                            hosts: Some(vec![host.clone()]),
                            secret_name: Some(secret),
                        }]
                    }),
                default_backend: None,
            }),
            status: None,
        };
        (Some(ingress), None, Exposure::Ingress { host })
    } else {
        (None, None, Exposure::NoHost)
    };

    let oauth = oauth_plan(server, &ns, &name, inputs);
    let oauth_client = match (&oauth, inputs.oauth_client_secret, host.as_deref()) {
        (OAuthPlan::Client { name: client }, Some(secret), Some(host)) => Some(
            oauth_client_object(cluster_meta(client, COMPONENT_OAUTH), secret, host),
        ),
        _ => None,
    };
    let oauth_client_id = match &oauth {
        OAuthPlan::Client { name } if oauth_client.is_some() => Some(name.clone()),
        _ => None,
    };

    let deployment = gateway_deployment(
        server,
        inputs.key_secret,
        &GatewayOptions {
            defaults: inputs.defaults.clone(),
            oauth_client_id,
            platform: inputs.apis.platform(),
        },
    )?;

    Ok(DesiredServer {
        service_account,
        cluster_role,
        cluster_role_binding,
        access_role_binding,
        token_reader_role,
        token_reader_binding,
        console_leases_binding,
        service,
        disruption_budget,
        ingress,
        route,
        oauth_client,
        deployment,
        exposure,
        oauth,
    })
}

fn oauth_plan(server: &GateServer, ns: &str, name: &str, inputs: ServerInputs<'_>) -> OAuthPlan {
    let spec = &server.spec;
    if !spec.generate_oauth_client {
        return OAuthPlan::NotRequested;
    }
    if !inputs.apis.oauth_client {
        return OAuthPlan::Unavailable {
            reason: "OAuthAPIUnavailable",
            message: "generateOauthClient is true but this cluster does not serve oauth.openshift.io/v1 oauthclients (OpenShift only): no OAuthClient was created and the gateway runs without interactive login".to_owned(),
        };
    }
    if !spec.generate_route {
        return OAuthPlan::Unavailable {
            reason: "OAuthNeedsRoute",
            message: "generateOauthClient needs generateRoute: true: interactive OAuth login only runs on the HTTPS gateway behind a Route".to_owned(),
        };
    }
    if !inputs.apis.route {
        return OAuthPlan::Unavailable {
            reason: "OAuthNeedsRoute",
            message: "generateOauthClient needs a Route, and this cluster does not serve route.openshift.io/v1".to_owned(),
        };
    }
    if spec.route().is_none() {
        return OAuthPlan::Unavailable {
            reason: "OAuthNeedsRouteHost",
            message: "generateOauthClient needs spec.route: the OAuth redirect URI is https://<route>/auth/callback".to_owned(),
        };
    }
    OAuthPlan::Client {
        name: oauth_client_name(ns, name),
    }
}

fn port_name(https: bool) -> &'static str {
    if https { "https" } else { "http" }
}

fn route_object(metadata: ObjectMeta, service: &str, host: Option<&str>) -> DynamicObject {
    let mut spec = json!({
        "to": {"kind": "Service", "name": service, "weight": 100},
        "port": {"targetPort": GATEWAY_PORT},
        "tls": {"termination": "reencrypt", "insecureEdgeTerminationPolicy": "Redirect"},
        "wildcardPolicy": "None",
    });
    if let Some(host) = host {
        spec["host"] = json!(host);
    }
    DynamicObject {
        types: Some(kube::api::TypeMeta {
            api_version: "route.openshift.io/v1".to_owned(),
            kind: "Route".to_owned(),
        }),
        metadata,
        data: json!({ "spec": spec }),
    }
}

fn oauth_client_object(metadata: ObjectMeta, secret: &str, host: &str) -> DynamicObject {
    DynamicObject {
        types: Some(kube::api::TypeMeta {
            api_version: "oauth.openshift.io/v1".to_owned(),
            kind: "OAuthClient".to_owned(),
        }),
        metadata,
        data: json!({
            "grantMethod": "auto",
            "secret": secret,
            "redirectURIs": [format!("https://{host}/auth/callback")],
        }),
    }
}

/// The gateway's command line: Gen B's flags only (§1.5.1), which both the upstream Go gateway
/// and ours accept, in Gen B's order. Fixed from Gen B: the CA is always the ServiceAccount's
/// `ca.crt` (Gen B's HTTPS variant named the service CA, which does not sign the API server);
/// OAuth login is only enabled with an OAuthClient (otherwise `-oauth-server-disable`, also in
/// HTTPS mode); `-base-address` is only passed with a `route`; the OAuth client secret comes
/// from an environment variable instead of a predictable literal.
pub fn gateway_command(server: &GateServer, oauth_client_id: Option<&str>) -> Vec<String> {
    let spec = &server.spec;
    // OIDC sign-in, when configured, is the login; the gateway refuses both at once.
    let oidc = oidc_flags(server);
    let oauth_client_id = oauth_client_id.filter(|_| oidc.is_empty());
    let https = spec.generate_route;
    let mut c = vec![
        "./kube-gateway".to_owned(),
        format!("-api-server={}", spec.api_url),
        format!("-ca-file={SA_DIR}/ca.crt"),
    ];
    if https {
        c.push(format!("-cert-file={TLS_MOUNT_PATH}/tls.crt"));
        c.push(format!("-key-file={TLS_MOUNT_PATH}/tls.key"));
    }
    if oauth_client_id.is_none() {
        c.push("-oauth-server-disable".to_owned());
    }
    if let Some(route) = spec.route() {
        c.push(format!("-base-address=https://{route}"));
    }
    c.push(format!(
        "-listen={}://0.0.0.0:{GATEWAY_PORT}",
        port_name(https)
    ));
    c.push(format!(
        "-jwt-token-key-file={JWT_MOUNT_PATH}/{JWT_SECRET_PUBLIC_KEY}"
    ));
    c.push(format!("-k8s-bearer-token-file={SA_DIR}/token"));
    c.push(format!(
        "-k8s-bearer-token-passthrough={}",
        spec.pass_through
    ));
    if let Some(id) = oauth_client_id {
        c.push(format!("-oauth-client-id={id}"));
        c.push(format!("-oauth-client-secret=$({ENV_OAUTH_CLIENT_SECRET})"));
        c.push(format!(
            "--signin-key-file={SIGNIN_KEY_MOUNT_PATH}/{SIGNIN_KEY_SECRET_KEY}"
        ));
    }
    c.extend(oidc);
    c
}

/// Whether the gateway signs people in (OIDC, or OpenShift OAuth with an OAuthClient), and so
/// needs the sealing key.
pub fn signs_in(server: &GateServer, oauth_client_id: Option<&str>) -> bool {
    !oidc_flags(server).is_empty() || oauth_client_id.is_some()
}

/// The gateway's OIDC sign-in flags (our gateway only; nothing without `oidc` and a redirect URL:
/// `oidc.redirectURL` or `route`).
pub fn oidc_flags(server: &GateServer) -> Vec<String> {
    let spec = &server.spec;
    let (Some(oidc), Some(redirect)) = (&spec.oidc, spec.signin_redirect_url()) else {
        return Vec::new();
    };
    let mut c = vec![
        format!("--oidc-issuer-url={}", oidc.issuer_url.trim()),
        format!("--oidc-client-id={}", oidc.client_id.trim()),
        format!("--oidc-client-secret-file={OIDC_MOUNT_PATH}/client-secret"),
        format!("--signin-key-file={SIGNIN_KEY_MOUNT_PATH}/{SIGNIN_KEY_SECRET_KEY}"),
        format!("--signin-redirect-url={redirect}"),
    ];
    if let Some(scopes) = &oidc.scopes {
        c.push(format!("--oidc-scopes={}", scopes.join(",")));
    }
    if let Some(claim) = &oidc.username_claim {
        c.push(format!("--oidc-username-claim={claim}"));
    }
    if let Some(claim) = &oidc.groups_claim {
        c.push(format!("--oidc-groups-claim={claim}"));
    }
    if oidc.ca_config_map_name.is_some() {
        c.push(format!("--signin-ca-file={OIDC_CA_MOUNT_PATH}/ca.crt"));
    }
    c
}

fn quantity(s: &str) -> Quantity {
    Quantity(s.to_owned())
}

/// Replicas on one node all go with it: prefer one per node, but still schedule them all when
/// there are fewer nodes (a soft constraint, so a one-node cluster runs every replica).
fn spread_over_nodes(name: &str) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew: 1,
        topology_key: "kubernetes.io/hostname".to_owned(),
        when_unsatisfiable: "ScheduleAnyway".to_owned(),
        label_selector: Some(gateway_selector(name)),
        ..TopologySpreadConstraint::default()
    }
}

/// The gateway pods of GateServer `name`: Gen B's Deployment selector.
fn gateway_selector(name: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(LABEL_APP.to_owned(), label_value(name))])),
        match_expressions: None,
    }
}

/// What a replica needs to coordinate shared consoles with the others (gateway README, "Shared
/// consoles across replicas"): its pod name (the Leases' holder), its namespace (where the
/// Leases are) and its pod IP (where the other replicas forward a console's viewers), all from
/// the downward API.
fn console_coordination_env() -> [EnvVar; 3] {
    let field = crate::manifests::env_field;
    [
        field("KUBE_GATEWAY_POD_NAME", "metadata.name"),
        field("KUBE_GATEWAY_POD_NAMESPACE", "metadata.namespace"),
        field("KUBE_GATEWAY_CONSOLE_PEER_ADDRESS", "status.podIP"),
    ]
}

fn restricted_security_context(platform: Platform) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: platform.run_as_user(),
        run_as_group: platform.run_as_user(),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

fn probe(our_image: bool, https: bool, path: &str, period: i32, failures: i32) -> Probe {
    let port = IntOrString::Int(GATEWAY_PORT);
    let mut p = Probe {
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    };
    if our_image {
        p.http_get = Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port,
            scheme: Some(if https { "HTTPS" } else { "HTTP" }.to_owned()),
            ..HTTPGetAction::default()
        });
    } else {
        p.tcp_socket = Some(TCPSocketAction { port, host: None });
    }
    p
}

/// The gateway Deployment of a GateServer, exactly as the operator applies it. Pure: the demo
/// and the end-to-end tests read it to run the gateway "as the operator wrote it".
///
/// `key_secret` is the namespace's `kube-gateway-jwt-secret` when it exists: the key id of its
/// public key goes into a pod-template annotation, so replacing the key rolls the gateway.
pub fn gateway_deployment(
    server: &GateServer,
    key_secret: Option<&Secret>,
    options: &GatewayOptions,
) -> Result<Deployment, BuildError> {
    let (ns, name, owner) = identity(server, "GateServer")?;
    let spec = &server.spec;
    let https = spec.generate_route;
    let image = spec.image_or(&options.defaults.gateway_image).to_owned();
    // Our gateway serves /healthz and /readyz; the upstream Go gateway has neither, so any other
    // image gets TCP probes, which both pass.
    let our_image = image == options.defaults.gateway_image;
    let web_app_image = spec
        .web_app_image_or(options.defaults.web_app_image.as_deref())
        .map(str::to_owned);

    let labels = server_labels(&ns, &name, COMPONENT_GATEWAY);
    let mut template_annotations = BTreeMap::new();
    if let Some(kid) = key_secret.and_then(|s| keysecret::public_key(s).ok()) {
        template_annotations.insert(ANNOTATION_KID.to_owned(), kid.kid().to_owned());
    }

    let mut volumes = vec![Volume {
        name: "kube-gateway-jwt-secret".to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(JWT_SECRET_NAME.to_owned()),
            // Only the public key: the private key never enters the gateway pod.
            items: Some(vec![KeyToPath {
                key: JWT_SECRET_PUBLIC_KEY.to_owned(),
                path: JWT_SECRET_PUBLIC_KEY.to_owned(),
                mode: None,
                user: None,
            }]),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "kube-gateway-jwt-secret".to_owned(),
        mount_path: JWT_MOUNT_PATH.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }];
    let mut init_containers = Vec::new();
    if let Some(web_image) = &web_app_image {
        volumes.push(Volume {
            name: "web-application".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
        let web_mount = VolumeMount {
            name: "web-application".to_owned(),
            mount_path: WEB_APP_MOUNT_PATH.to_owned(),
            ..VolumeMount::default()
        };
        mounts.push(VolumeMount {
            read_only: Some(true),
            ..web_mount.clone()
        });
        init_containers.push(Container {
            name: WEB_APP_CONTAINER.to_owned(),
            image: Some(web_image.clone()),
            command: Some(
                ["/bin/cp", "-r", "/data/web/public", "/app/web/"]
                    .map(str::to_owned)
                    .to_vec(),
            ),
            volume_mounts: Some(vec![web_mount]),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_owned(), quantity("10m")),
                    ("memory".to_owned(), quantity("16Mi")),
                ])),
                limits: Some(BTreeMap::from([("memory".to_owned(), quantity("64Mi"))])),
                ..ResourceRequirements::default()
            }),
            security_context: Some(restricted_security_context(options.platform)),
            ..Container::default()
        });
    }
    if https {
        volumes.push(Volume {
            name: "kube-gateway-secret".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(format!("{name}-secret")),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "kube-gateway-secret".to_owned(),
            mount_path: TLS_MOUNT_PATH.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    {
        // Only the client secret's key of the person's Secret, and the generated sealing key.
        let secret_volume = |volume: &str, secret: String, key: &str, path: &str| Volume {
            name: volume.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                items: Some(vec![KeyToPath {
                    key: key.to_owned(),
                    path: path.to_owned(),
                    mode: None,
                    user: None,
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        };
        let mut mount = |volume: &str, path: &str| {
            mounts.push(VolumeMount {
                name: volume.to_owned(),
                mount_path: path.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            })
        };
        if let (Some(oidc), Some(_)) = (&spec.oidc, spec.signin_redirect_url()) {
            volumes.push(secret_volume(
                "oidc-client",
                oidc.client_secret_name.clone(),
                oidc.secret_key(),
                "client-secret",
            ));
            mount("oidc-client", OIDC_MOUNT_PATH);
            if let Some(ca) = &oidc.ca_config_map_name {
                volumes.push(Volume {
                    name: "oidc-ca".to_owned(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: ca.clone(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".to_owned(),
                            path: "ca.crt".to_owned(),
                            mode: None,
                            user: None,
                        }]),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                });
                mount("oidc-ca", OIDC_CA_MOUNT_PATH);
            }
        }
        if signs_in(server, options.oauth_client_id.as_deref()) {
            volumes.push(secret_volume(
                "signin-key",
                signin_key_secret_name(&name),
                SIGNIN_KEY_SECRET_KEY,
                SIGNIN_KEY_SECRET_KEY,
            ));
            mount("signin-key", SIGNIN_KEY_MOUNT_PATH);
        }
    }
    volumes.push(Volume {
        name: "tmp".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    });
    mounts.push(VolumeMount {
        name: "tmp".to_owned(),
        mount_path: "/tmp".to_owned(),
        ..VolumeMount::default()
    });

    let var = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    };
    let mut env = Vec::new();
    // Pass-through forwards the caller's own credential unchecked, so there is nothing to
    // revoke; the gateway refuses the two together (review §16: it crash-looped).
    if !spec.pass_through {
        env.push(var("KUBE_GATEWAY_REVOCATION_NAMESPACES", ns.clone()));
    }
    // Review §6: tokens naming another GateServer are refused; iss names the namespace key.
    env.push(var(
        "KUBE_GATEWAY_AUDIENCE",
        virt_gateway_api::names::gateserver_audience(&ns, &name),
    ));
    env.push(var(
        "KUBE_GATEWAY_ISSUER",
        virt_gateway_api::names::token_issuer(&ns),
    ));
    if spec.require_audience {
        env.push(var("KUBE_GATEWAY_REQUIRE_AUDIENCE", "true".into()));
    }
    if spec.publish_jwks {
        env.push(var("KUBE_GATEWAY_PUBLISH_JWKS", "true".into()));
    }
    if let Ok(origins) = spec.origins()
        && !origins.is_empty()
    {
        env.push(var("KUBE_GATEWAY_ALLOWED_ORIGINS", origins.join(",")));
    }
    // Every limit set on the GateServer becomes the gateway flag of the same name (as its
    // environment variable); durations are whole seconds, which the gateway reads as such.
    for (flag, value) in spec.limits.iter().flat_map(|l| l.flags()) {
        let name = format!(
            "KUBE_GATEWAY_{}",
            flag.to_ascii_uppercase().replace('-', "_")
        );
        env.push(var(&name, value.to_string()));
    }
    // Issue 16: shared consoles and the policy for several controllers, as the gateway's flags
    // (an absent policy is left to the gateway's default, take-over).
    for (flag, value) in spec.consoles.iter().flat_map(|c| c.flags()) {
        let name = format!(
            "KUBE_GATEWAY_{}",
            flag.to_ascii_uppercase().replace('-', "_")
        );
        env.push(var(&name, value.to_owned()));
    }
    if spec.coordinates_consoles() {
        env.extend(console_coordination_env());
    }
    env.extend([
        EnvVar {
            name: "KUBE_GATEWAY_METRICS_LISTEN".to_owned(),
            value: Some(format!("0.0.0.0:{GATEWAY_METRICS_PORT}")),
            value_from: None,
        },
        EnvVar {
            name: "KUBE_GATEWAY_LOG_FORMAT".to_owned(),
            value: Some("json".to_owned()),
            value_from: None,
        },
    ]);
    if options.oauth_client_id.is_some() {
        env.push(EnvVar {
            name: ENV_OAUTH_CLIENT_SECRET.to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: oauth_secret_name(&name),
                    key: OAUTH_SECRET_KEY.to_owned(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        });
    }

    let container = Container {
        name: GATEWAY_CONTAINER.to_owned(),
        image: Some(image),
        command: Some(gateway_command(server, options.oauth_client_id.as_deref())),
        env: Some(env),
        ports: Some(vec![
            ContainerPort {
                container_port: GATEWAY_PORT,
                name: Some(port_name(https).to_owned()),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
            ContainerPort {
                container_port: GATEWAY_METRICS_PORT,
                name: Some("metrics".to_owned()),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
        ]),
        volume_mounts: Some(mounts),
        liveness_probe: Some(probe(our_image, https, "/healthz", 10, 3)),
        readiness_probe: Some(probe(our_image, https, "/readyz", 5, 2)),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), quantity("50m")),
                ("memory".to_owned(), quantity("64Mi")),
            ])),
            limits: Some(BTreeMap::from([("memory".to_owned(), quantity("512Mi"))])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(restricted_security_context(options.platform)),
        ..Container::default()
    };

    Ok(Deployment {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(labels.clone()),
            annotations: Some(server_annotations(&ns, &name)),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            replicas: Some(spec.replicas()),
            // Gen B's selector, kept exactly: it is immutable, and keeping it adopts Gen B's
            // Deployments in place.
            selector: gateway_selector(&name),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: (!template_annotations.is_empty()).then_some(template_annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(name.clone()),
                    automount_service_account_token: Some(true),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: options.platform.run_as_user(),
                        run_as_group: options.platform.run_as_user(),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    init_containers: (!init_containers.is_empty()).then_some(init_containers),
                    topology_spread_constraints: (spec.replicas() > 1)
                        .then(|| vec![spread_over_nodes(&name)]),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        status: None,
    })
}

/// Review §2: the upstream (Go) gateway accepts HS256 tokens whose HMAC secret is the bytes of
/// its verification key file, which anyone can rebuild from a published JWKS. Every GateServer
/// of a namespace shares its key, so a namespace where one gateway publishes the JWKS and another
/// (or the same one) runs an image other than ours lets anyone forge tokens for the latter. The
/// warning for `server`, given the GateServers of its namespace (`peers`, which may include
/// itself) and the operator's own gateway image; `None` when there is no such pairing.
pub fn jwks_forgery_warning(
    server: &GateServer,
    peers: &[GateServer],
    our_image: &str,
) -> Option<String> {
    let foreign = |gs: &GateServer| gs.spec.image_or(our_image) != our_image;
    let name = |gs: &GateServer| gs.metadata.name.clone().unwrap_or_default();
    let me = name(server);
    let others = peers.iter().filter(|p| name(p) != me);
    let image = server.spec.image_or(our_image);
    if foreign(server) && server.spec.publish_jwks {
        return Some(format!(
            "publishJWKS is set on a GateServer running {image}, which is not this operator's gateway: if that is the upstream Go gateway it ignores publishJWKS, and it accepts HS256 tokens signed with the public key, so wherever this namespace's key is published anyone can forge tokens for it. Run this operator's gateway image, or unset publishJWKS"
        ));
    }
    let pair: Vec<String> = if foreign(server) {
        others
            .filter(|p| p.spec.publish_jwks && !foreign(p))
            .map(name)
            .collect()
    } else if server.spec.publish_jwks {
        others.filter(|p| foreign(p)).map(name).collect()
    } else {
        Vec::new()
    };
    if pair.is_empty() {
        return None;
    }
    let (publishing, upstream) = if foreign(server) {
        (pair.join(", "), me)
    } else {
        (me, pair.join(", "))
    };
    Some(format!(
        "GateServer(s) {publishing} publish this namespace's key (publishJWKS) while {upstream} run(s) an image other than this operator's gateway: the upstream Go gateway accepts HS256 tokens signed with the public key, so anyone can forge tokens for it. Unset publishJWKS or run this operator's gateway image everywhere in the namespace"
    ))
}
