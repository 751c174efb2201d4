//! Each function's README has one environment table (`## Environment`), and it lists exactly the
//! `TAPLINE_*` / `CLEVERTAP_*` variables the function's code reads: a variable added to the code
//! and not to the README fails here, and so does a README row for a variable nothing reads.
//!
//! What a function reads is found in its sources, not in a list kept by hand: every variable name
//! in the non-test code of its own folders (`functions/<job>/src`, `shared/src/<job>/`) and of the
//! shared readers it calls (each found by its definition, wherever it lives), either as a string
//! literal or through an `ENV_*`-style `&str` constant declared anywhere in the workspace.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One deployable unit and where its configuration is read.
struct Function {
    /// The README holding its one environment table.
    readme: &'static str,
    /// Its own code: every listed folder or file that exists is read (at least one must).
    own: &'static [&'static str],
    /// The shared readers it calls, each named by a definition that occurs in exactly one file
    /// (why, needle): that file's names count as read.
    readers: &'static [(&'static str, &'static str)],
}

const WAREHOUSE_URL: (&str, &str) = (
    "the warehouse URL and its password (TAPLINE_WAREHOUSE, …_PASSWORD, …_SECRET_ARN)",
    "fn warehouse_url_from(",
);
const LOGS_AND_LISTENER: (&str, &str) = (
    "JSON logs; Cloud Run's port and listening host",
    "fn init_json_logs(",
);
const COLUMN_TYPES: (&str, &str) = (
    "column types pinned for the typed views (TAPLINE_COLUMN_TYPES)",
    "pub struct ColumnTypes {",
);
const HTTP_LIMITS: (&str, &str) = (
    "the HTTP server's limits (Cloud Run builds)",
    "pub struct ServerLimits",
);

const FUNCTIONS: &[Function] = &[
    Function {
        readme: "functions/export-loader/README.md",
        own: &["functions/export-loader/src", "shared/src/export_loader"],
        readers: &[
            (
                "LoadConfig: time zone, reject ratio, per-object limits",
                "pub struct LoadConfig",
            ),
            WAREHOUSE_URL,
            COLUMN_TYPES,
            LOGS_AND_LISTENER,
            HTTP_LIMITS,
        ],
    },
    Function {
        readme: "functions/api-puller/README.md",
        own: &[
            "functions/api-puller/src",
            "shared/src/api_puller",
            "shared/src/pull",
        ],
        readers: &[
            (
                "ApiConfig: the CleverTap account and client",
                "pub struct ApiConfig",
            ),
            WAREHOUSE_URL,
            COLUMN_TYPES,
            LOGS_AND_LISTENER,
            HTTP_LIMITS,
        ],
    },
    Function {
        readme: "functions/webhook-relay/README.md",
        own: &["functions/webhook-relay/src", "shared/src/webhook_relay"],
        readers: &[WAREHOUSE_URL, LOGS_AND_LISTENER, HTTP_LIMITS],
    },
    Function {
        readme: "functions/tapline/README.md",
        own: &["functions/tapline/src"],
        readers: &[
            (
                "LoadConfig's variables, as the flags' defaults",
                "pub struct LoadConfig",
            ),
            ("ApiConfig: `tapline pull`", "pub struct ApiConfig"),
            (
                "where `tapline alerts` posts breaches",
                "fn alert_notifier_from_env(",
            ),
            ("the warehouse password", "fn with_configured_password("),
            (
                "the relay configuration (a warehouse destination's URL)",
                "pub struct RelayConfig",
            ),
            HTTP_LIMITS,
        ],
    },
];

fn is_ours(name: &str) -> bool {
    (name.starts_with("TAPLINE_") || name.starts_with("CLEVERTAP_"))
        && name.len() > "TAPLINE_".len()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its unit tests (from the first `#[cfg(test)]` line on) and
/// without comment lines: names in tests and prose are not reads.
fn production_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .take_while(|line| line.trim() != "#[cfg(test)]")
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every string literal of `code` that is one of our variable names.
fn literal_names(code: &str) -> BTreeSet<String> {
    code.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| is_ours(s))
        .map(str::to_string)
        .collect()
}

/// `const NAME: &str = "VALUE";` declarations: identifier → the values it has anywhere.
fn str_constants(files: &[(PathBuf, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut consts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, code) in files {
        for line in code.lines() {
            let Some((before, after)) = line.split_once(": &str = \"") else {
                continue;
            };
            let Some(ident) = before
                .trim()
                .strip_prefix("pub ")
                .unwrap_or(before.trim())
                .strip_prefix("const ")
            else {
                continue;
            };
            let Some((value, _)) = after.split_once('"') else {
                continue;
            };
            consts
                .entry(ident.trim().to_string())
                .or_default()
                .insert(value.to_string());
        }
    }
    consts
}

/// The variables one file reads: literals, and constants it names.
fn names_read(code: &str, consts: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    let mut names = literal_names(code);
    for token in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if let Some(values) = consts.get(token) {
            names.extend(values.iter().filter(|v| is_ours(v)).cloned());
        }
    }
    names
}

struct Workspace {
    files: Vec<(PathBuf, String)>,
    consts: BTreeMap<String, BTreeSet<String>>,
}

impl Workspace {
    fn load() -> Self {
        let root = root();
        let mut paths = Vec::new();
        rust_files(&root.join("shared/src"), &mut paths);
        for entry in std::fs::read_dir(root.join("functions")).unwrap() {
            rust_files(&entry.unwrap().path().join("src"), &mut paths);
        }
        let files: Vec<(PathBuf, String)> = paths
            .into_iter()
            .map(|p| (p.clone(), production_code(&p)))
            .collect();
        let consts = str_constants(&files);
        Workspace { files, consts }
    }

    /// What `function` reads, with the files each name came from.
    fn reads(&self, function: &Function) -> BTreeMap<String, BTreeSet<String>> {
        let root = root();
        let mut sources: BTreeSet<PathBuf> = BTreeSet::new();
        let own: Vec<PathBuf> = function.own.iter().map(|p| root.join(p)).collect();
        assert!(
            own.iter().any(|p| p.exists()),
            "{}: none of its own folders exists ({:?}): update `own` in this test",
            function.readme,
            function.own
        );
        for dir in &own {
            for (path, _) in &self.files {
                if path.starts_with(dir) {
                    sources.insert(path.clone());
                }
            }
        }
        for (why, needle) in function.readers {
            let hits: Vec<&PathBuf> = self
                .files
                .iter()
                .filter(|(_, code)| code.contains(needle))
                .map(|(path, _)| path)
                .collect();
            assert_eq!(
                hits.len(),
                1,
                "{}: the reader of {why} (`{needle}`) must be defined in exactly one file, found \
                 in {hits:?}: update `readers` in this test",
                function.readme
            );
            sources.insert(hits[0].clone());
        }
        let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (path, code) in &self.files {
            if sources.contains(path) {
                let rel = path.strip_prefix(&root).unwrap().display().to_string();
                for name in names_read(code, &self.consts) {
                    names.entry(name).or_default().insert(rel.clone());
                }
            }
        }
        names
    }
}

/// The variable names in the first column of the table under `## Environment`, one a row.
fn readme_table(readme: &str) -> Result<Vec<String>, String> {
    let text =
        std::fs::read_to_string(root().join(readme)).map_err(|e| format!("{readme}: {e}"))?;
    let mut lines = text.lines().skip_while(|l| l.trim() != "## Environment");
    if lines.next().is_none() {
        return Err(format!("{readme}: no `## Environment` section"));
    }
    let rows: Vec<&str> = lines
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .collect();
    if rows.is_empty() {
        return Err(format!("{readme}: no table under `## Environment`"));
    }
    Ok(rows
        .iter()
        .filter_map(|row| {
            let first = row.trim_start_matches('|').split('|').next().unwrap();
            let names: Vec<&str> = first.split('`').skip(1).step_by(2).collect();
            assert!(
                names.len() <= 1,
                "{readme}: one variable a row, not {names:?} in `{row}`"
            );
            names.first().filter(|n| is_ours(n)).map(|n| n.to_string())
        })
        .collect())
}

#[test]
fn each_function_readme_lists_exactly_the_variables_its_code_reads() {
    let workspace = Workspace::load();
    let mut failures = Vec::new();
    for function in FUNCTIONS {
        let read = workspace.reads(function);
        let rows = readme_table(function.readme).unwrap_or_else(|e| {
            failures.push(e);
            Vec::new()
        });
        let listed: BTreeSet<String> = rows.iter().cloned().collect();
        if listed.len() != rows.len() {
            failures.push(format!(
                "{}: a variable has two rows: {rows:?}",
                function.readme
            ));
        }
        for (name, files) in &read {
            if !listed.contains(name) {
                failures.push(format!(
                    "{}: `{name}` is read (in {files:?}) but not in the table",
                    function.readme
                ));
            }
        }
        for name in listed.iter().filter(|n| !read.contains_key(*n)) {
            failures.push(format!(
                "{}: `{name}` is in the table but nothing it runs reads it",
                function.readme
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_variable_in_the_code_belongs_to_a_function_table() {
    let workspace = Workspace::load();
    let covered: BTreeSet<String> = FUNCTIONS
        .iter()
        .flat_map(|f| workspace.reads(f).into_keys())
        .collect();
    let root = root();
    let mut orphans = Vec::new();
    for (path, code) in &workspace.files {
        for name in names_read(code, &workspace.consts) {
            if !covered.contains(&name) {
                orphans.push(format!(
                    "`{name}` in {}",
                    path.strip_prefix(&root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        orphans.is_empty(),
        "read by code no function's table covers (add its reader to `FUNCTIONS` here, and the \
         variable to that README): {orphans:?}"
    );
}

#[test]
fn the_extraction_sees_literals_and_constants_but_not_tests_or_comments() {
    let consts = str_constants(&[(
        PathBuf::from("x.rs"),
        "pub const ENV_A: &str = \"TAPLINE_A\";\nconst ENV_P: &str = \"PORT\";".to_string(),
    )]);
    let code = "let a = var(ENV_A);\nlet b = var(\"CLEVERTAP_B\");\nlet c = \"TAPLINE_ a\";";
    assert_eq!(
        names_read(code, &consts),
        BTreeSet::from(["TAPLINE_A".to_string(), "CLEVERTAP_B".to_string()])
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.rs");
    std::fs::write(
        &file,
        "// reads \"TAPLINE_COMMENT\"\nlet x = \"TAPLINE_CODE\";\n#[cfg(test)]\nmod tests { \"TAPLINE_TEST\" }\n",
    )
    .unwrap();
    assert_eq!(
        literal_names(&production_code(&file)),
        BTreeSet::from(["TAPLINE_CODE".to_string()])
    );
}
