//! The real Dex provider and the real API server: tokens signed in through Dex's own login form
//! are authenticated by kube-apiserver's structured authentication as the mapped user, RBAC then
//! applies to that user, and every token the configuration must not accept gets 401.
//!
//! One control plane with two providers serves the whole file: `dex` (tokens valid an hour) and
//! `expired` (Dex's ID token lifetime set to -1h, so its tokens are expired when issued). Both
//! are trusted by the API server, so the only thing wrong with an `expired` token is its age.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use virt_gateway_testenv::identity_provider::{
    GROUPS_PREFIX, GROUPS_USER_EMAIL, USER_EMAIL, USERNAME_PREFIX,
};
use virt_gateway_testenv::{ControlPlane, IdentityProvider, Login, Options, ProviderSettings};

async fn cp() -> &'static ControlPlane {
    ControlPlane::shared_with(Options {
        identity_providers: vec![
            ProviderSettings::new("dex"),
            ProviderSettings {
                id_token_lifetime: "-1h".to_string(),
                ..ProviderSettings::new("expired")
            },
        ],
        ..Options::default()
    })
    .await
}

fn provider<'a>(cp: &'a ControlPlane, name: &str) -> &'a IdentityProvider {
    cp.identity_provider(name).expect("provider started")
}

async fn alice_token(idp: &IdentityProvider) -> String {
    let login = Login::Password {
        email: USER_EMAIL,
        password: idp.user_password(),
    };
    idp.sign_in(idp.client(), login)
        .await
        .expect("sign-in through Dex's login form")
        .id_token
}

/// The user and groups the API server sees for `token` (SelfSubjectReview, as that user).
async fn who_am_i(cp: &ControlPlane, token: &str) -> Result<(String, Vec<String>), u16> {
    let client = cp.client_with_token(token).await;
    match Api::<SelfSubjectReview>::all(client)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
    {
        Ok(review) => {
            let user = review.status.and_then(|s| s.user_info).unwrap_or_default();
            Ok((
                user.username.unwrap_or_default(),
                user.groups.unwrap_or_default(),
            ))
        }
        Err(kube::Error::Api(status)) => Err(status.code),
        Err(e) => panic!("SelfSubjectReview failed without an HTTP status: {e}"),
    }
}

/// Why the API server refuses `token`, from a TokenReview made by the admin.
async fn refusal_reason(cp: &ControlPlane, token: &str) -> String {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.to_string(),
            ..Default::default()
        },
        ..Default::default()
    };
    let status = Api::<TokenReview>::all(cp.client().await)
        .create(&PostParams::default(), &review)
        .await
        .expect("TokenReview")
        .status
        .unwrap_or_default();
    assert_ne!(status.authenticated, Some(true), "the token was accepted");
    status.error.unwrap_or_default()
}

#[tokio::test]
async fn a_token_from_the_login_form_is_authenticated_as_the_prefixed_email() {
    let cp = cp().await;
    let token = alice_token(provider(cp, "dex")).await;
    let (user, groups) = who_am_i(cp, &token).await.expect("authenticated");
    assert_eq!(user, format!("{USERNAME_PREFIX}{USER_EMAIL}"));
    assert!(
        groups.contains(&"system:authenticated".to_string()),
        "{groups:?}"
    );
}

#[tokio::test]
async fn the_groups_claim_becomes_prefixed_kubernetes_groups() {
    let cp = cp().await;
    let idp = provider(cp, "dex");
    let token = idp
        .sign_in(idp.client(), Login::TestUserWithGroups)
        .await
        .expect("sign-in with the test connector")
        .id_token;
    let (user, groups) = who_am_i(cp, &token).await.expect("authenticated");
    assert_eq!(user, format!("{USERNAME_PREFIX}{GROUPS_USER_EMAIL}"));
    assert!(
        groups.contains(&format!("{GROUPS_PREFIX}authors")),
        "{groups:?}"
    );
    // The prefix keeps provider groups apart from Kubernetes' own.
    assert!(groups.iter().all(|g| g != "authors"), "{groups:?}");
}

#[tokio::test]
async fn rbac_applies_to_the_provider_user() {
    let cp = cp().await;
    let ns = cp.fresh_namespace().await;
    let token = alice_token(provider(cp, "dex")).await;
    let configmaps = Api::<ConfigMap>::namespaced(cp.client_with_token(&token).await, &ns);
    match configmaps.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("listing without a binding must be forbidden: {other:?}"),
    }

    let admin = cp.client().await;
    let meta = ObjectMeta {
        name: Some("read-configmaps".to_string()),
        namespace: Some(ns.clone()),
        ..Default::default()
    };
    let role = Role {
        metadata: meta.clone(),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".to_string()]),
            verbs: vec!["list".to_string()],
            ..Default::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .expect("create Role");
    let binding = RoleBinding {
        metadata: meta,
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "Role".to_string(),
            name: "read-configmaps".to_string(),
        },
        subjects: Some(vec![Subject {
            kind: "User".to_string(),
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            name: format!("{USERNAME_PREFIX}{USER_EMAIL}"),
            ..Default::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin, &ns)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create RoleBinding");

    // The authorizer sees new bindings through an informer: allow it a moment, boundedly.
    let mut last = None;
    for _ in 0..50 {
        match configmaps.list(&ListParams::default()).await {
            Ok(_) => return,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("still refused after the RoleBinding: {last:?}");
}

#[tokio::test]
async fn a_token_for_another_client_is_refused() {
    let cp = cp().await;
    let idp = provider(cp, "dex");
    let login = Login::Password {
        email: USER_EMAIL,
        password: idp.user_password(),
    };
    let token = idp
        .sign_in(idp.other_client(), login)
        .await
        .expect("Dex signs in for the other client")
        .id_token;
    assert_eq!(who_am_i(cp, &token).await, Err(401));
    let reason = refusal_reason(cp, &token).await;
    assert!(reason.contains("audience"), "{reason}");
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let cp = cp().await;
    let token = alice_token(provider(cp, "expired")).await;
    assert_eq!(who_am_i(cp, &token).await, Err(401));
    let reason = refusal_reason(cp, &token).await;
    assert!(reason.contains("expired"), "{reason}");
}

/// Rewrites the token's payload claims, keeping the provider's header and signature.
fn with_claims(token: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS compact token");
    let mut claims: serde_json::Value =
        serde_json::from_slice(&B64URL.decode(parts[1]).unwrap()).unwrap();
    edit(&mut claims);
    let payload = B64URL.encode(serde_json::to_vec(&claims).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

#[tokio::test]
async fn tampered_tokens_are_refused() {
    let cp = cp().await;
    let token = alice_token(provider(cp, "dex")).await;
    // The untouched token works, so each refusal below is the tampering's doing.
    assert!(who_am_i(cp, &token).await.is_ok());

    let other_user = with_claims(&token, |c| c["email"] = "admin@virt-gateway.test".into());
    let groups_added = with_claims(&token, |c| c["groups"] = serde_json::json!(["admins"]));
    let later_expiry = with_claims(&token, |c| {
        c["exp"] = (c["exp"].as_i64().unwrap() + 3600).into()
    });
    let parts: Vec<&str> = token.split('.').collect();
    let mut signature = B64URL.decode(parts[2]).unwrap();
    signature[0] ^= 1;
    let bad_signature = format!("{}.{}.{}", parts[0], parts[1], B64URL.encode(&signature));
    let unsigned = format!(
        "{}.{}.",
        B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    for (what, forged) in [
        ("another e-mail", other_user),
        ("added groups", groups_added),
        ("a later expiry", later_expiry),
        ("a flipped signature bit", bad_signature),
        ("alg none without signature", unsigned),
    ] {
        assert_eq!(who_am_i(cp, &forged).await, Err(401), "{what}");
    }
}

#[tokio::test]
async fn the_login_form_refuses_a_wrong_password() {
    let cp = cp().await;
    let idp = provider(cp, "dex");
    let login = Login::Password {
        email: USER_EMAIL,
        password: "not-the-password",
    };
    let err = idp
        .sign_in(idp.client(), login)
        .await
        .expect_err("a wrong password must not sign in");
    assert!(err.contains("refused the credentials"), "{err}");
}

#[tokio::test]
async fn neither_the_password_nor_tokens_reach_the_logs() {
    let cp = cp().await;
    let idp = provider(cp, "dex");
    let tokens = idp
        .sign_in(
            idp.client(),
            Login::Password {
                email: USER_EMAIL,
                password: idp.user_password(),
            },
        )
        .await
        .expect("sign-in");
    // A refused token too: the API server logs failed authentications.
    let forged = with_claims(&tokens.id_token, |c| {
        c["email"] = "x@virt-gateway.test".into()
    });
    assert_eq!(who_am_i(cp, &forged).await, Err(401));
    assert!(who_am_i(cp, &tokens.id_token).await.is_ok());
    let signature = tokens.id_token.rsplit('.').next().unwrap().to_string();
    for log in [
        cp.dir().join("idp-dex/dex.log"),
        cp.dir().join("kube-apiserver.log"),
    ] {
        let text = std::fs::read_to_string(&log).expect("log file");
        assert!(!text.is_empty(), "{} is empty", log.display());
        for (what, secret) in [
            ("password", idp.user_password()),
            ("client secret", idp.client().secret.as_str()),
            ("access token", tokens.access_token.as_str()),
            ("ID token signature", signature.as_str()),
        ] {
            assert!(!text.contains(secret), "{what} in {}", log.display());
        }
    }
}
