//! Keeps the crate layering that ARCHITECTURE.md describes: a dependency edge between Freshet's
//! crates that is not listed here fails the build.

use std::collections::{BTreeMap, BTreeSet};

/// For each crate, the Freshet crates it may depend on (normal dependencies).
/// Above `freshet-core`, crates see the log only through it.
const ALLOWED: &[(&str, &[&str])] = &[
    ("freshet-log", &[]),
    ("freshet-coord", &["freshet-log"]),
    ("freshet-core", &["freshet-log", "freshet-coord"]),
    ("freshet-cluster", &["freshet-log", "freshet-coord"]),
    ("freshet-broker", &["freshet-log", "freshet-coord", "freshet-cluster"]),
    ("freshet-state", &["freshet-core"]),
    ("freshet-dsl", &["freshet-core", "freshet-state"]),
    ("freshet-runtime", &["freshet-core", "freshet-state", "freshet-dsl"]),
    ("freshet-sql", &["freshet-core", "freshet-dsl", "freshet-runtime"]),
    ("freshet-connectors", &["freshet-core"]),
    (
        "freshet",
        &[
            "freshet-log",
            "freshet-core",
            "freshet-broker",
            "freshet-state",
            "freshet-dsl",
            "freshet-runtime",
            "freshet-sql",
            "freshet-connectors",
        ],
    ),
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

/// The normal dependencies `cargo tree` prints for a package with its default features: one
/// crate name per line.
fn normal_dependencies(package: &str) -> BTreeSet<String> {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["tree", "-p", package, "-e", "normal", "--prefix", "none", "--format", "{lib}", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // A crate printed before is marked ` (*)`.
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// A streams-only program compiles neither the broker and the Kafka protocol's message types nor
/// DataFusion; a program of the client API compiles no broker either.
#[test]
fn streams_programs_compile_neither_the_broker_nor_sql() {
    let runtime = normal_dependencies("freshet-runtime");
    assert!(runtime.contains("freshet_core"), "cargo tree printed what it was asked for: {runtime:?}");
    for absent in ["kafka_protocol", "freshet_broker", "datafusion", "freshet_sql"] {
        assert!(!runtime.contains(absent), "freshet-runtime depends on {absent}");
    }
    let client = normal_dependencies("freshet-core");
    for absent in ["kafka_protocol", "freshet_broker"] {
        assert!(!client.contains(absent), "freshet-core depends on {absent}");
    }
}
