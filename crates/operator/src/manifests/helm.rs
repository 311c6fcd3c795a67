//! `deploy/helm/virt-gateway-operator`: the Helm chart, generated from the objects of
//! `deploy/virt-gateway-operator.yaml` ([`super::operator_objects`]), never kept by hand.
//!
//! Each object is turned into a template by putting placeholders into its YAML: a scalar
//! `__HELM_I<n>__` becomes an inline template expression (the release namespace, the image, the
//! replica count), and a mapping entry `__HELM_B<n>__: null` becomes template lines at that
//! entry's indentation (the labels Helm adds, optional fields, the resources block). Only what a
//! value changes is templated; the rest is the generator's YAML as it is, so the chart rendered
//! with its default values equals the plain manifest (a test in crates/deploy-tests checks it),
//! and an object added to the install set reaches the chart without a change here.

use serde_yaml::{Mapping, Value};

use super::{
    ESCALATE_NAME, GATEWAYS_POD_MONITOR_NAME, ManifestError, OPERATOR_IMAGE_REPOSITORY,
    OPERATOR_NAME, SERVICE_ACCOUNT_TOKENS_NAME, escalate_objects, monitoring_objects,
    operator_objects, service_account_tokens_objects,
};
use crate::builders::GatewayDefaults;
use crate::builders::server::{GATEWAY_IMAGE_REPOSITORY, WEB_APP_IMAGE_REPOSITORY};
use crate::rbac::{Rule, cluster_role};

/// The chart's directory under `deploy/`.
pub const CHART_DIR: &str = "helm/virt-gateway-operator";
/// The chart's name.
pub const CHART_NAME: &str = "virt-gateway-operator";
/// The oldest Kubernetes the chart installs on (CEL validation rules in the CRDs; the
/// ValidatingAdmissionPolicy API).
pub const KUBE_VERSION: &str = ">=1.30.0-0";
/// The pre-delete hook's ServiceAccount, ClusterRole and Job.
pub const UNINSTALL_NAME: &str = "virt-gateway-operator-uninstall";
/// Labels Helm adds to every object of the chart (`_helpers.tpl`), on top of the generator's.
pub const HELM_LABELS: &[&str] = &[
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
];
/// What the pre-delete hook may do: find and delete GateServers and GateTokens, nothing else.
pub const UNINSTALL_RULES: &[Rule] = &[Rule {
    api_groups: &["ocgate.yaacov.com"],
    resources: &["gateservers", "gatetokens"],
    verbs: &["get", "list", "watch", "delete"],
    resource_names: &[],
    why: "delete every GateServer and GateToken before the operator goes, and wait until the finalizers have run",
}];

const RELEASE_NAMESPACE: &str = "__HELM_RELEASE_NAMESPACE__";
const LABELS: &str = "virt-gateway-operator.labels";

/// The placeholders of one template file and what they become.
#[derive(Default)]
struct Template {
    inline: Vec<String>,
    blocks: Vec<Box<dyn Fn(usize) -> String>>,
}

impl Template {
    /// A scalar placeholder for `expr` (e.g. `{{ .Values.replicas }}`).
    fn inline(&mut self, expr: impl Into<String>) -> Value {
        self.inline.push(expr.into());
        Value::String(format!("__HELM_I{}__", self.inline.len() - 1))
    }

    /// Appends a block placeholder to `map`; `block(indent)` writes its lines at `indent`.
    fn block(&mut self, map: &mut Mapping, block: impl Fn(usize) -> String + 'static) {
        self.blocks.push(Box::new(block));
        map.insert(
            Value::String(format!("__HELM_B{}__", self.blocks.len() - 1)),
            Value::Null,
        );
    }

    /// The object as template text.
    fn render(&self, obj: &Value) -> Result<String, ManifestError> {
        let yaml = serde_yaml::to_string(obj)?;
        let mut out = String::new();
        for line in yaml.lines() {
            let body = line.trim_start();
            let indent = line.len() - body.len();
            if let Some(n) = body
                .strip_prefix("__HELM_B")
                .and_then(|r| r.strip_suffix("__: null"))
            {
                let n: usize = n.parse().map_err(|_| unsupported(line))?;
                out.push_str(&(self.blocks[n])(indent));
                continue;
            }
            if body.starts_with("- __HELM_B") {
                return Err(unsupported(line));
            }
            let mut line = line.replace(RELEASE_NAMESPACE, "{{ .Release.Namespace }}");
            // Highest index first, so that __HELM_I1__ does not match inside __HELM_I12__.
            for (n, expr) in self.inline.iter().enumerate().rev() {
                line = line.replace(&format!("__HELM_I{n}__"), expr);
            }
            out.push_str(&line);
            out.push('\n');
        }
        Ok(out)
    }
}

fn unsupported(line: &str) -> ManifestError {
    ManifestError::Unsupported(format!(
        "chart generator: cannot place a template at {line:?}"
    ))
}

fn pad(indent: usize) -> String {
    " ".repeat(indent)
}

/// `lines` (relative indentation) indented by `indent`.
fn at(indent: usize, lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| format!("{}{l}\n", pad(indent)))
        .collect()
}

fn map_at<'a>(v: &'a mut Value, path: &[&str]) -> Result<&'a mut Mapping, ManifestError> {
    let mut cur = v;
    for key in path {
        cur = cur.get_mut(*key).ok_or_else(|| {
            ManifestError::Unsupported(format!("chart generator: no {key} in {path:?}"))
        })?;
    }
    cur.as_mapping_mut().ok_or_else(|| {
        ManifestError::Unsupported(format!("chart generator: {path:?} is not a mapping"))
    })
}

/// Adds Helm's labels to `metadata.labels` (creating it).
fn helm_labels(t: &mut Template, obj: &mut Value) -> Result<(), ManifestError> {
    let metadata = map_at(obj, &["metadata"])?;
    let labels = metadata
        .entry(Value::String("labels".to_owned()))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    let labels = labels
        .as_mapping_mut()
        .ok_or_else(|| ManifestError::Unsupported("metadata.labels is not a mapping".to_owned()))?;
    t.block(labels, |i| {
        format!(
            "{}{{{{- include \"{LABELS}\" . | nindent {i} }}}}\n",
            pad(i)
        )
    });
    Ok(())
}

fn kind(obj: &Value) -> &str {
    obj["kind"].as_str().unwrap_or_default()
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

/// One template file: a header, optional text around the objects, the objects.
fn file(
    what: &str,
    condition: Option<&str>,
    prefix: &str,
    objects: Vec<(Template, Value)>,
) -> Result<String, ManifestError> {
    let mut out = format!(
        "{{{{- /* {what}\n   Generated by virt-gateway-operator (crates/operator/src/manifests/helm.rs) from the objects of deploy/virt-gateway-operator.yaml; do not edit.\n   Regenerate with: {} */ -}}}}\n",
        super::REGENERATE_COMMAND
    );
    if let Some(c) = condition {
        out.push_str(&format!("{{{{- if {c} }}}}\n"));
    }
    out.push_str(prefix);
    for (t, obj) in objects {
        out.push_str("---\n");
        out.push_str(&t.render(&obj)?);
    }
    if condition.is_some() {
        out.push_str("{{- end }}\n");
    }
    Ok(out)
}

/// A template for any object: release namespace and Helm's labels.
fn generic(obj: Value) -> Result<(Template, Value), ManifestError> {
    let mut t = Template::default();
    let mut obj = obj;
    helm_labels(&mut t, &mut obj)?;
    Ok((t, obj))
}

fn crd(obj: Value) -> Result<(Template, Value), ManifestError> {
    let (mut t, mut obj) = generic(obj)?;
    let metadata = map_at(&mut obj, &["metadata"])?;
    t.block(metadata, |i| {
        at(
            i,
            &[
                "{{- if .Values.crds.keep }}",
                "annotations:",
                "  helm.sh/resource-policy: keep",
                "{{- end }}",
            ],
        )
    });
    Ok((t, obj))
}

/// The `--flag` arguments of the generated operator container, templated where a value decides.
fn args_block(args: &[String]) -> Result<impl Fn(usize) -> String + 'static, ManifestError> {
    let mut lines = vec!["args:".to_owned()];
    let mut seen_leader = false;
    let mut seen_format = false;
    for a in args {
        match a.as_str() {
            "--leader-elect" => {
                seen_leader = true;
                lines.extend([
                    "{{- if .Values.leaderElection.enabled }}".to_owned(),
                    "- --leader-elect".to_owned(),
                    "{{- end }}".to_owned(),
                ]);
            }
            a if a.starts_with("--log-format=") => {
                seen_format = true;
                lines.push("- --log-format={{ .Values.logFormat }}".to_owned());
            }
            a => lines.push(format!("- {}", serde_yaml::to_string(a)?.trim_end())),
        }
    }
    if !(seen_leader && seen_format) {
        return Err(ManifestError::Unsupported(format!(
            "chart generator: the operator's arguments {args:?} lack --leader-elect or --log-format, which values.yaml sets"
        )));
    }
    lines.extend([
        "{{- with .Values.logLevel }}".to_owned(),
        // Quoted: a filter is free text, and unquoted it could end the YAML scalar.
        "- {{ printf \"--log-level=%s\" . | quote }}".to_owned(),
        "{{- end }}".to_owned(),
    ]);
    Ok(move |i: usize| {
        lines
            .iter()
            .map(|l| format!("{}{l}\n", pad(i)))
            .collect::<String>()
    })
}

/// The generated environment, plus what values add: the watched namespace and the default images
/// when they differ from the operator's built-in ones.
fn env_block(env: &Value) -> Result<impl Fn(usize) -> String + 'static, ManifestError> {
    let defaults = GatewayDefaults::default();
    let web_app_default = defaults.web_app_image.unwrap_or_default();
    let generated = serde_yaml::to_string(env)?;
    Ok(move |i: usize| {
        let mut out = format!("{}env:\n", pad(i));
        for l in generated.lines() {
            out.push_str(&format!("{}{l}\n", pad(i)));
        }
        out.push_str(&at(
            i,
            &[
                "{{- with .Values.watchNamespace }}",
                "- name: WATCH_NAMESPACE",
                "  value: {{ . | quote }}",
                "{{- end }}",
                "{{- if .Values.serviceAccountTokens.enabled }}",
                "- name: VIRT_GATEWAY_ENABLE_SERVICE_ACCOUNT_TOKENS",
                "  value: \"true\"",
                "{{- end }}",
                "{{- $gateway := include \"virt-gateway-operator.gatewayImage\" . }}",
                &format!("{{{{- if ne $gateway \"{}\" }}}}", defaults.gateway_image),
                "- name: VIRT_GATEWAY_DEFAULT_GATEWAY_IMAGE",
                "  value: {{ $gateway | quote }}",
                "{{- end }}",
                "{{- $webApp := include \"virt-gateway-operator.webAppImage\" . }}",
                &format!("{{{{- if ne $webApp \"{web_app_default}\" }}}}"),
                "- name: VIRT_GATEWAY_DEFAULT_WEB_APP_IMAGE",
                "  value: {{ $webApp | quote }}",
                "{{- end }}",
            ],
        ));
        out
    })
}

/// Drops the fixed user and group from a container security context; puts them back unless the
/// chart installs on OpenShift (where the SCC assigns them).
fn fixed_user(t: &mut Template, sc: &mut Mapping) -> Result<(), ManifestError> {
    let user = sc.shift_remove("runAsUser");
    let group = sc.shift_remove("runAsGroup");
    let (Some(user), Some(group)) = (user, group) else {
        return Err(ManifestError::Unsupported(
            "chart generator: the operator container has no runAsUser/runAsGroup".to_owned(),
        ));
    };
    let (user, group) = (
        serde_yaml::to_string(&user)?.trim().to_owned(),
        serde_yaml::to_string(&group)?.trim().to_owned(),
    );
    t.block(sc, move |i| {
        at(
            i,
            &[
                "{{- if not (include \"virt-gateway-operator.openshift\" .) }}",
                &format!("runAsUser: {user}"),
                &format!("runAsGroup: {group}"),
                "{{- end }}",
            ],
        )
    });
    Ok(())
}

/// Pod-level scheduling and pull-secret values, appended to a pod spec.
fn pod_extras(t: &mut Template, pod: &mut Mapping) {
    t.block(pod, |i| {
        at(
            i,
            &[
                "{{- with .Values.imagePullSecrets }}",
                "imagePullSecrets:",
                &format!("  {{{{- toYaml . | nindent {} }}}}", i + 2),
                "{{- end }}",
                "{{- with .Values.nodeSelector }}",
                "nodeSelector:",
                &format!("  {{{{- toYaml . | nindent {} }}}}", i + 2),
                "{{- end }}",
                "{{- with .Values.tolerations }}",
                "tolerations:",
                &format!("  {{{{- toYaml . | nindent {} }}}}", i + 2),
                "{{- end }}",
                "{{- with .Values.affinity }}",
                "affinity:",
                &format!("  {{{{- toYaml . | nindent {} }}}}", i + 2),
                "{{- end }}",
                "{{- with .Values.priorityClassName }}",
                "priorityClassName: {{ . | quote }}",
                "{{- end }}",
            ],
        )
    });
}

fn image_pull_policy(t: &mut Template, container: &mut Mapping) {
    t.block(container, |i| {
        at(
            i,
            &[
                "{{- with .Values.image.pullPolicy }}",
                "imagePullPolicy: {{ . }}",
                "{{- end }}",
            ],
        )
    });
}

fn deployment(obj: Value) -> Result<(Template, Value), ManifestError> {
    let (mut t, mut obj) = generic(obj)?;
    let replicas = t.inline("{{ .Values.replicas }}");
    map_at(&mut obj, &["spec"])?.insert(Value::from("replicas"), replicas);

    let template_meta = map_at(&mut obj, &["spec", "template", "metadata"])?;
    let labels = template_meta
        .get_mut("labels")
        .and_then(Value::as_mapping_mut)
        .ok_or_else(|| ManifestError::Unsupported("pod template without labels".to_owned()))?;
    t.block(labels, |i| {
        at(
            i,
            &[
                "{{- with .Values.podLabels }}",
                &format!("{{{{- toYaml . | nindent {i} }}}}"),
                "{{- end }}",
            ],
        )
    });
    t.block(template_meta, |i| {
        at(
            i,
            &[
                "{{- with .Values.podAnnotations }}",
                "annotations:",
                &format!("  {{{{- toYaml . | nindent {} }}}}", i + 2),
                "{{- end }}",
            ],
        )
    });

    let pod = map_at(&mut obj, &["spec", "template", "spec"])?;
    pod_extras(&mut t, pod);
    let containers = pod
        .get_mut("containers")
        .and_then(Value::as_sequence_mut)
        .filter(|c| c.len() == 1)
        .ok_or_else(|| {
            ManifestError::Unsupported("the operator Deployment must have one container".to_owned())
        })?;
    let container = containers[0]
        .as_mapping_mut()
        .ok_or_else(|| ManifestError::Unsupported("container is not a mapping".to_owned()))?;
    let image = t.inline("{{ include \"virt-gateway-operator.operatorImage\" . | quote }}");
    container.insert(Value::from("image"), image);
    image_pull_policy(&mut t, container);

    let args: Vec<String> = container
        .shift_remove("args")
        .map(serde_yaml::from_value)
        .transpose()?
        .unwrap_or_default();
    let args = args_block(&args)?;
    t.block(container, args);
    let env = container
        .shift_remove("env")
        .unwrap_or(Value::Sequence(Vec::new()));
    let env = env_block(&env)?;
    t.block(container, env);
    container.shift_remove("resources");
    t.block(container, |i| {
        at(
            i,
            &[
                "resources:",
                &format!("  {{{{- toYaml .Values.resources | nindent {} }}}}", i + 2),
            ],
        )
    });
    let sc = container
        .get_mut("securityContext")
        .and_then(Value::as_mapping_mut)
        .ok_or_else(|| {
            ManifestError::Unsupported("operator container without securityContext".to_owned())
        })?;
    fixed_user(&mut t, sc)?;
    Ok((t, obj))
}

fn monitor(obj: Value, values: &'static str) -> Result<(Template, Value), ManifestError> {
    let (mut t, mut obj) = generic(obj)?;
    let labels = map_at(&mut obj, &["metadata", "labels"])?;
    t.block(labels, move |i| {
        at(
            i,
            &[
                &format!("{{{{- with .Values.{values}.labels }}}}"),
                &format!("{{{{- toYaml . | nindent {i} }}}}"),
                "{{- end }}",
            ],
        )
    });
    let endpoints = if kind(&obj) == "PodMonitor" {
        "podMetricsEndpoints"
    } else {
        "endpoints"
    };
    let interval = t.inline(format!("{{{{ .Values.{values}.interval | quote }}}}"));
    let what = format!("{} without {endpoints}", kind(&obj));
    let first = obj["spec"][endpoints][0]
        .as_mapping_mut()
        .ok_or(ManifestError::Unsupported(what))?;
    first.insert(Value::from("interval"), interval);
    Ok((t, obj))
}

/// The pre-delete hook: a ServiceAccount, a ClusterRole limited to deleting GateServers and
/// GateTokens, its binding, and a Job running `virt-gateway-operator prepare-uninstall` with the
/// operator's image, security context and namespace scope. Helm runs it before it deletes
/// anything of the release, so the operator is still there to run the finalizers.
fn uninstall_hook() -> Result<Vec<(Template, Value)>, ManifestError> {
    use k8s_openapi::api::batch::v1::{Job, JobSpec};
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Subject};

    let hook = |weight: i32, keep_failed: bool| {
        let policy = if keep_failed {
            // The Job stays after a failure, for `kubectl logs`; the next attempt replaces it.
            "before-hook-creation,hook-succeeded"
        } else {
            "before-hook-creation,hook-succeeded,hook-failed"
        };
        std::collections::BTreeMap::from([
            ("helm.sh/hook".to_owned(), "pre-delete".to_owned()),
            ("helm.sh/hook-weight".to_owned(), weight.to_string()),
            ("helm.sh/hook-delete-policy".to_owned(), policy.to_owned()),
        ])
    };
    let meta = |namespaced: bool, weight: i32, keep_failed: bool| kube::api::ObjectMeta {
        name: Some(UNINSTALL_NAME.to_owned()),
        namespace: namespaced.then(|| RELEASE_NAMESPACE.to_owned()),
        labels: Some(super::labels()),
        annotations: Some(hook(weight, keep_failed)),
        ..kube::api::ObjectMeta::default()
    };
    let account = ServiceAccount {
        metadata: meta(true, -10, false),
        ..ServiceAccount::default()
    };
    let mut role = cluster_role(UNINSTALL_NAME, UNINSTALL_RULES);
    role.metadata.annotations = Some(hook(-10, false));
    let binding = ClusterRoleBinding {
        metadata: meta(false, -10, false),
        role_ref: crate::rbac::cluster_role_ref(UNINSTALL_NAME),
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: UNINSTALL_NAME.to_owned(),
            namespace: Some(RELEASE_NAMESPACE.to_owned()),
            api_group: None,
        }]),
    };
    let job = Job {
        metadata: meta(true, 0, true),
        spec: Some(JobSpec {
            // The command waits and retries by itself; a second pod would only repeat it.
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(kube::api::ObjectMeta {
                    labels: Some(super::labels()),
                    ..kube::api::ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(UNINSTALL_NAME.to_owned()),
                    restart_policy: Some("Never".to_owned()),
                    security_context: Some(super::pod_security_context()),
                    containers: vec![Container {
                        name: "prepare-uninstall".to_owned(),
                        image: Some("IMAGE".to_owned()),
                        args: Some(vec![
                            "prepare-uninstall".to_owned(),
                            "--timeout-seconds=240".to_owned(),
                        ]),
                        security_context: Some(super::container_security_context()),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    };

    let mut out = vec![
        generic(serde_yaml::to_value(&account)?)?,
        generic(serde_yaml::to_value(&role)?)?,
        generic(serde_yaml::to_value(&binding)?)?,
    ];
    let (mut t, mut job) = generic(serde_yaml::to_value(&job)?)?;
    let pod = map_at(&mut job, &["spec", "template", "spec"])?;
    pod_extras(&mut t, pod);
    let container = pod
        .get_mut("containers")
        .and_then(|c| c.get_mut(0))
        .and_then(Value::as_mapping_mut)
        .ok_or_else(|| ManifestError::Unsupported("hook container".to_owned()))?;
    let image = t.inline("{{ include \"virt-gateway-operator.operatorImage\" . | quote }}");
    container.insert(Value::from("image"), image);
    image_pull_policy(&mut t, container);
    t.block(container, |i| {
        at(
            i,
            &[
                "{{- with .Values.watchNamespace }}",
                "env:",
                "- name: WATCH_NAMESPACE",
                "  value: {{ . | quote }}",
                "{{- end }}",
                "resources:",
                "  requests: {cpu: 10m, memory: 32Mi}",
                "  limits: {memory: 128Mi}",
            ],
        )
    });
    let sc = container
        .get_mut("securityContext")
        .and_then(Value::as_mapping_mut)
        .ok_or_else(|| ManifestError::Unsupported("hook container securityContext".to_owned()))?;
    fixed_user(&mut t, sc)?;
    out.push((t, job));
    Ok(out)
}

/// The files of the chart, as `(path under deploy/, contents)`.
pub fn chart_files() -> Result<Vec<(String, String)>, ManifestError> {
    let path = |f: &str| format!("{CHART_DIR}/{f}");
    let mut crds = Vec::new();
    let mut rbac = Vec::new();
    let mut deployments = Vec::new();
    let mut services = Vec::new();
    // Whatever else the install set holds (e.g. an admission policy), templated generically,
    // one file per kind.
    let mut others: Vec<(String, Vec<(Template, Value)>)> = Vec::new();
    for obj in operator_objects(RELEASE_NAMESPACE)? {
        let (kind_of, name_of) = (kind(&obj).to_owned(), name(&obj).to_owned());
        match kind_of.as_str() {
            "CustomResourceDefinition" => crds.push(crd(obj)?),
            "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding" => {
                rbac.push(generic(obj)?)
            }
            "Deployment" if name_of == OPERATOR_NAME => deployments.push(deployment(obj)?),
            "Service" => services.push(generic(obj)?),
            other => {
                let file = other.to_lowercase();
                let templated = generic(obj)?;
                match others.iter_mut().find(|(f, _)| *f == file) {
                    Some((_, list)) => list.push(templated),
                    None => others.push((file, vec![templated])),
                }
            }
        }
    }
    if deployments.len() != 1 {
        return Err(ManifestError::Unsupported(
            "chart generator: the install set must hold the operator Deployment once".to_owned(),
        ));
    }
    let mut escalate = Vec::new();
    for obj in escalate_objects(RELEASE_NAMESPACE)? {
        escalate.push(generic(obj)?);
    }
    let mut service_account_tokens = Vec::new();
    for obj in service_account_tokens_objects(RELEASE_NAMESPACE)? {
        service_account_tokens.push(generic(obj)?);
    }
    let mut service_monitor = Vec::new();
    let mut pod_monitor = Vec::new();
    for obj in monitoring_objects(RELEASE_NAMESPACE)? {
        if name(&obj) == GATEWAYS_POD_MONITOR_NAME {
            pod_monitor.push(monitor(obj, "podMonitor")?);
        } else {
            service_monitor.push(monitor(obj, "serviceMonitor")?);
        }
    }

    let mut out = vec![
        (path("Chart.yaml"), chart_yaml()),
        (path("values.yaml"), values_yaml()?),
        (path("values.schema.json"), values_schema()?),
        (path("README.md"), readme()),
        (path("templates/_helpers.tpl"), helpers()?),
        (path("templates/NOTES.txt"), notes()),
        (
            path("templates/crds.yaml"),
            file(
                "The CustomResourceDefinitions (in templates/, not crds/, so that upgrades update them and uninstalls remove them; crds.keep keeps them).",
                None,
                "",
                crds,
            )?,
        ),
        (
            path("templates/rbac.yaml"),
            file(
                "The operator's ServiceAccount and least-privilege RBAC (crates/operator/src/rbac.rs).",
                None,
                "",
                rbac,
            )?,
        ),
        (
            path("templates/rbac-escalate.yaml"),
            file(
                &format!(
                    "OPTIONAL ({ESCALATE_NAME}): lets the operator create gateway and token roles with permissions it does not hold itself. Read the security note in crates/operator/README.md first."
                ),
                Some(".Values.rbac.escalate"),
                "",
                escalate,
            )?,
        ),
        (
            path("templates/rbac-serviceaccount-tokens.yaml"),
            file(
                &format!(
                    "OPTIONAL ({SERVICE_ACCOUNT_TOKENS_NAME}): the RBAC of generateServiceAccount GateTokens, with the operator's --enable-service-account-tokens. The admission policy narrowing it is installed either way. Read the Security model in crates/operator/README.md first."
                ),
                Some(".Values.serviceAccountTokens.enabled"),
                "",
                service_account_tokens,
            )?,
        ),
        (
            path("templates/deployment.yaml"),
            file(
                "The operator Deployment.",
                None,
                "{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}\n{{- fail \"replicas above 1 need leaderElection.enabled: two replicas without a leader would reconcile the same objects at once\" }}\n{{- end }}\n",
                deployments,
            )?,
        ),
        (
            path("templates/service.yaml"),
            file("The operator's metrics Service.", None, "", services)?,
        ),
        (
            path("templates/servicemonitor.yaml"),
            file(
                "OPTIONAL: the Prometheus Operator ServiceMonitor of the operator's metrics.",
                Some(".Values.serviceMonitor.enabled"),
                "",
                service_monitor,
            )?,
        ),
        (
            path("templates/podmonitor.yaml"),
            file(
                "OPTIONAL: the Prometheus Operator PodMonitor of every gateway pod the operator runs, in any namespace.",
                Some(".Values.podMonitor.enabled"),
                "",
                pod_monitor,
            )?,
        ),
        (
            path("templates/uninstall-hook.yaml"),
            file(
                "The pre-delete hook: before Helm deletes the operator and the CRDs, `virt-gateway-operator prepare-uninstall` deletes every GateServer and GateToken and waits until the operator's finalizers have removed their cluster-scoped objects.",
                Some(".Values.cleanupOnUninstall"),
                "",
                uninstall_hook()?,
            )?,
        ),
    ];
    for (kind, objects) in others {
        out.push((
            path(&format!("templates/{kind}.yaml")),
            file(
                &format!("The {kind} objects of the install set."),
                None,
                "",
                objects,
            )?,
        ));
    }
    Ok(out)
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn chart_yaml() -> String {
    format!(
        r#"# Generated by virt-gateway-operator (crates/operator/src/manifests/helm.rs); do not edit.
# Regenerate with: {regenerate}
apiVersion: v2
name: {CHART_NAME}
description: >-
  virt-gateway operator: hands one Kubernetes resource, typically a KubeVirt VM's VNC console, to a
  person without a Kubernetes account, for a limited time, with one link (GateServer, GateToken).
type: application
version: {version}
appVersion: "{version}"
kubeVersion: "{KUBE_VERSION}"
keywords:
  - kubevirt
  - vnc
  - console
  - gateway
  - jwt
annotations:
  category: Security
"#,
        regenerate = super::REGENERATE_COMMAND,
        version = version(),
    )
}

/// The registry all three images live under by default (`quay.io/virt-gateway`).
fn default_registry() -> Result<&'static str, ManifestError> {
    let registry = OPERATOR_IMAGE_REPOSITORY
        .rsplit_once('/')
        .map(|(r, _)| r)
        .unwrap_or_default();
    for repo in [GATEWAY_IMAGE_REPOSITORY, WEB_APP_IMAGE_REPOSITORY] {
        if repo.rsplit_once('/').map(|(r, _)| r) != Some(registry) {
            return Err(ManifestError::Unsupported(format!(
                "chart generator: {repo} is not under {registry}; images.registry mirrors all three images"
            )));
        }
    }
    Ok(registry)
}

fn image_name(repository: &str) -> &str {
    repository.rsplit('/').next().unwrap_or(repository)
}

fn helpers() -> Result<String, ManifestError> {
    Ok(format!(
        r#"{{{{- /* Generated by virt-gateway-operator (crates/operator/src/manifests/helm.rs); do not edit. */ -}}}}

{{{{- /* The labels Helm adds to every object, besides the generator's own. */ -}}}}
{{{{- define "{LABELS}" -}}}}
helm.sh/chart: {{{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}}}
app.kubernetes.io/managed-by: {{{{ .Release.Service }}}}
app.kubernetes.io/instance: {{{{ .Release.Name | quote }}}}
app.kubernetes.io/version: {{{{ .Chart.AppVersion | quote }}}}
{{{{- end }}}}

{{{{- define "virt-gateway-operator.tag" -}}}}
{{{{- .Values.image.tag | default .Chart.AppVersion -}}}}
{{{{- end }}}}

{{{{- /* Each image: its full reference when set, else <image.registry>/<name>:<image.tag>. */ -}}}}
{{{{- define "virt-gateway-operator.operatorImage" -}}}}
{{{{- .Values.image.operator | default (printf "%s/{operator}:%s" .Values.image.registry (include "virt-gateway-operator.tag" .)) -}}}}
{{{{- end }}}}

{{{{- define "virt-gateway-operator.gatewayImage" -}}}}
{{{{- .Values.image.gateway | default (printf "%s/{gateway}:%s" .Values.image.registry (include "virt-gateway-operator.tag" .)) -}}}}
{{{{- end }}}}

{{{{- /* "" when the web app is disabled (the operator's --default-web-app-image=""). */ -}}}}
{{{{- define "virt-gateway-operator.webAppImage" -}}}}
{{{{- if .Values.image.webAppEnabled -}}}}
{{{{- .Values.image.webApp | default (printf "%s/{web_app}:%s" .Values.image.registry (include "virt-gateway-operator.tag" .)) -}}}}
{{{{- end -}}}}
{{{{- end }}}}

{{{{- /* "true" on OpenShift: openshift: true, or "auto" where the cluster serves SecurityContextConstraints. */ -}}}}
{{{{- define "virt-gateway-operator.openshift" -}}}}
{{{{- if eq (toString .Values.openshift) "auto" -}}}}
{{{{- if .Capabilities.APIVersions.Has "security.openshift.io/v1/SecurityContextConstraints" }}}}true{{{{ end -}}}}
{{{{- else if .Values.openshift -}}}}
true
{{{{- end -}}}}
{{{{- end }}}}
"#,
        operator = image_name(OPERATOR_IMAGE_REPOSITORY),
        gateway = image_name(GATEWAY_IMAGE_REPOSITORY),
        web_app = image_name(WEB_APP_IMAGE_REPOSITORY),
    ))
}

fn values_yaml() -> Result<String, ManifestError> {
    let resources = super::operator_deployment("x")
        .spec
        .template
        .spec
        .and_then(|p| p.containers.into_iter().next())
        .and_then(|c| c.resources);
    let mut resources = serde_yaml::to_string(&resources)?;
    resources = resources
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect::<String>();
    Ok(format!(
        r#"# Values of the virt-gateway-operator chart. Generated by virt-gateway-operator
# (crates/operator/src/manifests/helm.rs); do not edit. Every value is checked against
# values.schema.json, so a misspelt key fails the install. deploy/README.md explains each knob.

image:
  # Registry (and path) of all three images: set it to your mirror in a disconnected cluster.
  registry: {registry}
  # Tag of all three images; default: the chart's appVersion ({version}).
  tag: ""
  # Full references that override registry/<name>:<tag> for one image (e.g. a digest).
  operator: ""
  # The gateway and web-app images the operator gives GateServers that do not name their own
  # (spec.image / spec.webAppImage); GateServers that name an image keep it.
  gateway: ""
  webApp: ""
  # false: gateways without spec.webAppImage run without the web app init container.
  webAppEnabled: true
  # Kubernetes' default when empty (IfNotPresent for a tag).
  pullPolicy: ""
imagePullSecrets: []

# Watch only this namespace ("" = all namespaces). It narrows what the operator reconciles, not its
# RBAC (it creates ClusterRoles for gateways and needs cluster-wide reads for the escalation check).
watchNamespace: ""

# One replica works; more stand by, and leader election (a Lease in the release namespace) lets
# exactly one act. Two or more replicas need leaderElection.enabled.
replicas: 1
leaderElection:
  enabled: true

resources:
{resources}
logFormat: json
# Log filter (RUST_LOG syntax); "" = the operator's default (info).
logLevel: ""

rbac:
  # The optional escalate/bind ClusterRole: lets the operator create gateway and token roles with
  # write verbs it does not hold itself. Read the security note in crates/operator/README.md first.
  escalate: false

# generateServiceAccount GateTokens (a real Kubernetes token per GateToken): off by default. true
# sets the operator's --enable-service-account-tokens and installs the RBAC it needs (tokens
# only for the ServiceAccounts it creates, enforced by an admission policy installed either way).
# Read the Security model in crates/operator/README.md first.
serviceAccountTokens:
  enabled: false

# Prometheus Operator objects (only where the monitoring.coreos.com CRDs exist).
serviceMonitor:
  enabled: false
  interval: 30s
  labels: {{}}
podMonitor:
  enabled: false
  interval: 30s
  labels: {{}}

# Gateway pods and the operator get no fixed runAsUser/runAsGroup on OpenShift, where the SCC
# restricted-v2 assigns them: "auto" detects OpenShift from the security.openshift.io API.
openshift: auto

# helm uninstall first deletes every GateServer and GateToken (a pre-delete hook Job) and waits
# until the operator's finalizers have removed their cluster-scoped objects; then the operator and
# the CRDs go. false: skip it (GateServers then keep their finalizers with no operator to run them).
cleanupOnUninstall: true

crds:
  # Keep the CRDs on helm uninstall. To keep the GateServers and GateTokens too (for a later
  # install to take over), set cleanupOnUninstall: false as well.
  keep: false

podAnnotations: {{}}
podLabels: {{}}
nodeSelector: {{}}
tolerations: []
affinity: {{}}
priorityClassName: ""
"#,
        registry = default_registry()?,
        version = version(),
    ))
}

fn values_schema() -> Result<String, ManifestError> {
    use serde_json::json;
    let string = json!({"type": "string"});
    let object = json!({"type": "object"});
    let flag = |description: &str| json!({"type": "boolean", "description": description});
    let schema = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "virt-gateway-operator values (generated by crates/operator/src/manifests/helm.rs)",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "image": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "registry": {"type": "string", "minLength": 1},
                    "tag": string, "operator": string, "gateway": string, "webApp": string,
                    "webAppEnabled": flag("false: no web app init container by default"),
                    "pullPolicy": {"enum": ["", "Always", "IfNotPresent", "Never"]},
                },
            },
            "imagePullSecrets": {"type": "array", "items": {"type": "object"}},
            "watchNamespace": string,
            "replicas": {"type": "integer", "minimum": 0},
            "leaderElection": {
                "type": "object", "additionalProperties": false,
                "properties": {"enabled": flag("elect one active replica on a Lease")},
            },
            "resources": object,
            "logFormat": {"enum": ["json", "text"]},
            "logLevel": string,
            "rbac": {
                "type": "object", "additionalProperties": false,
                "properties": {"escalate": flag("install the optional escalate/bind ClusterRole")},
            },
            "serviceAccountTokens": {
                "type": "object", "additionalProperties": false,
                "properties": {"enabled": flag("issue generateServiceAccount GateTokens")},
            },
            "serviceMonitor": monitor_schema(),
            "podMonitor": monitor_schema(),
            "openshift": {"enum": ["auto", true, false]},
            "cleanupOnUninstall": flag("delete GateServers and GateTokens before uninstalling"),
            "crds": {
                "type": "object", "additionalProperties": false,
                "properties": {"keep": flag("keep the CRDs on helm uninstall")},
            },
            "podAnnotations": object, "podLabels": object, "nodeSelector": object,
            "tolerations": {"type": "array"}, "affinity": object,
            "priorityClassName": string,
        },
    });
    Ok(serde_json::to_string_pretty(&schema)? + "\n")
}

fn monitor_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object", "additionalProperties": false,
        "properties": {
            "enabled": {"type": "boolean"},
            "interval": {"type": "string", "pattern": "^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    })
}

fn notes() -> String {
    r#"virt-gateway-operator {{ .Chart.AppVersion }} is installed in namespace {{ .Release.Namespace }}
({{ if .Values.watchNamespace }}watching namespace {{ .Values.watchNamespace }}{{ else }}watching all namespaces{{ end }}).

  kubectl -n {{ .Release.Namespace }} rollout status deployment/virt-gateway-operator

Create a GateServer (edit `route`, the gateway's external host name, first):

  kubectl create namespace kube-gateway
  kubectl apply -f deploy/virt-gateway-server.yaml   # from the chart's source repository

helm uninstall {{ .Release.Name }} -n {{ .Release.Namespace }}
{{- if .Values.cleanupOnUninstall }} first deletes every GateServer and GateToken
(and waits for the operator's finalizers), then the operator{{ if not .Values.crds.keep }} and the CRDs{{ end }}.
{{- else }} leaves GateServers and GateTokens with their finalizers: delete them first.
{{- end }}
"#
    .to_owned()
}

fn readme() -> String {
    format!(
        r#"# virt-gateway-operator Helm chart

Generated by `{regenerate}` from the same objects as
`deploy/virt-gateway-operator.yaml` (crates/operator/src/manifests/helm.rs); do not edit.

```sh
helm install virt-gateway-operator deploy/helm/virt-gateway-operator \
  --namespace virt-gateway-operator-system --create-namespace
```

Every value is described in `values.yaml` and checked by `values.schema.json`; `deploy/README.md`
("Helm") explains the knobs, upgrades and uninstalling. `make test` lints this chart with
`helm lint --strict`, checks that `helm template` with the default values equals
`deploy/virt-gateway-operator.yaml`, and installs, upgrades and uninstalls it on a real API server.
"#,
        regenerate = super::REGENERATE_COMMAND,
    )
}
