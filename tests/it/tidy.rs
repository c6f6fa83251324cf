//! Keeps the crate layering that ARCHITECTURE.md describes: a dependency edge between Freshet's
//! crates that is not listed here fails the build.

use std::collections::{BTreeMap, BTreeSet};

/// For each crate, the Freshet crates it may depend on (normal dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("freshet-core", &[]),
    ("freshet-state", &["freshet-core"]),
    ("freshet-dsl", &["freshet-core", "freshet-state"]),
    ("freshet-runtime", &["freshet-core", "freshet-state", "freshet-dsl"]),
    ("freshet-connectors", &["freshet-core"]),
    ("freshet", &["freshet-core", "freshet-state", "freshet-dsl", "freshet-runtime", "freshet-connectors"]),
];

#[test]
fn crate_dependencies_point_down_the_layers() {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let allowed: BTreeMap<&str, BTreeSet<&str>> =
        ALLOWED.iter().map(|(k, v)| (*k, v.iter().copied().collect())).collect();
    let mut seen = BTreeSet::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        seen.insert(name.to_owned());
        let permitted = allowed
            .get(name)
            .unwrap_or_else(|| panic!("crate {name} is not in ARCHITECTURE.md's map; add it there and here"));
        for dep in package["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            let normal = dep["kind"].is_null();
            if dep_name.starts_with("freshet") && normal {
                assert!(permitted.contains(dep_name), "{name} may not depend on {dep_name} (see ARCHITECTURE.md)");
            }
        }
    }
    assert_eq!(seen.len(), ALLOWED.len(), "every crate of the map exists");
}
