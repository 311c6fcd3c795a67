//! Request parsing parity with kube-apiserver's RequestInfo resolver, and the canonical-path rules.

use virt_gateway_auth::request::{MAX_PATH_LEN, MAX_QUERY_LEN, RequestError, RequestInfo, parse};

/// One expected parse: method, path?query, then verb, prefix, group, version, namespace, resource,
/// subresource, name, parts.
struct Case {
    method: &'static str,
    url: &'static str,
    verb: &'static str,
    prefix: &'static str,
    group: &'static str,
    version: &'static str,
    namespace: &'static str,
    resource: &'static str,
    subresource: &'static str,
    name: &'static str,
    parts: &'static [&'static str],
}

#[allow(clippy::too_many_arguments)]
const fn case(
    method: &'static str,
    url: &'static str,
    verb: &'static str,
    prefix: &'static str,
    group: &'static str,
    version: &'static str,
    namespace: &'static str,
    resource: &'static str,
    subresource: &'static str,
    name: &'static str,
    parts: &'static [&'static str],
) -> Case {
    Case {
        method,
        url,
        verb,
        prefix,
        group,
        version,
        namespace,
        resource,
        subresource,
        name,
        parts,
    }
}

fn split_url(url: &str) -> (&str, Option<&str>) {
    match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    }
}

fn check(cases: &[Case]) {
    for c in cases {
        let (path, query) = split_url(c.url);
        let info =
            parse(c.method, path, query).unwrap_or_else(|e| panic!("{} {}: {e}", c.method, c.url));
        let got = (
            info.is_resource_request,
            info.verb.as_str(),
            info.api_prefix.as_str(),
            info.api_group.as_str(),
            info.api_version.as_str(),
            info.namespace.as_str(),
            info.resource.as_str(),
            info.subresource.as_str(),
            info.name.as_str(),
        );
        let want = (
            true,
            c.verb,
            c.prefix,
            c.group,
            c.version,
            c.namespace,
            c.resource,
            c.subresource,
            c.name,
        );
        assert_eq!(got, want, "{} {}", c.method, c.url);
        assert_eq!(info.parts, c.parts, "{} {}", c.method, c.url);
        assert_eq!(info.path, path, "{} {}", c.method, c.url);
        assert_eq!(info.to_path(), path, "round trip of {}", c.url);
    }
}

// Cases of TestGetAPIRequestInfo in kubernetes/kubernetes
// staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo_test.go, written out again here.
// (Upstream's table expects prefix "api" for the /apis/extensions rows but never asserts the prefix;
// the resolver yields "apis", which is what is checked here.)
#[test]
#[rustfmt::skip] // one case per line reads as a table
fn kubernetes_resource_request_cases() {
    check(&[
        // Resource paths.
        case("GET", "/api/v1/namespaces", "list", "api", "", "v1", "", "namespaces", "", "", &["namespaces"]),
        case("GET", "/api/v1/namespaces/other", "get", "api", "", "v1", "other", "namespaces", "", "other", &["namespaces", "other"]),
        case("GET", "/api/v1/namespaces/other/pods", "list", "api", "", "v1", "other", "pods", "", "", &["pods"]),
        case("GET", "/api/v1/namespaces/other/pods/foo", "get", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
        case("HEAD", "/api/v1/namespaces/other/pods/foo", "get", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
        case("GET", "/api/v1/pods", "list", "api", "", "v1", "", "pods", "", "", &["pods"]),
        case("HEAD", "/api/v1/pods", "list", "api", "", "v1", "", "pods", "", "", &["pods"]),
        case("PATCH", "/api/v1/namespaces/new-namespace", "patch", "api", "", "v1", "new-namespace", "namespaces", "", "new-namespace", &["namespaces", "new-namespace"]),
        // Special verbs in the path.
        case("GET", "/api/v1/proxy/namespaces/other/pods/foo", "proxy", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
        case("GET", "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource", "proxy", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo", "subpath", "not", "a", "subresource"]),
        case("GET", "/api/v1/watch/pods", "watch", "api", "", "v1", "", "pods", "", "", &["pods"]),
        case("GET", "/api/v1/pods?watch=true", "watch", "api", "", "v1", "", "pods", "", "", &["pods"]),
        case("GET", "/api/v1/pods?watch=false", "list", "api", "", "v1", "", "pods", "", "", &["pods"]),
        case("GET", "/api/v1/watch/namespaces/other/pods", "watch", "api", "", "v1", "other", "pods", "", "", &["pods"]),
        case("GET", "/api/v1/namespaces/other/pods?watch=1", "watch", "api", "", "v1", "other", "pods", "", "", &["pods"]),
        case("GET", "/api/v1/namespaces/other/pods?watch=0", "list", "api", "", "v1", "other", "pods", "", "", &["pods"]),
        // Subresources, including the namespace's own (status, finalize).
        case("GET", "/api/v1/namespaces/other/pods/foo/status", "get", "api", "", "v1", "other", "pods", "status", "foo", &["pods", "foo", "status"]),
        case("GET", "/api/v1/namespaces/other/pods/foo/proxy/subpath", "get", "api", "", "v1", "other", "pods", "proxy", "foo", &["pods", "foo", "proxy", "subpath"]),
        case("PUT", "/api/v1/namespaces/other/finalize", "update", "api", "", "v1", "other", "namespaces", "finalize", "other", &["namespaces", "other", "finalize"]),
        case("PUT", "/api/v1/namespaces/other/status", "update", "api", "", "v1", "other", "namespaces", "status", "other", &["namespaces", "other", "status"]),
        // Verbs from methods.
        case("PATCH", "/api/v1/namespaces/other/pods/foo", "patch", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
        case("DELETE", "/api/v1/namespaces/other/pods/foo", "delete", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
        case("POST", "/api/v1/namespaces/other/pods", "create", "api", "", "v1", "other", "pods", "", "", &["pods"]),
        // deletecollection.
        case("DELETE", "/api/v1/nodes", "deletecollection", "api", "", "v1", "", "nodes", "", "", &["nodes"]),
        case("DELETE", "/api/v1/namespaces", "deletecollection", "api", "", "v1", "", "namespaces", "", "", &["namespaces"]),
        case("DELETE", "/api/v1/namespaces/other/pods", "deletecollection", "api", "", "v1", "other", "pods", "", "", &["pods"]),
        case("DELETE", "/apis/extensions/v1/namespaces/other/pods", "deletecollection", "apis", "extensions", "v1", "other", "pods", "", "", &["pods"]),
        // Group and version.
        case("POST", "/apis/extensions/v1/namespaces/other/pods", "create", "apis", "extensions", "v1", "other", "pods", "", "", &["pods"]),
        case("POST", "/apis/extensions/v1beta3/namespaces/other/pods", "create", "apis", "extensions", "v1beta3", "other", "pods", "", "", &["pods"]),
    ]);
}

// Cases of TestGetNonAPIRequestInfo and the error cases of TestGetAPIRequestInfo in the same file:
// which paths are resource requests at all. (Upstream's "empty" path "" is refused here instead, as
// not starting with '/'.)
#[test]
fn kubernetes_resource_or_not_cases() {
    let cases: &[(&str, bool)] = &[
        ("/api/version/resource", true),
        ("/apis/group/version/resource/name/subresource", true),
        ("/api/version/resource/name/subresource", true),
        ("/apis/batch/v1/job", true),
        ("/apis/batch/v1/job/foo", true),
        ("/apis/batch/v1/job/foo/scale", true),
        ("/not-api/version/resource", false),
        ("/badprefix/version/resource", false),
        ("/apis/extensions/v1beta1", false),
        ("/apis/extensions/v1beta1/", false),
        ("/apis/version/resource", false), // "missing api group"
        ("/api/version", false),
        ("/api/version/", false),
        ("/apis/group/version/", false),
        ("/api", false),
        ("/", false),
    ];
    for (path, resource) in cases {
        let info = parse("GET", path, None).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(info.is_resource_request, *resource, "{path}");
        if !resource {
            assert_eq!(
                info.verb, "get",
                "non-resource verb is the lower-cased method: {path}"
            );
            assert_eq!(info.path, *path);
        }
    }
    assert_eq!(parse("GET", "", None), Err(RequestError::NotAbsolute));
}

// Cases of TestFieldSelectorParsing in the same file: a fieldSelector pinning metadata.name names the
// object of a list or watch; an invalid selector pins nothing.
#[test]
fn kubernetes_field_selector_cases() {
    let cases: &[(&str, &str, &str)] = &[
        ("", "", "list"),
        ("fieldSelector=metadata.name=name1", "name1", "list"),
        (
            "watch=true&fieldSelector=metadata.name=name1",
            "name1",
            "watch",
        ),
        ("fieldSelector=foo=bar", "", "list"),
        ("fieldSelector=metadata.name=name1,foo", "", "list"),
        (
            "fieldSelector=metadata.name=name1,foo&watch=true",
            "",
            "watch",
        ),
        (
            "fieldSelector=metadata.name=name1,foo&watch=false",
            "",
            "list",
        ),
    ];
    for (query, name, verb) in cases {
        let info = parse("GET", "/apis/group/version/resource", Some(query)).unwrap();
        assert_eq!(
            (info.name.as_str(), info.verb.as_str()),
            (*name, *verb),
            "?{query}"
        );
    }
}

// Our own cases for the details of the same resolver and of apimachinery's field selector parser
// (staging/src/k8s.io/apimachinery/pkg/fields/selector.go) and boolean query conversion
// (Convert_Slice_string_To_bool: anything but "0" or "false" in any case, even empty, is true).
#[test]
fn query_details() {
    let verb_name = |query: &str| {
        let info = parse("GET", "/api/v1/namespaces/default/pods", Some(query)).unwrap();
        (info.verb, info.name)
    };
    let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(verb_name("watch"), s("watch", ""));
    assert_eq!(verb_name("watch="), s("watch", ""));
    assert_eq!(verb_name("watch=FALSE"), s("list", ""));
    assert_eq!(verb_name("watch=no"), s("watch", ""));
    assert_eq!(
        verb_name("watch=0&watch=1"),
        s("list", ""),
        "first value wins"
    );
    assert_eq!(
        verb_name("watch=%74rue"),
        s("watch", ""),
        "values are percent-decoded"
    );
    assert_eq!(
        verb_name("fieldSelector=metadata.name%3Dweb-1"),
        s("list", "web-1")
    );
    assert_eq!(
        verb_name("fieldSelector=metadata.name==web-1"),
        s("list", "web-1")
    );
    assert_eq!(
        verb_name("fieldSelector=metadata.name!=web-1"),
        s("list", "")
    );
    assert_eq!(
        verb_name("fieldSelector=status.phase=Running,metadata.name=web-1"),
        s("list", "web-1")
    );
    assert_eq!(
        verb_name("fieldSelector=metadata.name=a,metadata.name=b"),
        s("list", "a"),
        "first in sorted order"
    );
    assert_eq!(
        verb_name("fieldSelector=metadata.name=a%5C,b"),
        s("list", "a,b"),
        "escaped comma"
    );
    assert_eq!(
        verb_name("fieldSelector=metadata.name=a%5Cx"),
        s("list", ""),
        "invalid escape"
    );
    assert_eq!(
        verb_name("fieldSelector=metadata.name=a+b"),
        s("list", "a b"),
        "+ is a space"
    );
    assert_eq!(
        verb_name("fieldSelector=metadata.name=.."),
        s("list", ""),
        "not a valid path segment name"
    );
    assert_eq!(verb_name("fieldSelector=metadata.name=a/b"), s("list", ""));
    assert_eq!(verb_name("fieldSelector=metadata.name=a%25"), s("list", ""));
    assert_eq!(
        verb_name("fieldSelector=metadata.name=x&fieldSelector=metadata.name=y"),
        s("list", "x")
    );
    assert_eq!(verb_name("fieldSelector="), s("list", ""));
    // The name rule is only for list/watch: a DELETE of the collection stays deletecollection.
    let del = parse(
        "DELETE",
        "/api/v1/namespaces/default/pods",
        Some("fieldSelector=metadata.name=x"),
    )
    .unwrap();
    assert_eq!(
        (del.verb.as_str(), del.name.as_str()),
        ("deletecollection", "")
    );
    // And a named GET ignores watch.
    let named = parse(
        "GET",
        "/api/v1/namespaces/default/pods/p",
        Some("watch=true"),
    )
    .unwrap();
    assert_eq!(named.verb, "get");
}

#[test]
fn malformed_queries_are_refused() {
    for q in ["watch=true;x=1", "a=%zz", "a=%2", "%=1"] {
        assert!(
            matches!(
                parse("GET", "/api/v1/pods", Some(q)),
                Err(RequestError::InvalidQuery { .. })
            ),
            "?{q}"
        );
    }
    assert!(matches!(
        parse("GET", "/api/v1/pods", Some("watch=fal%C5%BFe")),
        Err(RequestError::InvalidQuery {
            reason: "the watch parameter is not ASCII"
        })
    ));
    let long = "a".repeat(MAX_QUERY_LEN + 1);
    assert_eq!(
        parse("GET", "/api/v1/pods", Some(&long)),
        Err(RequestError::QueryTooLong {
            len: MAX_QUERY_LEN + 1,
            max: MAX_QUERY_LEN
        })
    );
    // Empty pairs and unknown parameters are fine.
    assert_eq!(
        parse("GET", "/api/v1/pods", Some("&&limit=500&"))
            .unwrap()
            .verb,
        "list"
    );
}

// Our own cases: the KubeVirt paths the gateway exists for, and shapes the upstream table lacks.
#[test]
#[rustfmt::skip] // one case per line reads as a table
fn kubevirt_and_other_shapes() {
    check(&[
        case("GET", "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/vnc", "get", "apis", "subresources.kubevirt.io", "v1", "default", "virtualmachineinstances", "vnc", "testvm", &["virtualmachineinstances", "testvm", "vnc"]),
        case("GET", "/apis/subresources.kubevirt.io/v1alpha3/namespaces/ns1/virtualmachineinstances/vm1/console", "get", "apis", "subresources.kubevirt.io", "v1alpha3", "ns1", "virtualmachineinstances", "console", "vm1", &["virtualmachineinstances", "vm1", "console"]),
        case("PUT", "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/vm/start", "update", "apis", "subresources.kubevirt.io", "v1", "default", "virtualmachines", "start", "vm", &["virtualmachines", "vm", "start"]),
        case("GET", "/apis/kubevirt.io/v1/virtualmachineinstances?watch=true", "watch", "apis", "kubevirt.io", "v1", "", "virtualmachineinstances", "", "", &["virtualmachineinstances"]),
        case("GET", "/api/v1/nodes/n1", "get", "api", "", "v1", "", "nodes", "", "n1", &["nodes", "n1"]),
        case("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:aggregate-to-admin", "get", "apis", "rbac.authorization.k8s.io", "v1", "", "clusterroles", "", "system:aggregate-to-admin", &["clusterroles", "system:aggregate-to-admin"]),
        // A namespace name followed by "namespaces": the resource is namespaces inside the namespace.
        case("GET", "/api/v1/namespaces/a/namespaces/b", "get", "api", "", "v1", "a", "namespaces", "", "b", &["namespaces", "b"]),
        // Methods without a Kubernetes verb.
        case("OPTIONS", "/api/v1/namespaces/default/pods/p", "", "api", "", "v1", "default", "pods", "", "p", &["pods", "p"]),
        case("get", "/api/v1/namespaces/default/pods/p", "", "api", "", "v1", "default", "pods", "", "p", &["pods", "p"]),
        // A watch via the path prefix keeps its name.
        case("GET", "/api/v1/watch/namespaces/default/pods/p", "watch", "api", "", "v1", "default", "pods", "", "p", &["pods", "p"]),
        // Deep paths: only the third part is the subresource.
        case("GET", "/api/v1/namespaces/default/services/s/proxy/a/b", "get", "api", "", "v1", "default", "services", "proxy", "s", &["services", "s", "proxy", "a", "b"]),
    ]);
    assert_eq!(
        parse("GET", "/api/v1/watch", None),
        Err(RequestError::MissingResource { verb: "watch".into() })
    );
    assert_eq!(
        parse("GET", "/apis/g/v1/proxy", None),
        Err(RequestError::MissingResource { verb: "proxy".into() })
    );
}

#[test]
fn non_resource_requests_use_the_lower_cased_method() {
    for (method, path) in [
        ("GET", "/version"),
        ("GET", "/healthz"),
        ("HEAD", "/openapi/v2"),
        ("GET", "/apis"),
        ("GET", "/apis/kubevirt.io"),
        ("GET", "/api/v1"),
        ("POST", "/logs/"),
        ("PROPFIND", "/"),
    ] {
        let info = parse(method, path, Some("watch=true")).unwrap();
        assert!(!info.is_resource_request, "{path}");
        assert_eq!(info.verb, method.to_ascii_lowercase());
        assert_eq!(
            (info.path.as_str(), info.to_path()),
            (path, path.to_owned())
        );
        assert_eq!(info.namespace, "");
    }
}

#[test]
fn non_canonical_paths_are_refused() {
    let refused: &[(&str, RequestError)] = &[
        ("api/v1/pods", RequestError::NotAbsolute),
        (
            "/api/v1/namespaces/a/../b/pods",
            RequestError::DotSegment {
                index: 4,
                segment: "..".into(),
            },
        ),
        (
            "/api/v1/./pods",
            RequestError::DotSegment {
                index: 2,
                segment: ".".into(),
            },
        ),
        (
            "/..",
            RequestError::DotSegment {
                index: 0,
                segment: "..".into(),
            },
        ),
        ("//api/v1/pods", RequestError::EmptySegment { index: 0 }),
        ("/api//v1/pods", RequestError::EmptySegment { index: 1 }),
        ("/api/v1/pods//", RequestError::EmptySegment { index: 3 }),
        ("/api/v1/pods/", RequestError::TrailingSlash),
        (
            "/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstances/",
            RequestError::TrailingSlash,
        ),
        (
            "/api/v1/namespaces/a%2F..%2Fb/pods",
            RequestError::ForbiddenEscape {
                escape: "%2F".into(),
            },
        ),
        (
            "/api/v1/namespaces/a%2fb/pods",
            RequestError::ForbiddenEscape {
                escape: "%2f".into(),
            },
        ),
        (
            "/api/v1/namespaces/%2E%2E/pods",
            RequestError::ForbiddenEscape {
                escape: "%2E".into(),
            },
        ),
        (
            "/api/v1/namespaces/%2e/pods",
            RequestError::ForbiddenEscape {
                escape: "%2e".into(),
            },
        ),
        (
            "/api/v1/namespaces/a%252Fb/pods",
            RequestError::ForbiddenEscape {
                escape: "%25".into(),
            },
        ),
        (
            "/api/v1/namespaces/a%5Cb/pods",
            RequestError::ForbiddenEscape {
                escape: "%5C".into(),
            },
        ),
        (
            "/api/v1/namespaces/a%00/pods",
            RequestError::ForbiddenEscape {
                escape: "%00".into(),
            },
        ),
        (
            "/api/v1/namespaces/a%7f/pods",
            RequestError::ForbiddenEscape {
                escape: "%7f".into(),
            },
        ),
        (
            "/api/v1/namespaces/a%zz/pods",
            RequestError::InvalidPercentEncoding { offset: 20 },
        ),
        (
            "/api/v1/pods%2",
            RequestError::InvalidPercentEncoding { offset: 12 },
        ),
        (
            "/api/v1/pods%",
            RequestError::InvalidPercentEncoding { offset: 12 },
        ),
        (
            "/api/v1/namespaces/%FF/pods",
            RequestError::InvalidUtf8 { index: 3 },
        ),
        (
            "/api/v1/namespaces/a b/pods",
            RequestError::InvalidCharacter { ch: ' ' },
        ),
        (
            "/api/v1/namespaces/a\\b/pods",
            RequestError::InvalidCharacter { ch: '\\' },
        ),
        (
            "/api/v1/pods?watch=1",
            RequestError::InvalidCharacter { ch: '?' },
        ),
        ("/api/v1/pods#x", RequestError::InvalidCharacter { ch: '#' }),
        (
            "/api/v1/namespaces/é/pods",
            RequestError::InvalidCharacter { ch: 'é' },
        ),
        (
            "/api/v1/namespaces/a\tb/pods",
            RequestError::InvalidCharacter { ch: '\t' },
        ),
    ];
    for (path, err) in refused {
        assert_eq!(parse("GET", path, None).as_ref(), Err(err), "{path:?}");
    }
    let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
    assert_eq!(
        parse("GET", &long, None),
        Err(RequestError::PathTooLong {
            len: MAX_PATH_LEN + 1,
            max: MAX_PATH_LEN
        })
    );
    for method in ["", "GE T", "GET\r\n", "ÜBER", &"X".repeat(33)] {
        assert!(
            matches!(
                parse(method, "/api", None),
                Err(RequestError::InvalidMethod { .. })
            ),
            "{method:?}"
        );
    }
}

#[test]
fn other_escapes_are_decoded_for_comparison() {
    // The API server decodes them, so the attributes must be the decoded values.
    let info = parse("GET", "/api/v1/namespaces/def%61ult/pods/a%3Ab%20c", None).unwrap();
    assert_eq!(
        (info.namespace.as_str(), info.name.as_str()),
        ("default", "a:b c")
    );
    assert_eq!(info.path, "/api/v1/namespaces/default/pods/a:b c");
    assert_eq!(info.to_path(), info.path);
    let utf8 = parse("GET", "/logs/%C3%A9t%C3%A9", None).unwrap();
    assert_eq!(utf8.path, "/logs/été");
}

#[test]
fn attributes_built_directly_render_a_path() {
    let info = RequestInfo::resource(
        "get",
        "subresources.kubevirt.io",
        "v1",
        "default",
        "virtualmachineinstances",
        "testvm",
        "vnc",
    );
    assert_eq!(
        info.path,
        "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/testvm/vnc"
    );
    assert_eq!(parse("GET", &info.path, None).unwrap(), info);
    let core = RequestInfo::resource("list", "", "v1", "", "nodes", "", "");
    assert_eq!(core.path, "/api/v1/nodes");
    assert_eq!(parse("GET", "/api/v1/nodes", None).unwrap(), core);
    assert_eq!(
        RequestInfo::non_resource("get", "/version").combined_resource(),
        ""
    );
}
