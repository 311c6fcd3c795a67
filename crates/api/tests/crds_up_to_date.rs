//! The CRD manifests checked in under `deploy/crds/` must be exactly what the code generates.

use std::path::PathBuf;

use virt_gateway_api::crd;

fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .to_path_buf()
}

#[test]
fn checked_in_crds_match_the_code() {
    let dir = workspace_root().join(crd::CRDS_DIR);
    let mut stale = Vec::new();
    for (name, generated) in crd::files().expect("CRDs render as YAML") {
        let path = dir.join(&name);
        match std::fs::read_to_string(&path) {
            Ok(on_disk) if on_disk == generated => {}
            Ok(_) => stale.push(format!("{} differs from the generated CRD", path.display())),
            Err(e) => stale.push(format!("{} cannot be read: {e}", path.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "the checked-in CRDs are out of date:\n  {}\nregenerate them from the workspace root with:\n  {}\n",
        stale.join("\n  "),
        crd::REGENERATE_COMMAND
    );
}

#[test]
fn no_stray_crd_files() {
    let dir = workspace_root().join(crd::CRDS_DIR);
    let expected: Vec<String> = crd::files()
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .collect();
    found.sort();
    assert_eq!(
        found,
        expected,
        "deploy/crds holds exactly the generated CRDs; regenerate with: {}",
        crd::REGENERATE_COMMAND
    );
}

#[test]
fn printed_stream_holds_the_crds_and_the_delegation_policy() {
    let all = crd::all_yaml().unwrap();
    let kinds: Vec<String> = serde_yaml::Deserializer::from_str(&all)
        .filter_map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d).unwrap();
            v["kind"].as_str().map(str::to_owned)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ]
    );
    for (_, doc) in crd::files().unwrap() {
        assert!(all.contains(&doc));
    }
}
