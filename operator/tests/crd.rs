//! The CRD: the committed `crds/livestream.yaml` is exactly what `streamfleet-operator crd`
//! prints, and its schema rejects bad LiveStreams the way the API server will, checked with a
//! JSON-Schema validator (structural constraints) and kube's client-side CEL evaluator (the
//! `x-kubernetes-validations` rules, with their messages).

use serde_json::{Value, json};
use streamfleet_operator::crd::crd_yaml;

fn committed_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/livestream.yaml")
}

#[test]
fn committed_crd_matches_the_generated_one() {
    let generated = crd_yaml().expect("renders");
    let committed = std::fs::read_to_string(committed_path()).unwrap_or_default();
    assert!(
        committed == generated,
        "crds/livestream.yaml is stale: run `cargo run -p streamfleet-operator -- crd > crds/livestream.yaml`"
    );
}

#[test]
fn the_binary_prints_the_crd() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_streamfleet-operator")).arg("crd").output().expect("runs");
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).expect("utf8"), crd_yaml().expect("renders"));
}

fn schema() -> Value {
    let crd: Value = serde_yaml::from_str(&crd_yaml().expect("renders")).expect("YAML");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn livestream(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "streamfleet.io/v1alpha1",
        "kind": "LiveStream",
        "metadata": {"name": name, "namespace": "media"},
        "spec": spec,
    })
}

/// Every error the API server would report for `obj`: structural first, then CEL.
fn admission_errors(obj: &Value) -> Vec<String> {
    let schema = schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let mut errors: Vec<String> = validator.iter_errors(obj).map(|e| format!("{}: {e}", e.instance_path)).collect();
    if let Err(cel) = kube::core::cel::Validator::new().validate(&schema, obj, None) {
        errors.extend(cel.into_vec().into_iter().map(|e| e.to_string()));
    }
    errors
}

#[track_caller]
fn assert_rejected(obj: Value, expected: &str) {
    let errors = admission_errors(&obj);
    assert!(
        errors.iter().any(|e| e.contains(expected)),
        "expected an error containing {expected:?} for {obj}, got {errors:?}"
    );
}

#[test]
fn good_livestreams_are_accepted() {
    for obj in [
        livestream("news", json!({})),
        livestream(
            "news",
            json!({
                "publishKeySecretRef": {"name": "news-key", "key": "publish.key_1"},
                "playbackName": "evening-news-2",
                "enabled": false,
                "maxViewers": 1,
                "takeoverPolicy": "Reject",
                "description": "The evening news",
                "edgeSelector": {"region": "eu-west", "example.com/tier": "premium"},
            }),
        ),
        // A name that is no DNS label is fine when playbackName is set.
        livestream("News.Evening", json!({"playbackName": "news"})),
    ] {
        assert_eq!(admission_errors(&obj), Vec::<String>::new(), "{obj}");
    }
}

#[test]
fn bad_playback_names_are_rejected_with_a_readable_message() {
    assert_rejected(livestream("news", json!({"playbackName": "Evening_News"})), "playbackName must be a DNS label");
    assert_rejected(livestream("news", json!({"playbackName": "-news"})), "playbackName must be a DNS label");
    assert_rejected(livestream("news", json!({"playbackName": "a".repeat(64)})), "/spec/playbackName");
    assert_rejected(livestream("News.Evening", json!({})), "metadata.name is the playback name");
}

#[test]
fn max_viewers_must_be_positive() {
    assert_rejected(livestream("news", json!({"maxViewers": 0})), "maxViewers must be at least 1");
    assert_rejected(livestream("news", json!({"maxViewers": -4})), "/spec/maxViewers");
}

#[test]
fn secret_references_must_name_a_secret_and_key() {
    assert_rejected(
        livestream("news", json!({"publishKeySecretRef": {"name": ""}})),
        "publishKeySecretRef.name must not be empty",
    );
    assert_rejected(
        livestream("news", json!({"publishKeySecretRef": {"name": "Bad_Name"}})),
        "publishKeySecretRef.name must be a Secret name",
    );
    assert_rejected(
        livestream("news", json!({"publishKeySecretRef": {"name": "k", "key": "a/b"}})),
        "publishKeySecretRef.key must be a Secret data key",
    );
    assert_rejected(
        livestream("news", json!({"publishKeySecretRef": {"key": "publishKey"}})),
        "\"name\" is a required property",
    );
}

#[test]
fn unknown_takeover_policies_and_oversized_fields_are_rejected() {
    assert_rejected(livestream("news", json!({"takeoverPolicy": "Steal"})), "/spec/takeoverPolicy");
    assert_rejected(livestream("news", json!({"description": "x".repeat(1025)})), "/spec/description");
    assert_rejected(
        livestream("news", json!({"edgeSelector": {"region": "not a label value"}})),
        "/spec/edgeSelector/region",
    );
    let many: serde_json::Map<String, Value> = (0..33).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert_rejected(livestream("news", json!({"edgeSelector": many})), "/spec/edgeSelector");
}

#[test]
fn every_field_is_described() {
    fn walk(path: &str, node: &Value, missing: &mut Vec<String>) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                let p = format!("{path}.{name}");
                if child.get("description").and_then(Value::as_str).is_none_or(str::is_empty)
                    && !["apiVersion", "kind", "metadata"].contains(&name.as_str())
                {
                    missing.push(p.clone());
                }
                walk(&p, child, missing);
            }
        }
        if let Some(items) = node.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    walk("", &schema(), &mut missing);
    assert!(missing.is_empty(), "fields without a description (kubectl explain shows nothing): {missing:?}");
}

#[test]
fn printer_columns_and_status_subresource() {
    let crd: Value = serde_yaml::from_str(&crd_yaml().expect("renders")).expect("YAML");
    let version = &crd["spec"]["versions"][0];
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        ["Phase", "Playback", "Publisher", "Viewers", "Age", "Protocol", "Resolution", "FPS", "Kbps", "Healthy"]
    );
    // The protocol and media columns only in `kubectl get lst -o wide`: the default stays narrow.
    let wide: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter(|c| c["priority"] == 1)
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(wide, ["Protocol", "Resolution", "FPS", "Kbps", "Healthy"]);
    assert!(version["subresources"]["status"].is_object());
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["lst"]));
    let conditions = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
}

#[test]
fn the_shipped_examples_pass_admission() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = match serde::Deserialize::deserialize(doc) {
                Ok(v) => v,
                Err(e) => panic!("{}: {e}", path.display()),
            };
            if value["kind"] == "LiveStream" {
                assert_eq!(admission_errors(&value), Vec::<String>::new(), "{}", path.display());
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no LiveStream found in {}", dir.display());
}
