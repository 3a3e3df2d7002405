//! docs/edge.md's command-line table says what `streamfleet-edge --help` says: every flag, with
//! its environment variable and its default (the docs are the only place many operators read
//! them, and a flag added without its row went unnoticed before).

use std::{collections::BTreeMap, process::Command};

/// (env var, default) per flag, from `--help`.
fn from_help() -> BTreeMap<String, (Option<String>, Option<String>)> {
    let out = Command::new(env!("CARGO_BIN_EXE_streamfleet-edge")).arg("--help").output().expect("run --help");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let t = line.trim_start();
        if line.starts_with("      --") || line.starts_with("  -") {
            let flag = t.trim_start_matches("-h, ").trim_start_matches("-V, ");
            let name = flag.split([' ', ',']).next().unwrap_or_default().to_string();
            flags.insert(name.clone(), (None, None));
            current = Some(name);
        } else if let Some(name) = &current {
            let entry = flags.get_mut(name).expect("current flag");
            if let Some(env) = t.strip_prefix("[env: ") {
                entry.0 = env.split('=').next().map(str::to_string);
            } else if let Some(default) = t.strip_prefix("[default: ") {
                entry.1 = default.strip_suffix(']').map(str::to_string);
            }
        }
    }
    flags.remove("--help");
    flags.remove("--version");
    flags
}

/// The table's rows: flag → (env cell, default cell).
fn from_docs() -> BTreeMap<String, (String, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/edge.md")).expect("docs/edge.md");
    let start = doc.find("## Command line").expect("a Command line section");
    let end = doc[start..].find("\n## ").map_or(doc.len(), |e| start + e);
    let mut rows = BTreeMap::new();
    for line in doc[start..end].lines().filter(|l| l.starts_with("| `--")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let flag = cells[0].trim_start_matches("| `").split(['`', ' ']).next().unwrap_or_default().to_string();
        rows.insert(flag, (cells.get(1).unwrap_or(&"").to_string(), cells.get(2).unwrap_or(&"").to_string()));
    }
    rows
}

#[test]
fn every_flag_is_in_the_docs_with_its_env_var_and_default() {
    let help = from_help();
    let docs = from_docs();
    assert!(help.len() > 40, "parsed only {} flags from --help", help.len());
    let mut wrong = Vec::new();
    for (flag, (env, default)) in &help {
        let Some((env_cell, default_cell)) = docs.get(flag) else {
            wrong.push(format!("{flag}: no row in docs/edge.md's command-line table"));
            continue;
        };
        if let Some(env) = env
            && !env_cell.contains(&format!("`{env}`"))
        {
            wrong.push(format!("{flag}: env {env} not in {env_cell:?}"));
        }
        if let Some(default) = default {
            let shown = default.trim_matches('"');
            if !default_cell.contains(&format!("`{default}`")) && !default_cell.contains(&format!("`{shown}`")) {
                wrong.push(format!("{flag}: default {default} not in {default_cell:?}"));
            }
        }
    }
    for flag in docs.keys().filter(|f| !help.contains_key(*f)) {
        wrong.push(format!("{flag}: documented but not in --help"));
    }
    assert!(wrong.is_empty(), "docs/edge.md and --help disagree:\n{}", wrong.join("\n"));
}
