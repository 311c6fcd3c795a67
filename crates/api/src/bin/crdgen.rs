//! Prints the GateServer and GateToken CRDs and the delegation policy installed with them, or
//! writes them into a directory.
//!
//! ```text
//! crdgen                  # print everything as one multi-document YAML stream
//! crdgen --write DIR      # write DIR/gateservers.ocgate.yaacov.com.yaml, DIR/gatetokens...,
//!                         # and DIR/virt-gateway-delegation-policy.yaml
//! ```

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use virt_gateway_api::crd;

const USAGE: &str = "usage: crdgen [--write DIR]\n\n\
    Without arguments, prints the GateServer and GateToken CRDs and the delegation policy\n\
    (ValidatingAdmissionPolicies and bindings) as one multi-document YAML stream.\n\
    With --write DIR, writes each CRD to DIR/<crd name>.yaml and the policy to\n\
    DIR/virt-gateway-delegation-policy.yaml (e.g. deploy/crds).\n";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => print(),
        ["--write", dir] => write(Path::new(dir)),
        ["-h" | "--help"] => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crdgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print() -> Result<(), Box<dyn std::error::Error>> {
    let yaml = crd::all_yaml()?;
    std::io::stdout().lock().write_all(yaml.as_bytes())?;
    Ok(())
}

fn write(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, contents) in crd::files()? {
        let path = dir.join(name);
        std::fs::write(&path, contents)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
