//! Property tests: no input makes the parser, authorizer, claims decoder or verifier panic, and an
//! accepted path round-trips.
//!
//! "Round-trips" means: for every path `parse` accepts, `RequestInfo::to_path()` — the path rebuilt
//! from the parsed prefix, group, version, `watch`/`proxy` prefix, namespace and parts — equals
//! `RequestInfo::path`, the decoded path; and for a path without percent-encodings that is the input
//! itself, which then parses again to the same attributes.

mod common;

use proptest::prelude::*;
use serde_json::Value;
use virt_gateway_auth::authz::authorize;
use virt_gateway_auth::jwt::{Claims, Verifier};
use virt_gateway_auth::keys::KeyAlgorithm;
use virt_gateway_auth::request::{RequestInfo, parse};

const SEGMENTS: &[&str] = &[
    "api",
    "apis",
    "v1",
    "v1alpha3",
    "namespaces",
    "default",
    "other",
    "pods",
    "nodes",
    "watch",
    "proxy",
    "status",
    "finalize",
    "vnc",
    "console",
    "subresources.kubevirt.io",
    "virtualmachineinstances",
    "testvm",
    "",
    ".",
    "..",
    "...",
    "%2F",
    "%2f",
    "%2E",
    "%25",
    "%41",
    "%5C",
    "%00",
    "%zz",
    "%",
    "%C3%A9",
    "%FF",
    "a%20b",
    "x:y",
    "é",
    "a b",
    "?",
    "#",
    "*",
    "version",
    "healthz",
    "logs",
];

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(SEGMENTS).prop_map(str::to_owned),
        1 => "[a-z0-9%.:~-]{1,6}",
    ]
}

/// Paths shaped like API paths (mostly), plus arbitrary strings.
fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (proptest::collection::vec(segment(), 0..9), any::<bool>()).prop_map(|(segs, trailing)| {
            let mut p = format!("/{}", segs.join("/"));
            if trailing {
                p.push('/');
            }
            p
        }),
        1 => any::<String>(),
        1 => "/[ -~]{0,40}",
    ]
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(&["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get", "CONNECT"][..])
            .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn query() -> impl Strategy<Value = Option<String>> {
    let pair = prop_oneof![
        proptest::sample::select(
            &[
                "watch=true",
                "watch=0",
                "watch",
                "watch=FaLsE",
                "fieldSelector=metadata.name%3Dtestvm",
                "fieldSelector=metadata.name=a,b",
                "fieldSelector=metadata.name=a%5C,b",
                "limit=5",
                "x=%zz",
                "a;b",
                "",
                "fieldSelector=metadata.name!=x",
                "watch=%C5%BF",
            ][..]
        )
        .prop_map(str::to_owned),
        "[a-zA-Z=%&+,.\\\\]{0,12}",
    ];
    proptest::option::of(proptest::collection::vec(pair, 0..4).prop_map(|pairs| pairs.join("&")))
}

fn string_list() -> impl Strategy<Value = Option<Vec<String>>> {
    let item = prop_oneof![
        proptest::sample::select(
            &[
                "*",
                "",
                "get",
                "list",
                "watch",
                "pods",
                "pods/status",
                "*/vnc",
                "virtualmachineinstances",
                "virtualmachineinstances/vnc",
                "subresources.kubevirt.io",
                "testvm",
                "/version",
                "/apis/*",
                "/*",
            ][..]
        )
        .prop_map(str::to_owned),
        any::<String>(),
    ];
    proptest::option::of(proptest::collection::vec(item, 0..4))
}

fn claims() -> impl Strategy<Value = Claims> {
    (
        string_list(),
        string_list(),
        string_list(),
        string_list(),
        proptest::collection::vec("[a-z*]{0,8}", 0..3),
        prop_oneof![
            Just("*".to_owned()),
            Just("default".to_owned()),
            Just(String::new()),
            any::<String>()
        ],
    )
        .prop_map(
            |(api_groups, resources, resource_names, non_resource_urls, verbs, namespace)| {
                let mut c = Claims::new(0);
                c.api_groups = api_groups;
                c.resources = resources;
                c.resource_names = resource_names;
                c.non_resource_urls = non_resource_urls;
                c.verbs = verbs;
                c.namespace = namespace;
                c
            },
        )
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    proptest::sample::select(
                        &[
                            "exp",
                            "nbf",
                            "iat",
                            "jti",
                            "namespace",
                            "verbs",
                            "apiGroups",
                            "resources",
                            "resourceNames",
                            "nonResourceURLs"
                        ][..]
                    )
                    .prop_map(str::to_owned),
                    ".{0,4}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn all_allowed() -> Claims {
    let mut c = Claims::new(0);
    c.verbs = vec!["*".into()];
    c.api_groups = Some(vec!["*".into()]);
    c.non_resource_urls = Some(vec!["*".into()]);
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_and_accepted_paths_round_trip(m in method(), p in path(), q in query()) {
        if let Ok(info) = parse(&m, &p, q.as_deref()) {
            prop_assert_eq!(info.to_path(), info.path.clone());
            if !p.contains('%') {
                prop_assert_eq!(&info.path, &p);
                prop_assert_eq!(parse(&m, &info.path, q.as_deref()), Ok(info.clone()));
            }
            if info.is_resource_request {
                prop_assert!(!info.parts.is_empty());
                prop_assert_eq!(&info.resource, &info.parts[0]);
                prop_assert!(info.api_prefix == "api" || info.api_prefix == "apis");
                prop_assert!(!info.path.ends_with('/'));
                for part in &info.parts {
                    prop_assert!(!part.is_empty() && part != "." && part != ".." && !part.contains('/'));
                }
            } else {
                prop_assert_eq!(&info.verb, &m.to_ascii_lowercase());
            }
            // A token that allows everything allows every parsed request.
            prop_assert_eq!(authorize(&all_allowed(), &info), Ok(()));
        }
    }

    #[test]
    fn authorize_never_panics(c in claims(), m in method(), p in path(), q in query()) {
        if let Ok(info) = parse(&m, &p, q.as_deref()) {
            let first = authorize(&c, &info);
            prop_assert_eq!(first, authorize(&c, &info), "deterministic");
        }
        let _ = authorize(&c, &RequestInfo::non_resource(&m, &p));
    }

    #[test]
    fn claims_decoding_never_panics_and_round_trips(v in json_value()) {
        if let Ok(claims) = Claims::from_json(&v) {
            prop_assert_eq!(Claims::from_json(&claims.to_json()), Ok(claims));
        }
    }

    #[test]
    fn verify_never_panics(token in prop_oneof![
        any::<String>(),
        "[A-Za-z0-9_=+/-]{0,60}\\.[A-Za-z0-9_=+/-]{0,60}\\.[A-Za-z0-9_=+/-]{0,60}",
        "eyJ[A-Za-z0-9_-]{0,40}\\.eyJ[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,90}",
    ], now in any::<u64>()) {
        let verifier = Verifier::new(KeyAlgorithm::ALL.iter().map(|a| common::signing_key(*a).public_key().clone()));
        let _ = verifier.verify(&token, now);
    }
}
