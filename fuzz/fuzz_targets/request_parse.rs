//! Parses arbitrary method/path/query triples (separated by newlines in the input) and authorizes the
//! result with a few fixed claims. Also checks the round-trip invariant: an accepted request
//! re-renders to its decoded path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use virt_gateway_auth::authz::authorize;
use virt_gateway_auth::jwt::Claims;
use virt_gateway_auth::request::parse;

fn claims() -> Vec<Claims> {
    let list = |items: &[&str]| Some(items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    let mut sample = Claims::new(u64::MAX);
    sample.namespace = "default".into();
    sample.api_groups = list(&["subresources.kubevirt.io"]);
    sample.resources = list(&["virtualmachineinstances", "virtualmachineinstances/vnc"]);
    sample.resource_names = list(&["testvm"]);
    let mut wide = Claims::new(u64::MAX);
    wide.verbs = vec!["*".into()];
    wide.api_groups = list(&["*"]);
    wide.resources = list(&["*/status", "pods", "*"]);
    wide.non_resource_urls = list(&["/version", "/apis/*", "*"]);
    let mut nothing = Claims::new(u64::MAX);
    nothing.namespace = String::new();
    nothing.verbs = vec![];
    nothing.api_groups = Some(vec![]);
    nothing.resource_names = Some(vec![]);
    vec![sample, wide, nothing]
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.splitn(3, '\n');
    let method = fields.next().unwrap_or("");
    let path = fields.next().unwrap_or("");
    let query = fields.next();
    if let Ok(info) = parse(method, path, query) {
        assert_eq!(info.to_path(), info.path, "accepted path must round-trip");
        if !path.contains('%') {
            assert_eq!(info.path, path);
        }
        for c in claims() {
            let _ = authorize(&c, &info);
        }
    }
});
