//! Authorization parity with Kubernetes RBAC rule matching, plus the namespace binding and the Gen B
//! sample token.

use virt_gateway_auth::authz::{Denied, authorize};
use virt_gateway_auth::jwt::Claims;
use virt_gateway_auth::request::{RequestInfo, parse};

fn list(items: &str) -> Option<Vec<String>> {
    // "" is the one-item list [""] (the core group), as strings.Split in the Go tests.
    Some(items.split(',').map(str::to_owned).collect())
}

/// A rule bound cluster-wide (namespace `*`), as `rbac.NewRule(verbs).Groups(..).Resources(..)`;
/// `None` for a field the rule leaves unset.
fn rule(verbs: &str, groups: Option<&str>, resources: Option<&str>, urls: Option<&str>) -> Claims {
    let mut c = Claims::new(u64::MAX);
    c.verbs = list(verbs).unwrap_or_default();
    c.api_groups = groups.and_then(list);
    c.resources = resources.and_then(list);
    c.non_resource_urls = urls.and_then(list);
    c
}

fn resource(verb: &str, group: &str, resource: &str, subresource: &str) -> RequestInfo {
    RequestInfo::resource(
        verb,
        group,
        "v1",
        "",
        resource,
        if subresource.is_empty() { "" } else { "x" },
        subresource,
    )
}

fn in_namespace(verb: &str, resource: &str, namespace: &str) -> RequestInfo {
    RequestInfo::resource(verb, "", "v1", namespace, resource, "", "")
}

fn non_resource(verb: &str, path: &str) -> RequestInfo {
    RequestInfo::non_resource(verb, path)
}

fn allowed(claims: &Claims, request: &RequestInfo) -> bool {
    authorize(claims, request).is_ok()
}

fn check(name: &str, claims: &Claims, cases: &[(RequestInfo, bool)]) {
    for (request, expected) in cases {
        assert_eq!(
            allowed(claims, request),
            *expected,
            "{name}: {request:?} => {:?}",
            authorize(claims, request)
        );
    }
}

// TestRuleMatches in kubernetes/kubernetes plugin/pkg/auth/authorizer/rbac/rbac_test.go: a rule
// against resource requests (group, resource, subresource, verb) and non-resource requests (verb, URL).
#[test]
fn kubernetes_rule_matches_cases() {
    check(
        "star verb, exact match other",
        &rule("*", Some("group1"), Some("resource1"), None),
        &[
            (resource("verb1", "group1", "resource1", ""), true),
            (resource("verb1", "group2", "resource1", ""), false),
            (resource("verb1", "group1", "resource2", ""), false),
            (resource("verb1", "group2", "resource2", ""), false),
            (resource("verb2", "group1", "resource1", ""), true),
            (resource("verb2", "group2", "resource1", ""), false),
            (resource("verb2", "group1", "resource2", ""), false),
            (resource("verb2", "group2", "resource2", ""), false),
        ],
    );
    check(
        "star group, exact match other",
        &rule("verb1", Some("*"), Some("resource1"), None),
        &[
            (resource("verb1", "group1", "resource1", ""), true),
            (resource("verb1", "group2", "resource1", ""), true),
            (resource("verb1", "group1", "resource2", ""), false),
            (resource("verb1", "group2", "resource2", ""), false),
            (resource("verb2", "group1", "resource1", ""), false),
            (resource("verb2", "group2", "resource1", ""), false),
            (resource("verb2", "group1", "resource2", ""), false),
            (resource("verb2", "group2", "resource2", ""), false),
        ],
    );
    check(
        "star resource, exact match other",
        &rule("verb1", Some("group1"), Some("*"), None),
        &[
            (resource("verb1", "group1", "resource1", ""), true),
            (resource("verb1", "group2", "resource1", ""), false),
            (resource("verb1", "group1", "resource2", ""), true),
            (resource("verb1", "group2", "resource2", ""), false),
            (resource("verb2", "group1", "resource1", ""), false),
            (resource("verb2", "group2", "resource1", ""), false),
            (resource("verb2", "group1", "resource2", ""), false),
            (resource("verb2", "group2", "resource2", ""), false),
        ],
    );
    check(
        "tuple expansion",
        &rule(
            "verb1,verb2",
            Some("group1,group2"),
            Some("resource1,resource2"),
            None,
        ),
        &[
            (resource("verb1", "group1", "resource1", ""), true),
            (resource("verb1", "group2", "resource1", ""), true),
            (resource("verb1", "group1", "resource2", ""), true),
            (resource("verb1", "group2", "resource2", ""), true),
            (resource("verb2", "group1", "resource1", ""), true),
            (resource("verb2", "group2", "resource1", ""), true),
            (resource("verb2", "group1", "resource2", ""), true),
            (resource("verb2", "group2", "resource2", ""), true),
        ],
    );
    check(
        "subresource expansion",
        &rule("*", Some("*"), Some("resource1/subresource1"), None),
        &[
            (
                resource("verb1", "group1", "resource1", "subresource1"),
                true,
            ),
            (
                resource("verb1", "group2", "resource1", "subresource2"),
                false,
            ),
            (
                resource("verb1", "group1", "resource2", "subresource1"),
                false,
            ),
            (
                resource("verb1", "group2", "resource2", "subresource1"),
                false,
            ),
            (
                resource("verb2", "group1", "resource1", "subresource1"),
                true,
            ),
            (
                resource("verb2", "group2", "resource1", "subresource2"),
                false,
            ),
            (
                resource("verb2", "group1", "resource2", "subresource1"),
                false,
            ),
            (
                resource("verb2", "group2", "resource2", "subresource1"),
                false,
            ),
        ],
    );
    check(
        "star nonresource, exact match other",
        &rule("verb1", None, None, Some("*")),
        &[
            (non_resource("verb1", "/foo"), true),
            (non_resource("verb1", "/foo/bar"), true),
            (non_resource("verb1", "/foo/baz"), true),
            (non_resource("verb1", "/foo/bar/one"), true),
            (non_resource("verb1", "/foo/baz/one"), true),
            (non_resource("verb2", "/foo"), false),
            (non_resource("verb2", "/foo/bar"), false),
            (non_resource("verb2", "/foo/baz"), false),
            (non_resource("verb2", "/foo/bar/one"), false),
            (non_resource("verb2", "/foo/baz/one"), false),
        ],
    );
    check(
        "star nonresource subpath",
        &rule("verb1", None, None, Some("/foo/*")),
        &[
            (non_resource("verb1", "/foo"), false),
            (non_resource("verb1", "/foo/bar"), true),
            (non_resource("verb1", "/foo/baz"), true),
            (non_resource("verb1", "/foo/bar/one"), true),
            (non_resource("verb1", "/foo/baz/one"), true),
            (non_resource("verb1", "/notfoo"), false),
            (non_resource("verb1", "/notfoo/bar"), false),
            (non_resource("verb1", "/notfoo/baz"), false),
            (non_resource("verb1", "/notfoo/bar/one"), false),
            (non_resource("verb1", "/notfoo/baz/one"), false),
        ],
    );
    check(
        "star verb, exact nonresource",
        &rule("*", None, None, Some("/foo,/foo/bar/one")),
        &[
            (non_resource("verb1", "/foo"), true),
            (non_resource("verb1", "/foo/bar"), false),
            (non_resource("verb1", "/foo/baz"), false),
            (non_resource("verb1", "/foo/bar/one"), true),
            (non_resource("verb1", "/foo/baz/one"), false),
            (non_resource("verb2", "/foo"), true),
            (non_resource("verb2", "/foo/bar"), false),
            (non_resource("verb2", "/foo/baz"), false),
            (non_resource("verb2", "/foo/bar/one"), true),
            (non_resource("verb2", "/foo/baz/one"), false),
        ],
    );
}

// TestAuthorizer in the same file. A RoleBinding in ns1 is our namespace claim "ns1"; a
// ClusterRoleBinding is namespace "*".
#[test]
fn kubernetes_authorizer_cases() {
    let mut admin_in_ns1 = rule("*", Some("*"), Some("*"), Some("*"));
    admin_in_ns1.namespace = "ns1".into();
    check(
        "admin bound in ns1",
        &admin_in_ns1,
        &[
            (in_namespace("get", "Pods", "ns1"), true),
            (in_namespace("watch", "Pods", "ns1"), true),
            (in_namespace("watch", "Foobar", "ns1"), true),
            (in_namespace("GET", "Pods", "ns2"), false),
            (in_namespace("GET", "Nodes", ""), false),
        ],
    );

    // Non-resource URLs, bound cluster-wide.
    check(
        "non-resource-url-getter",
        &rule("get", None, None, Some("/apis")),
        &[
            (non_resource("get", "/apis"), true),
            (non_resource("watch", "/apis"), false),
            (non_resource("get", "/api/v1"), false),
        ],
    );
    check(
        "non-resource-url",
        &rule("*", None, None, Some("/apis")),
        &[
            (non_resource("get", "/apis"), true),
            (non_resource("watch", "/apis"), true),
            (non_resource("get", "/api/v1"), false),
        ],
    );
    check(
        "non-resource-url-prefix",
        &rule("get", None, None, Some("/apis/*")),
        &[
            (non_resource("get", "/apis/v1"), true),
            (non_resource("get", "/apis/v1/foobar"), true),
            (non_resource("get", "/api/v1"), false),
        ],
    );

    // Subresource resolution.
    let mut pods = rule("*", Some("*"), Some("pods"), Some("*"));
    pods.namespace = "ns1".into();
    check(
        "pods",
        &pods,
        &[
            (
                RequestInfo::resource("get", "", "v1", "ns1", "pods", "", ""),
                true,
            ),
            (
                RequestInfo::resource("get", "", "v1", "ns1", "pods", "p", "status"),
                false,
            ),
        ],
    );
    let mut status = rule("*", Some("*"), Some("pods/status"), Some("*"));
    status.namespace = "ns1".into();
    check(
        "pods/status",
        &status,
        &[
            (
                RequestInfo::resource("get", "", "v1", "ns1", "pods", "p", "status"),
                true,
            ),
            (
                RequestInfo::resource("get", "", "v1", "ns1", "pods", "", ""),
                false,
            ),
        ],
    );
}

// Our cases for the rest of pkg/apis/rbac/v1/evaluation_helpers.go: */subresource (with its length
// check), resourceNames, the core group "".
#[test]
fn evaluation_helper_details() {
    check(
        "*/subresource",
        &rule("get", Some("*"), Some("*/status"), None),
        &[
            (resource("get", "", "pods", "status"), true),
            (resource("get", "apps", "deployments", "status"), true),
            (resource("get", "", "pods", ""), false),
            (resource("get", "", "pods", "log"), false),
            (resource("get", "", "pods", "xstatus"), false),
        ],
    );
    check(
        "*/ needs a subresource",
        &rule("get", Some("*"), Some("*/,*/stat"), None),
        &[
            (resource("get", "", "pods", ""), false),
            (resource("get", "", "pods", "status"), false),
        ],
    );
    check(
        "core group",
        &rule("get", Some(""), None, None),
        &[
            (resource("get", "", "pods", ""), true),
            (resource("get", "apps", "deployments", ""), false),
        ],
    );
    let mut named = rule("get,list,update", Some(""), Some("configmaps"), None);
    named.resource_names = list("my-configmap");
    let cm = |verb: &str, name: &str| {
        RequestInfo::resource(verb, "", "v1", "ns", "configmaps", name, "")
    };
    check(
        "resourceNames",
        &named,
        &[
            (cm("get", "my-configmap"), true),
            (cm("update", "my-configmap"), true),
            (cm("get", "other"), false),
            (cm("list", ""), false), // a collection has no name
        ],
    );
    let mut star_name = named.clone();
    star_name.resource_names = list("*");
    check(
        "no wildcard in resourceNames",
        &star_name,
        &[(cm("get", "my-configmap"), false)],
    );
}

#[test]
fn null_and_empty_lists() {
    let get_pod = RequestInfo::resource("get", "", "v1", "ns", "pods", "p", "");
    let version = non_resource("get", "/version");
    let base = rule("get", Some(""), Some("pods"), Some("/version"));
    assert!(allowed(&base, &get_pod) && allowed(&base, &version));

    let mut c = base.clone();
    c.resources = None;
    assert!(allowed(&c, &get_pod), "null resources: any resource");
    assert!(
        allowed(
            &c,
            &RequestInfo::resource("get", "", "v1", "ns", "pods", "p", "log")
        ),
        "and subresource"
    );
    c.resources = Some(vec![]);
    assert!(
        matches!(authorize(&c, &get_pod), Err(Denied::Resource { .. })),
        "[] resources: nothing"
    );

    let mut c = base.clone();
    c.resource_names = Some(vec![]);
    assert!(
        matches!(authorize(&c, &get_pod), Err(Denied::ResourceName { .. })),
        "[] names: nothing"
    );

    let mut c = base.clone();
    c.api_groups = None;
    assert_eq!(authorize(&c, &get_pod), Err(Denied::NoApiGroups));
    c.api_groups = Some(vec![]);
    assert!(matches!(
        authorize(&c, &get_pod),
        Err(Denied::ApiGroup { .. })
    ));

    let mut c = base.clone();
    c.non_resource_urls = None;
    assert_eq!(
        authorize(&c, &version),
        Err(Denied::NoNonResourceUrls {
            path: "/version".into()
        })
    );
    c.non_resource_urls = Some(vec![]);
    assert_eq!(
        authorize(&c, &version),
        Err(Denied::NonResourceUrl {
            path: "/version".into()
        })
    );

    let mut c = base;
    c.verbs = vec![];
    assert_eq!(
        authorize(&c, &get_pod),
        Err(Denied::Verb { verb: "get".into() })
    );
}

#[test]
fn namespace_claim_binds_like_a_role_binding() {
    let mut c = rule("*", Some("*"), None, Some("*"));
    c.namespace = "default".into();
    let req = |path: &str| parse("GET", path, None).unwrap();

    assert!(allowed(&c, &req("/api/v1/namespaces/default/pods")));
    assert_eq!(
        authorize(&c, &req("/api/v1/namespaces/other/pods")),
        Err(Denied::Namespace {
            namespace: "other".into(),
            allowed: "default".into()
        })
    );
    // The namespace object itself is in its own namespace (as for a RoleBinding there).
    assert!(allowed(&c, &req("/api/v1/namespaces/default")));
    assert!(matches!(
        authorize(&c, &req("/api/v1/namespaces")),
        Err(Denied::ClusterScoped { .. })
    ));
    assert_eq!(
        authorize(&c, &req("/api/v1/nodes/n1")),
        Err(Denied::ClusterScoped {
            resource: "nodes".into(),
            allowed: "default".into()
        })
    );
    assert_eq!(
        authorize(&c, &req("/version")),
        Err(Denied::NonResourceScoped {
            path: "/version".into(),
            allowed: "default".into()
        })
    );
    // An empty namespace claim matches nothing.
    c.namespace = String::new();
    assert!(matches!(
        authorize(&c, &req("/api/v1/namespaces/default/pods")),
        Err(Denied::Namespace { .. })
    ));
    assert!(matches!(
        authorize(&c, &req("/api/v1/nodes")),
        Err(Denied::ClusterScoped { .. })
    ));
    // "*" allows all of them.
    c.namespace = "*".into();
    for p in [
        "/api/v1/namespaces/other/pods",
        "/api/v1/namespaces",
        "/api/v1/nodes/n1",
        "/version",
    ] {
        assert!(allowed(&c, &req(p)), "{p}");
    }
}

#[test]
fn non_resource_urls_never_grant_resource_paths() {
    // Gen B checked nonResourceURLs first and allowed any path they matched, even resource paths, and
    // its "/api/*" also matched "/apis/..." (prefix without a segment boundary).
    let c = rule("*", None, None, Some("/api/*"));
    assert_eq!(
        authorize(
            &c,
            &parse("GET", "/api/v1/namespaces/default/pods", None).unwrap()
        ),
        Err(Denied::NoApiGroups)
    );
    assert!(allowed(&c, &parse("GET", "/api/v1", None).unwrap()));
    assert!(matches!(
        authorize(&c, &parse("GET", "/apis", None).unwrap()),
        Err(Denied::NonResourceUrl { .. })
    ));
}

#[test]
fn methods_without_a_verb_need_a_star() {
    let req = parse("OPTIONS", "/api/v1/namespaces/default/pods/p", None).unwrap();
    assert_eq!(
        authorize(&rule("get,list,watch", Some("*"), None, None), &req),
        Err(Denied::Verb {
            verb: String::new()
        })
    );
    assert!(allowed(&rule("*", Some("*"), None, None), &req));
}

/// The Gen B sample GateToken of the original README, as the operator mints it.
fn gen_b_sample() -> Claims {
    let mut c = Claims::new(u64::MAX);
    c.namespace = "default".into();
    c.verbs = vec!["get".into()];
    c.api_groups = list("subresources.kubevirt.io");
    c.resources = list("virtualmachineinstances,virtualmachineinstances/vnc");
    c.resource_names = list("testvm");
    c
}

const VMIS: &str = "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances";

#[test]
fn gen_b_sample_token_opens_the_vnc_console_and_nothing_else() {
    let c = gen_b_sample();
    let get = |path: &str, query: Option<&str>| authorize(&c, &parse("GET", path, query).unwrap());

    assert_eq!(get(&format!("{VMIS}/testvm/vnc"), None), Ok(()));
    assert_eq!(
        get(&format!("{VMIS}/testvm"), None),
        Ok(()),
        "the VMI itself, in the subresources group"
    );
    assert_eq!(
        get(&format!("{VMIS}/testvm/console"), None),
        Err(Denied::Resource {
            resource: "virtualmachineinstances/console".into(),
            group: "subresources.kubevirt.io".into()
        })
    );
    assert_eq!(
        get(&format!("{VMIS}/testvm2/vnc"), None),
        Err(Denied::ResourceName {
            name: "testvm2".into(),
            resource: "virtualmachineinstances/vnc".into()
        })
    );
    assert_eq!(
        get(
            "/apis/subresources.kubevirt.io/v1/namespaces/other/virtualmachineinstances/testvm/vnc",
            None
        ),
        Err(Denied::Namespace {
            namespace: "other".into(),
            allowed: "default".into()
        })
    );
    // The deliberate change from Gen B: collection reads need list, watches need watch.
    assert_eq!(
        get(VMIS, None),
        Err(Denied::Verb {
            verb: "list".into()
        })
    );
    assert_eq!(
        get(VMIS, Some("watch=true")),
        Err(Denied::Verb {
            verb: "watch".into()
        })
    );
    assert_eq!(
        get(VMIS, Some("fieldSelector=metadata.name=testvm")),
        Err(Denied::Verb {
            verb: "list".into()
        })
    );
    assert_eq!(
        get(
            "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm",
            None
        ),
        Err(Denied::ApiGroup {
            group: "kubevirt.io".into()
        })
    );
    assert!(matches!(
        authorize(
            &c,
            &parse("POST", &format!("{VMIS}/testvm/vnc"), None).unwrap()
        ),
        Err(Denied::Verb { .. })
    ));

    // With list and watch granted, a collection read pinned to the name by a field selector passes,
    // an unpinned one does not.
    let mut c = gen_b_sample();
    c.verbs = vec!["get".into(), "list".into(), "watch".into()];
    let run = |query: &str| authorize(&c, &parse("GET", VMIS, Some(query)).unwrap());
    assert_eq!(run("fieldSelector=metadata.name=testvm"), Ok(()));
    assert_eq!(run("watch=1&fieldSelector=metadata.name=testvm"), Ok(()));
    assert_eq!(
        run(""),
        Err(Denied::ResourceName {
            name: String::new(),
            resource: "virtualmachineinstances".into()
        })
    );
}

#[test]
fn deny_reasons_read_well() {
    let msg = |d: Denied| d.to_string();
    assert_eq!(
        msg(Denied::Verb {
            verb: "list".into()
        }),
        r#"verb "list" is not permitted"#
    );
    assert_eq!(
        msg(Denied::Verb {
            verb: String::new()
        }),
        "the HTTP method maps to no Kubernetes verb, and the token does not allow all verbs"
    );
    assert_eq!(
        msg(Denied::ApiGroup {
            group: String::new()
        }),
        r#"API group "" (core) is not permitted"#
    );
    assert_eq!(
        msg(Denied::Resource {
            resource: "virtualmachineinstances/console".into(),
            group: "subresources.kubevirt.io".into()
        }),
        r#"resource "virtualmachineinstances/console" in API group "subresources.kubevirt.io" is not permitted"#
    );
    assert_eq!(
        msg(Denied::ResourceName {
            name: "testvm2".into(),
            resource: "virtualmachineinstances/vnc".into()
        }),
        r#""virtualmachineinstances/vnc" named "testvm2" is not permitted"#
    );
    assert!(
        msg(Denied::ResourceName {
            name: String::new(),
            resource: "pods".into()
        })
        .contains("without an object name")
    );
    assert_eq!(
        msg(Denied::Namespace {
            namespace: "other".into(),
            allowed: "default".into()
        }),
        r#"namespace "other" is not permitted: the token is limited to namespace "default""#
    );
}
