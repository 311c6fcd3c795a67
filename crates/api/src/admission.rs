//! The delegation rule, enforced at admission: a `ValidatingAdmissionPolicy` (and its binding)
//! per resource that grants access, installed with the CRDs (`deploy/crds/`).
//!
//! **The rule** is Kubernetes' own RBAC escalation rule applied to our resources: a GateToken may
//! grant only what the user who creates it (or changes what it grants) may do themselves, and a
//! GateServer may give its gateway's ServiceAccount only what its author may do themselves. The
//! API server checks it with CEL `authorizer` checks against the **requesting user**:
//!
//! * every verb × API group × resource (a `resource/subresource` is split into both) × resource
//!   name in the target namespace (all namespaces for `*`), or every verb × non-resource URL;
//! * an absent `resourceNames` grants every name, so it needs the permission for every name
//!   (`name('')`); an empty list grants nothing and needs nothing (`[]` means "nothing"
//!   everywhere, see [`crate::EffectiveRule::policy_rule`]);
//! * wildcards need the wildcard: the authorizer is asked for `*` itself, which RBAC allows only
//!   to a rule holding `*` (`verbs: ["*"]`, `apiGroups: ["*"]`, `resources: ["*"]` or
//!   `*/<subresource>`);
//! * the refusal names the first permission the user lacks.
//!
//! **Updates** are checked only when a field that changes what the object grants changes (the
//! rule, the target namespace and, for tokens, the mode and validity): revoking a token, the
//! operator's finalizer and label changes stay possible for anyone who may update the object.
//!
//! **Cost.** The API server charges 350 000 per authorization check against a budget of
//! 10 000 000 per policy and request: one check for "holds everything" (`*` on `*`, which lets a
//! cluster admin grant any rule in one check) plus at most [`MAX_CHECKED_PERMISSIONS`]
//! permissions. A rule naming more combinations than that is refused with a message saying how to
//! split it (unless its author holds everything). No CRD `maxItems` is needed: the policy caps the
//! product itself before indexing, so no size can overflow or exhaust the budget.
//!
//! The expressions index the cartesian product directly (permission `k` of `V × G × R × N` is
//! `verbs[k / (G·R·N)]`, `groups[k / (R·N) % G]`, ...), one validation per index, so they use only
//! CEL functions of Kubernetes 1.30 (where `ValidatingAdmissionPolicy` became GA) and every
//! validation has its own `messageExpression` naming its permission.

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
    ValidatingAdmissionPolicySpec, Validation, Variable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ObjectMeta;

use crate::error::CrdError;
use crate::gateserver::{
    DEFAULT_SERVICE_ACCOUNT_API_GROUPS, DEFAULT_SERVICE_ACCOUNT_RESOURCES,
    DEFAULT_SERVICE_ACCOUNT_VERBS,
};
use crate::gatetoken::{DEFAULT_API_GROUPS, DEFAULT_RESOURCES, DEFAULT_VERBS};

/// The GateToken delegation policy and its binding.
pub const GATETOKEN_POLICY: &str = "virt-gateway-gatetoken-delegation";
/// The GateServer delegation policy and its binding.
pub const GATESERVER_POLICY: &str = "virt-gateway-gateserver-delegation";
/// The manifest in `deploy/crds/` holding both policies and bindings.
pub const FILE_NAME: &str = "virt-gateway-delegation-policy.yaml";
/// Permissions (verb × group × resource × name, or verb × URL) checked per object at most.
pub const MAX_CHECKED_PERMISSIONS: usize = 24;

/// Where a resource keeps its access rule, and how to talk about it.
struct RuleFields {
    /// Resource (plural) of the `ocgate.yaacov.com` group.
    plural: &'static str,
    /// Target namespace field (`*` = all namespaces).
    namespace: &'static str,
    /// Verbs field.
    verbs: &'static str,
    /// API group fields, in order of precedence (GateToken: `apiGroups`, then `APIGroups`).
    api_groups: &'static [&'static str],
    /// Resources field.
    resources: &'static str,
    /// Resource names field.
    resource_names: &'static str,
    /// Non-resource URLs field.
    non_resource_urls: &'static str,
    /// Fields besides the rule whose change changes what the object grants.
    other_grant_fields: &'static [&'static str],
    /// The defaults of verbs, API groups and resources (schema defaults: written out by the API
    /// server, but the expressions do not rely on it).
    defaults: [&'static [&'static str]; 3],
    /// Whether the default API groups apply only without non-resource URLs (GateToken).
    groups_default_yields_to_urls: bool,
    /// How refusals name the object, e.g. "this GateToken".
    subject: &'static str,
    /// The sentence stating the rule, at the end of every refusal.
    rule_sentence: &'static str,
}

const GATETOKEN_FIELDS: RuleFields = RuleFields {
    plural: "gatetokens",
    namespace: "namespace",
    verbs: "verbs",
    api_groups: &["apiGroups", "APIGroups"],
    resources: "resources",
    resource_names: "resourceNames",
    non_resource_urls: "nonResourceURLs",
    other_grant_fields: &["generateServiceAccount", "durationSec", "from"],
    defaults: [DEFAULT_VERBS, DEFAULT_API_GROUPS, DEFAULT_RESOURCES],
    groups_default_yields_to_urls: true,
    subject: "this GateToken",
    rule_sentence: "a GateToken may grant only what its creator may do",
};

const GATESERVER_FIELDS: RuleFields = RuleFields {
    plural: "gateservers",
    namespace: "serviceAccountNamespace",
    verbs: "serviceAccountVerbs",
    api_groups: &["serviceAccountAPIGroups"],
    resources: "serviceAccountResources",
    resource_names: "serviceAccountResourceNames",
    non_resource_urls: "serviceAccountNonResourceURLs",
    other_grant_fields: &[],
    defaults: [
        DEFAULT_SERVICE_ACCOUNT_VERBS,
        DEFAULT_SERVICE_ACCOUNT_API_GROUPS,
        DEFAULT_SERVICE_ACCOUNT_RESOURCES,
    ],
    groups_default_yields_to_urls: false,
    subject: "this GateServer",
    rule_sentence: "a GateServer may give its gateway only what its author may do",
};

fn cel_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("'{i}'")).collect();
    format!("[{}]", quoted.join(", "))
}

fn spec_field(field: &str) -> String {
    format!("variables.spec.{field}")
}

/// `has(variables.spec.f) ? variables.spec.f : default`.
fn field_or(field: &str, default: &str) -> String {
    format!("has({0}) ? {0} : {default}", spec_field(field))
}

fn variable(name: &str, expression: String) -> Variable {
    Variable {
        name: name.to_owned(),
        expression,
    }
}

fn variables(f: &RuleFields) -> Vec<Variable> {
    let max = MAX_CHECKED_PERMISSIONS;
    let [default_verbs, default_groups, default_resources] = f.defaults;
    // The API groups: the first spelling written, else the default, which a token with only
    // non-resource URLs does not get (as `GateTokenSpec::api_groups`).
    let mut groups = if f.groups_default_yields_to_urls {
        format!(
            "(has({0}) && size({0}) > 0) ? [] : {1}",
            spec_field(f.non_resource_urls),
            cel_list(default_groups)
        )
    } else {
        cel_list(default_groups)
    };
    for field in f.api_groups.iter().rev() {
        groups = format!("has({0}) ? {0} : ({groups})", spec_field(field));
    }
    let sizes_fit = |lists: &[&str]| {
        lists
            .iter()
            .map(|l| format!("size(variables.{l}) <= {max}"))
            .collect::<Vec<_>>()
            .join(" && ")
    };
    let product = |lists: &[&str]| {
        lists
            .iter()
            .map(|l| format!("size(variables.{l})"))
            .collect::<Vec<_>>()
            .join(" * ")
    };
    let resource_lists = ["verbs", "groups", "resources", "names"];
    let url_lists = ["verbs", "urls"];
    vec![
        variable("spec", "object.spec".to_owned()),
        variable("groups", groups),
        variable("urls", field_or(f.non_resource_urls, "[]")),
        variable("resourceRule", "size(variables.groups) > 0".to_owned()),
        variable("verbs", field_or(f.verbs, &cel_list(default_verbs))),
        variable("resources", field_or(f.resources, &cel_list(default_resources))),
        // Absent: every name, which is the authorizer's name ''.
        variable("names", field_or(f.resource_names, "['']")),
        variable(
            "targetNamespace",
            format!(
                "has({0}) && {0} != '*' ? {0} : ''",
                spec_field(f.namespace)
            ),
        ),
        // Sizes are checked before they are multiplied: the product then fits easily.
        variable(
            "count",
            format!(
                "variables.resourceRule ? ({} ? {} : {over}) : ({} ? {} : {over})",
                sizes_fit(&resource_lists),
                product(&resource_lists),
                sizes_fit(&url_lists),
                product(&url_lists),
                over = max + 1,
            ),
        ),
        variable(
            "everything",
            "variables.resourceRule ? authorizer.group('*').resource('*').namespace(variables.targetNamespace).check('*').allowed() : authorizer.path('*').check('*').allowed()".to_owned(),
        ),
    ]
}

/// CEL binding `name` to `value` in `body` (a one-element `map`: CEL has no `let`).
fn bind(name: &str, value: &str, body: &str) -> String {
    format!("[{value}].map({name}, {body})[0]")
}

/// The index expressions of permission `k`: `(verb, group, resource, name)` of a resource rule.
fn resource_indices(k: usize) -> [String; 4] {
    let size = |l: &str| format!("size(variables.{l})");
    [
        format!(
            "variables.verbs[{k} / ({} * {} * {})]",
            size("groups"),
            size("resources"),
            size("names")
        ),
        format!(
            "variables.groups[({k} / ({} * {})) % {}]",
            size("resources"),
            size("names"),
            size("groups")
        ),
        format!(
            "variables.resources[({k} / {}) % {}]",
            size("names"),
            size("resources")
        ),
        format!("variables.names[{k} % {}]", size("names")),
    ]
}

/// The index expressions of permission `k`: `(verb, url)` of a non-resource rule.
fn url_indices(k: usize) -> [String; 2] {
    [
        format!("variables.verbs[{k} / size(variables.urls)]"),
        format!("variables.urls[{k} % size(variables.urls)]"),
    ]
}

/// Binds `v`, `g`, `r`, `n` (resource rule) or `v`, `u` (non-resource rule) for permission `k`
/// around `resource_body` / `url_body`.
fn with_permission(k: usize, resource_body: &str, url_body: &str) -> String {
    let [v, g, r, n] = resource_indices(k);
    let resource = bind(
        "v",
        &v,
        &bind("g", &g, &bind("r", &r, &bind("n", &n, resource_body))),
    );
    let [v, u] = url_indices(k);
    let url = bind("v", &v, &bind("u", &u, url_body));
    format!("variables.resourceRule ? {resource} : {url}")
}

/// The check of permission `k` (true when it does not exist or the user holds it).
fn permission_check(k: usize) -> String {
    let resource = "authorizer.group(g).resource(r.contains('/') ? r.substring(0, r.indexOf('/')) : r).subresource(r.contains('/') ? r.substring(r.indexOf('/') + 1) : '').namespace(variables.targetNamespace).name(n).check(v).allowed()";
    let url = "authorizer.path(u).check(v).allowed()";
    let max = MAX_CHECKED_PERMISSIONS;
    format!(
        "variables.count > {max} || variables.count <= {k} || variables.everything || ({})",
        with_permission(k, resource, url)
    )
}

/// The refusal of permission `k`, e.g. `this GateToken grants "get" on "secrets" (API group "",
/// every name) in all namespaces, which you may not do yourself: a GateToken may grant only what
/// its creator may do`.
fn permission_message(f: &RuleFields, k: usize) -> String {
    let scope = "(variables.targetNamespace == '' ? ' in all namespaces' : ' in namespace \"' + variables.targetNamespace + '\"')";
    let tail = format!("', which you may not do yourself: {}'", f.rule_sentence);
    let resource = format!(
        "'{} grants \"' + v + '\" on \"' + r + '\" (API group \"' + g + '\", ' + (n == '' ? 'every name' : 'name \"' + n + '\"') + ')' + {scope} + {tail}",
        f.subject
    );
    let url = format!(
        "'{} grants \"' + v + '\" on the non-resource URL \"' + u + '\"' + {tail}",
        f.subject
    );
    let max = MAX_CHECKED_PERMISSIONS;
    format!(
        "variables.count > {max} || variables.count <= {k} ? '' : ({})",
        with_permission(k, &resource, &url)
    )
}

fn validations(f: &RuleFields) -> Vec<Validation> {
    let max = MAX_CHECKED_PERMISSIONS;
    let mut out = vec![Validation {
        expression: format!("variables.count <= {max} || variables.everything"),
        message: Some(format!(
            "{} grants more than {max} permissions (verbs x API groups x resources x resource names, or verbs x non-resource URLs): the API server can check at most {max} per object; split the rule into several objects",
            f.subject
        )),
        message_expression: None,
        reason: Some("Invalid".to_owned()),
    }];
    for k in 0..max {
        out.push(Validation {
            expression: permission_check(k),
            message: Some(format!(
                "{} grants a permission which you may not do yourself: {}",
                f.subject, f.rule_sentence
            )),
            message_expression: Some(permission_message(f, k)),
            reason: Some("Forbidden".to_owned()),
        });
    }
    out
}

/// Skips updates that do not change what the object grants.
fn grant_changed(f: &RuleFields) -> MatchCondition {
    let mut fields = vec![f.namespace, f.verbs];
    fields.extend_from_slice(f.api_groups);
    fields.extend([f.resources, f.resource_names, f.non_resource_urls]);
    fields.extend_from_slice(f.other_grant_fields);
    let same: Vec<String> = fields
        .iter()
        .map(|field| {
            format!(
                "(has(object.spec.{field}) == has(oldObject.spec.{field}) && (!has(object.spec.{field}) || object.spec.{field} == oldObject.spec.{field}))"
            )
        })
        .collect();
    MatchCondition {
        name: "grant-changed".to_owned(),
        expression: format!("request.operation != 'UPDATE' || !({})", same.join(" && ")),
    }
}

fn labels() -> std::collections::BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "virt-gateway"),
        ("app.kubernetes.io/part-of", "virt-gateway"),
        ("app.kubernetes.io/component", "delegation-policy"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn match_resources(plural: &str) -> MatchResources {
    MatchResources {
        // Written out as the API server would default them, so that what is stored is what is
        // generated (the operator compares them).
        match_policy: Some("Equivalent".to_owned()),
        namespace_selector: Some(LabelSelector::default()),
        object_selector: Some(LabelSelector::default()),
        exclude_resource_rules: None,
        resource_rules: Some(vec![NamedRuleWithOperations {
            api_groups: Some(vec![crate::GROUP.to_owned()]),
            api_versions: Some(vec!["*".to_owned()]),
            operations: Some(vec!["CREATE".to_owned(), "UPDATE".to_owned()]),
            resources: Some(vec![plural.to_owned()]),
            resource_names: None,
            scope: Some("*".to_owned()),
        }]),
    }
}

fn policy(name: &str, f: &RuleFields) -> ValidatingAdmissionPolicy {
    ValidatingAdmissionPolicy {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels()),
            ..ObjectMeta::default()
        },
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".to_owned()),
            match_constraints: Some(match_resources(f.plural)),
            match_conditions: Some(vec![grant_changed(f)]),
            variables: Some(variables(f)),
            validations: Some(validations(f)),
            audit_annotations: None,
            param_kind: None,
        }),
        status: None,
    }
}

fn binding(name: &str) -> ValidatingAdmissionPolicyBinding {
    ValidatingAdmissionPolicyBinding {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels()),
            ..ObjectMeta::default()
        },
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: name.to_owned(),
            validation_actions: vec!["Deny".to_owned()],
            match_resources: None,
            param_ref: None,
        },
    }
}

/// The GateToken delegation policy.
pub fn gatetoken_policy() -> ValidatingAdmissionPolicy {
    policy(GATETOKEN_POLICY, &GATETOKEN_FIELDS)
}

/// The GateServer delegation policy (defence in depth: the operator can give a gateway only
/// what it holds itself anyway).
pub fn gateserver_policy() -> ValidatingAdmissionPolicy {
    policy(GATESERVER_POLICY, &GATESERVER_FIELDS)
}

/// Both policies: GateToken, then GateServer.
pub fn policies() -> [ValidatingAdmissionPolicy; 2] {
    [gatetoken_policy(), gateserver_policy()]
}

/// Both bindings (cluster-wide, `Deny`), in the order of [`policies`].
pub fn bindings() -> [ValidatingAdmissionPolicyBinding; 2] {
    [binding(GATETOKEN_POLICY), binding(GATESERVER_POLICY)]
}

/// The manifest [`FILE_NAME`]: both policies and bindings as one YAML stream.
pub fn to_yaml() -> Result<String, CrdError> {
    let yaml = |name: &str, value: Result<String, serde_yaml::Error>| {
        value.map_err(|source| CrdError::Yaml {
            name: name.to_owned(),
            source,
        })
    };
    let mut out = format!(
        "# The delegation rule: a GateToken (GateServer) may grant only what its creator may do.\n# Install it with the CRDs. Generated from crates/api by crdgen; do not edit.\n# Regenerate with: {}\n",
        crate::crd::REGENERATE_COMMAND
    );
    for (policy, binding) in policies().iter().zip(bindings().iter()) {
        let name = policy.metadata.name.clone().unwrap_or_default();
        out.push_str("---\n");
        out.push_str(&yaml(&name, serde_yaml::to_string(policy))?);
        out.push_str("---\n");
        out.push_str(&yaml(&name, serde_yaml::to_string(binding))?);
    }
    Ok(out)
}

/// Why an installed policy or binding is not the expected one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object} {name} {problem}")]
pub struct PolicyMismatch {
    /// `ValidatingAdmissionPolicy` or `ValidatingAdmissionPolicyBinding`.
    pub object: &'static str,
    /// Its name.
    pub name: String,
    /// What differs.
    pub problem: String,
}

fn empty_selector(s: &Option<LabelSelector>) -> bool {
    s.as_ref().is_none_or(|s| {
        s.match_labels.as_ref().is_none_or(|l| l.is_empty())
            && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    })
}

/// Checks that `found` enforces what `expected` does: the same variables, validations, match
/// conditions and resource rules, failure policy `Fail`, no selectors or exclusions. Fields the
/// API server may default differently across versions are not compared.
pub fn verify_policy(
    expected: &ValidatingAdmissionPolicy,
    found: &ValidatingAdmissionPolicy,
) -> Result<(), PolicyMismatch> {
    let name = expected.metadata.name.clone().unwrap_or_default();
    let fail = |problem: &str| PolicyMismatch {
        object: "ValidatingAdmissionPolicy",
        name: name.clone(),
        problem: problem.to_owned(),
    };
    let (Some(want), Some(got)) = (&expected.spec, &found.spec) else {
        return Err(fail("has no spec"));
    };
    if got.failure_policy.as_deref().unwrap_or("Fail") != "Fail" {
        return Err(fail("does not fail closed (failurePolicy is not Fail)"));
    }
    if got.variables != want.variables
        || got.validations != want.validations
        || got.match_conditions != want.match_conditions
    {
        return Err(fail(
            "has other variables, validations or match conditions than this operator's version expects; re-apply deploy/crds",
        ));
    }
    if got.param_kind.is_some() || got.audit_annotations.is_some() {
        return Err(fail(
            "has parameters or audit annotations it should not have",
        ));
    }
    let constraints = got.match_constraints.clone().unwrap_or_default();
    let rule_of = |r: &NamedRuleWithOperations| {
        (
            r.api_groups.clone(),
            r.api_versions.clone(),
            r.operations.clone(),
            r.resources.clone(),
            r.resource_names.clone().unwrap_or_default(),
            r.scope.clone().unwrap_or_else(|| "*".to_owned()),
        )
    };
    let want_rules: Vec<_> = want
        .match_constraints
        .iter()
        .flat_map(|m| m.resource_rules.iter().flatten())
        .map(rule_of)
        .collect();
    let got_rules: Vec<_> = constraints
        .resource_rules
        .iter()
        .flatten()
        .map(rule_of)
        .collect();
    if got_rules != want_rules
        || constraints.match_policy.as_deref().unwrap_or("Equivalent") != "Equivalent"
        || !empty_selector(&constraints.namespace_selector)
        || !empty_selector(&constraints.object_selector)
        || constraints
            .exclude_resource_rules
            .as_ref()
            .is_some_and(|e| !e.is_empty())
    {
        return Err(fail(
            "matches other requests than expected (resource rules, selectors, exclusions or match policy)",
        ));
    }
    Ok(())
}

/// Checks that `found` binds the policy of `expected` to every request, with the action `Deny`.
pub fn verify_binding(
    expected: &ValidatingAdmissionPolicyBinding,
    found: &ValidatingAdmissionPolicyBinding,
) -> Result<(), PolicyMismatch> {
    let name = expected.metadata.name.clone().unwrap_or_default();
    let fail = |problem: &str| PolicyMismatch {
        object: "ValidatingAdmissionPolicyBinding",
        name: name.clone(),
        problem: problem.to_owned(),
    };
    let (want, got) = (&expected.spec, &found.spec);
    if got.policy_name != want.policy_name {
        return Err(fail("binds another policy"));
    }
    if !got.validation_actions.iter().any(|a| a == "Deny") {
        return Err(fail("does not deny (validationActions lacks Deny)"));
    }
    if got.param_ref.is_some() {
        return Err(fail("has a paramRef it should not have"));
    }
    if let Some(m) = &got.match_resources
        && (!empty_selector(&m.namespace_selector)
            || !empty_selector(&m.object_selector)
            || m.resource_rules.as_ref().is_some_and(|r| !r.is_empty())
            || m.exclude_resource_rules
                .as_ref()
                .is_some_and(|e| !e.is_empty()))
    {
        return Err(fail(
            "is limited by selectors or resource rules: it must apply to every namespace",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_validation_per_checked_permission_plus_the_size_limit() {
        for p in policies() {
            let spec = p.spec.unwrap();
            let v = spec.validations.unwrap();
            assert_eq!(v.len(), MAX_CHECKED_PERMISSIONS + 1);
            assert!(v[1].expression.contains("variables.count <= 0 ||"));
            assert!(v[24].expression.contains("variables.count <= 23 ||"));
            assert!(v.iter().skip(1).all(|v| v.message_expression.is_some()));
        }
    }

    #[test]
    fn texts_inside_cel_strings_hold_no_quote() {
        // They are pasted into single-quoted CEL strings.
        for f in [&GATETOKEN_FIELDS, &GATESERVER_FIELDS] {
            assert!(!f.subject.contains('\''), "{}", f.subject);
            assert!(!f.rule_sentence.contains('\''), "{}", f.rule_sentence);
        }
    }

    #[test]
    fn messages_need_no_authorizer() {
        // The API server evaluates messageExpression without `authorizer` (and would fail).
        for p in policies() {
            for v in p.spec.unwrap().validations.unwrap() {
                assert!(
                    !v.message_expression
                        .unwrap_or_default()
                        .contains("authorizer")
                );
            }
        }
    }

    #[test]
    fn gatetoken_api_groups_follow_the_alias_order() {
        let vars = gatetoken_policy().spec.unwrap().variables.unwrap();
        let groups = &vars.iter().find(|v| v.name == "groups").unwrap().expression;
        assert!(
            groups.starts_with("has(variables.spec.apiGroups) ? variables.spec.apiGroups : (has(variables.spec.APIGroups)"),
            "{groups}"
        );
        assert!(groups.contains("['subresources.kubevirt.io']"), "{groups}");
    }

    #[test]
    fn revoking_is_not_a_grant_change() {
        let condition = &gatetoken_policy().spec.unwrap().match_conditions.unwrap()[0];
        assert!(!condition.expression.contains("revoked"));
        for field in [
            "namespace",
            "verbs",
            "apiGroups",
            "APIGroups",
            "resources",
            "resourceNames",
            "nonResourceURLs",
            "generateServiceAccount",
            "durationSec",
            "from",
        ] {
            assert!(
                condition
                    .expression
                    .contains(&format!("object.spec.{field})")),
                "{field}"
            );
        }
    }

    #[test]
    fn the_generated_objects_verify_and_changes_do_not() {
        for (p, b) in policies().iter().zip(bindings().iter()) {
            verify_policy(p, p).unwrap();
            verify_binding(b, b).unwrap();
            let mut weaker = p.clone();
            weaker
                .spec
                .as_mut()
                .unwrap()
                .validations
                .as_mut()
                .unwrap()
                .pop();
            assert!(verify_policy(p, &weaker).is_err());
            let mut ignore = p.clone();
            ignore.spec.as_mut().unwrap().failure_policy = Some("Ignore".into());
            assert!(verify_policy(p, &ignore).is_err());
            let mut scoped = p.clone();
            scoped
                .spec
                .as_mut()
                .unwrap()
                .match_constraints
                .as_mut()
                .unwrap()
                .namespace_selector = Some(LabelSelector {
                match_labels: Some([("a".to_owned(), "b".to_owned())].into()),
                match_expressions: None,
            });
            assert!(verify_policy(p, &scoped).is_err());
            let mut warn_only = b.clone();
            warn_only.spec.validation_actions = vec!["Warn".into()];
            assert!(verify_binding(b, &warn_only).is_err());
            // What the API server defaults is accepted.
            let mut defaulted = p.clone();
            let rules = defaulted
                .spec
                .as_mut()
                .unwrap()
                .match_constraints
                .as_mut()
                .unwrap();
            rules.resource_rules.as_mut().unwrap()[0].scope = None;
            verify_policy(p, &defaulted).unwrap();
        }
    }

    #[test]
    fn the_manifest_holds_both_policies_and_bindings() {
        let yaml = to_yaml().unwrap();
        let kinds: Vec<String> = serde_yaml::Deserializer::from_str(&yaml)
            .map(|d| {
                let v: serde_yaml::Value = serde::Deserialize::deserialize(d).unwrap();
                v["kind"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "ValidatingAdmissionPolicy",
                "ValidatingAdmissionPolicyBinding",
                "ValidatingAdmissionPolicy",
                "ValidatingAdmissionPolicyBinding"
            ]
        );
    }
}
