//! The flag tables of a Markdown document checked against a binary's clap `Command`, so the docs
//! cannot drift from `--help`: every table with a `Flag` column is read, each `--flag` in it must
//! exist (aliases included), its `Env` and `Default` cells (where the table has them) must be
//! what clap has, every row must have as many cells as the header, and the table under the
//! heading that claims to list everything must list every flag `--help` shows.

use clap::Command;

/// One row of a flag table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagRow {
    pub flag: String,
    /// Other `--names` in the flag cell, e.g. "(alias `--write-batch`)".
    pub aliases: Vec<String>,
    pub env: Option<String>,
    pub default: Option<String>,
    /// 1-based line number in the document.
    pub line: usize,
}

/// A Markdown table with a `Flag` column, and the heading it sits under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagTable {
    pub heading: String,
    pub has_env: bool,
    pub has_default: bool,
    pub rows: Vec<FlagRow>,
    /// Rows whose cell count differs from the header's: (line, cells, header cells).
    pub malformed: Vec<(usize, usize, usize)>,
}

/// Cells of a table line, split on `|` outside backticks.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut in_code = false;
    for c in inner.chars() {
        match c {
            '|' if !in_code => out.push(std::mem::take(&mut cell)),
            _ => {
                if c == '`' {
                    in_code = !in_code;
                }
                cell.push(c);
            }
        }
    }
    out.push(cell);
    out.into_iter().map(|c| c.trim().to_string()).collect()
}

/// The backticked spans of a cell, in order.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Every table with a `Flag` column.
pub fn flag_tables(markdown: &str) -> Vec<FlagTable> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut tables = Vec::new();
    let mut heading = String::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with('#') {
            heading = line.trim().to_string();
        }
        let is_header = line.trim_start().starts_with('|')
            && lines.get(i + 1).is_some_and(|next| next.trim_start().starts_with("|---"));
        if !is_header {
            i += 1;
            continue;
        }
        let header = cells(line);
        let column = |name: &str| header.iter().position(|h| h == name);
        i += 2;
        let first_row = i;
        while i < lines.len() && lines[i].trim_start().starts_with('|') {
            i += 1;
        }
        let Some(flag_col) = column("Flag") else { continue };
        let (env_col, default_col) = (column("Env"), column("Default"));
        let mut table = FlagTable {
            heading: heading.clone(),
            has_env: env_col.is_some(),
            has_default: default_col.is_some(),
            rows: Vec::new(),
            malformed: Vec::new(),
        };
        for (n, row_line) in lines.iter().enumerate().take(i).skip(first_row) {
            let row = cells(row_line);
            if row.len() != header.len() {
                table.malformed.push((n + 1, row.len(), header.len()));
                continue;
            }
            let names: Vec<&str> = code_spans(&row[flag_col])
                .into_iter()
                .filter_map(|s| s.split_whitespace().next())
                .filter(|s| s.starts_with("--"))
                .collect();
            let Some((flag, aliases)) = names.split_first() else { continue };
            let env = env_col.and_then(|c| code_spans(&row[c]).first().map(|s| s.to_string()));
            let default = default_col.and_then(|c| {
                let cell = row[c].as_str();
                if cell.starts_with('`') {
                    code_spans(cell).first().map(|s| s.to_string())
                } else {
                    Some(cell.to_string()).filter(|s| !s.is_empty())
                }
            });
            table.rows.push(FlagRow {
                flag: flag.to_string(),
                aliases: aliases.iter().map(|s| s.to_string()).collect(),
                env,
                default,
                line: n + 1,
            });
        }
        tables.push(table);
    }
    tables
}

/// What differs between the document's flag tables and `command`; empty when they agree.
/// `complete_heading` is the heading (e.g. `## Command line`) of the table that must list every
/// flag; it must exist.
pub fn check_flag_tables(markdown: &str, command: &Command, complete_heading: &str) -> Vec<String> {
    let mut command = command.clone();
    command.build();
    let args: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| a.get_long().is_some() && !a.is_hide_set())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .collect();
    let tables = flag_tables(markdown);
    let mut problems = Vec::new();
    if !tables.iter().any(|t| t.heading == complete_heading) {
        problems.push(format!("no flag table under {complete_heading:?}"));
    }
    for table in &tables {
        for (line, n, expected) in &table.malformed {
            problems.push(format!("line {line}: {n} cells in a table of {expected} columns ({})", table.heading));
        }
        for row in &table.rows {
            let long = row.flag.trim_start_matches("--");
            let Some(arg) = args.iter().find(|a| a.get_long() == Some(long)) else {
                problems.push(format!("line {}: {} is not a flag of {}", row.line, row.flag, command.get_name()));
                continue;
            };
            let aliases = arg.get_visible_aliases().unwrap_or_default();
            for alias in &row.aliases {
                if !aliases.contains(&alias.trim_start_matches("--")) {
                    problems.push(format!("line {}: {alias} is not an alias of {}", row.line, row.flag));
                }
            }
            if table.has_env {
                let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
                if row.env != env {
                    problems.push(format!("line {}: {} env {:?}, --help says {env:?}", row.line, row.flag, row.env));
                }
            }
            let defaults: Vec<String> =
                arg.get_default_values().iter().map(|d| d.to_string_lossy().into_owned()).collect();
            // An empty default ("" for a list that is empty unless given) is no default: the docs
            // say so in words ("none").
            if table.has_default && !defaults.iter().all(String::is_empty) {
                let default = defaults.join(",");
                if row.default.as_deref() != Some(default.as_str()) {
                    problems.push(format!(
                        "line {}: {} default {:?}, --help says {default:?}",
                        row.line, row.flag, row.default
                    ));
                }
            }
        }
    }
    if let Some(complete) = tables.iter().find(|t| t.heading == complete_heading) {
        for arg in &args {
            let flag = format!("--{}", arg.get_long().unwrap_or_default());
            if !complete.rows.iter().any(|r| r.flag == flag) {
                problems.push(format!("{flag} is in --help but not in the table under {complete_heading:?}"));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn command() -> Command {
        Command::new("x")
            .arg(Arg::new("port").long("port").env("X_PORT").default_value("1935"))
            .arg(Arg::new("window").long("window").visible_alias("batch").env("X_BATCH").default_value("0s"))
            .arg(Arg::new("file").long("file").env("X_FILE").action(ArgAction::Set))
    }

    const GOOD: &str = "\
# Doc

## Limits

| Flag | Default | What |
|---|---|---|
| `--port` | 1935 | the port |

## Command line

| Flag | Env | Default | Meaning |
|---|---|---|---|
| `--port` | `X_PORT` | `1935` | the port |
| `--window` (alias `--batch`) | `X_BATCH` | `0s` | a window |
| `--file FILE` | `X_FILE` | | a file |
";

    #[test]
    fn agreeing_tables_pass() {
        assert_eq!(check_flag_tables(GOOD, &command(), "## Command line"), Vec::<String>::new());
        let tables = flag_tables(GOOD);
        assert_eq!(tables.len(), 2);
        assert_eq!(tables[1].rows[1].aliases, vec!["--batch".to_string()]);
        assert_eq!(tables[1].rows[2].flag, "--file");
    }

    #[test]
    fn each_kind_of_drift_is_reported() {
        let cases = [
            (GOOD.replace("| `--port` | 1935 |", "| `--port` | 1936 |"), "default Some(\"1936\")"),
            (GOOD.replace("`X_BATCH`", "`X_WINDOW`"), "env Some(\"X_WINDOW\")"),
            (GOOD.replace("| `--file FILE` | `X_FILE` | | a file |\n", ""), "--file is in --help but not"),
            (GOOD.replace("`--batch`", "`--batches`"), "--batches is not an alias"),
            (GOOD.replace("| `--port` | 1935 | the port |", "| `--port` | 1935 | x | the port |"), "4 cells"),
            (
                GOOD.replace("## Limits", "## Limits\n\n| Flag | Default |\n|---|---|\n| `--gone` | 1 |"),
                "--gone is not a flag",
            ),
            (GOOD.replace("## Command line", "## Flags"), "no flag table under"),
        ];
        for (doc, expected) in cases {
            let problems = check_flag_tables(&doc, &command(), "## Command line");
            assert!(problems.iter().any(|p| p.contains(expected)), "{expected:?} not in {problems:?}");
        }
    }
}
