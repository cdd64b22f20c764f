//! The architecture's invariants, checked by a test rather than kept by convention (the idea of
//! rust-analyzer's tidy tests).
//!
//! Every crate under `crates/` declares its role in its manifest:
//!
//! ```toml
//! [package.metadata.brasa]
//! role = "core"            # core | engine | shell | binary | tool
//! shell_paths = ["src/io"] # engine only: the std-thread shell inside the crate
//! clock_paths = []         # files allowed to read a clock, each with a reason in `clock_reason`
//! ```
//!
//! and [`check_workspace`] reports every place that breaks a rule:
//!
//! * a **core** or **engine** crate depends (directly or not) on tokio, a socket crate or a
//!   brasa shell crate;
//! * a core module (an engine's files outside `shell_paths`) reads a clock outside
//!   `#[cfg(test)]` code;
//! * an `unsafe` block, impl or fn has no `SAFETY:` comment (or `# Safety` doc section) right
//!   above it;
//! * a crate with no `unsafe` code lacks `#![forbid(unsafe_code)]`;
//! * a script under `scripts/` or `.ci/` stops or kills processes by name (tests never stop or
//!   kill what they did not start).
#![forbid(unsafe_code)]

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// The rule a [`Violation`] breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The crate's manifest has no valid `[package.metadata.brasa] role`.
    Role,
    /// A core or engine crate depends on tokio, a socket crate or a shell crate.
    CoreDependency,
    /// A core module reads a clock.
    ClockInCore,
    /// An `unsafe` item without a `SAFETY:` justification.
    UnsafeWithoutSafety,
    /// A crate without unsafe code that does not forbid it.
    MissingForbidUnsafe,
    /// A script stops or kills processes by name.
    ScriptKillsByName,
}

/// One place that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The file (or manifest) concerned, relative to the workspace root.
    pub path: PathBuf,
    /// 1-based line, where one applies.
    pub line: Option<usize>,
    /// The rule broken.
    pub rule: Rule,
    /// What is wrong, for the reader of the test output.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: ", self.path.display())?,
            None => write!(f, "{}: ", self.path.display())?,
        }
        write!(f, "[{:?}] {}", self.rule, self.message)
    }
}

/// A crate's role in the architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sans-IO: no sockets, no clock, no threads, no tokio.
    Core,
    /// A core plus a std-thread shell confined to `shell_paths` (no tokio anywhere).
    Engine,
    /// A tokio shell around a core.
    Shell,
    /// The `brasa` binary.
    Binary,
    /// Development tooling.
    Tool,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    package: Package,
}

#[derive(Debug, Deserialize)]
struct Package {
    name: String,
    #[serde(default)]
    metadata: Option<Metadata>,
}

#[derive(Debug, Deserialize)]
struct Metadata {
    brasa: Option<BrasaMetadata>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BrasaMetadata {
    role: Role,
    #[serde(default)]
    shell_paths: Vec<String>,
    #[serde(default)]
    clock_paths: Vec<String>,
    #[serde(default)]
    clock_reason: Option<String>,
}

/// A crate of the workspace as the checks see it.
#[derive(Debug)]
pub struct CrateInfo {
    /// Package name.
    pub name: String,
    /// Directory, relative to the workspace root.
    pub dir: PathBuf,
    /// Declared role.
    pub role: Role,
    shell_paths: Vec<String>,
    clock_paths: Vec<String>,
}

/// Packages a core crate must never reach through its normal dependencies.
pub const FORBIDDEN_IN_CORES: &[&str] = &[
    "tokio",
    "tokio-stream",
    "tokio-util",
    "mio",
    "socket2",
    "tonic",
    "hyper",
    "h2",
    "axum",
    "brasa-udp",
];

/// Answers "which packages does this crate reach through its normal dependencies?".
pub trait DependencySource {
    /// Names of every package in the normal dependency tree of `package` (itself included or
    /// not), or a description of why they could not be listed.
    fn normal_dependencies(&self, package: &str) -> Result<Vec<String>, String>;
}

/// The real source: `cargo tree -p PACKAGE -e normal`, which resolves features for that
/// package alone (so a feature another crate enables on a shared dependency is not charged to
/// the core).
pub struct CargoTree {
    /// The workspace root.
    pub root: PathBuf,
}

impl DependencySource for CargoTree {
    fn normal_dependencies(&self, package: &str) -> Result<Vec<String>, String> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let output = std::process::Command::new(cargo)
            .current_dir(&self.root)
            .args(["tree", "--offline", "-e", "normal", "--prefix", "none"])
            .args(["--format", "{p}", "-p", package])
            .output()
            .map_err(|err| format!("cannot run cargo tree: {err}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_string)
            .collect())
    }
}

/// Every crate under `<root>/crates` (fuzz crates, which are outside the workspace, excluded),
/// with the violations of manifests that declare no role.
pub fn crates(root: &Path) -> (Vec<CrateInfo>, Vec<Violation>) {
    let mut found = Vec::new();
    let mut violations = Vec::new();
    let Ok(entries) = std::fs::read_dir(root.join("crates")) else {
        return (found, violations);
    };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
    dirs.sort();
    for dir in dirs {
        let manifest_path = dir.join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest_path) else {
            continue;
        };
        let relative = relative(root, &manifest_path);
        let manifest: Manifest = match toml::from_str(&text) {
            Ok(manifest) => manifest,
            Err(err) => {
                violations.push(Violation {
                    path: relative,
                    line: None,
                    rule: Rule::Role,
                    message: format!("manifest does not parse: {err}"),
                });
                continue;
            }
        };
        let Some(meta) = manifest.package.metadata.and_then(|meta| meta.brasa) else {
            violations.push(Violation {
                path: relative,
                line: None,
                rule: Rule::Role,
                message: "no [package.metadata.brasa] role (core | engine | shell | binary | tool)"
                    .to_string(),
            });
            continue;
        };
        if !meta.clock_paths.is_empty() && meta.clock_reason.is_none() {
            violations.push(Violation {
                path: relative.clone(),
                line: None,
                rule: Rule::Role,
                message: "clock_paths needs a clock_reason".to_string(),
            });
        }
        if meta.role != Role::Engine && !meta.shell_paths.is_empty() {
            violations.push(Violation {
                path: relative,
                line: None,
                rule: Rule::Role,
                message: "shell_paths only make sense for an engine".to_string(),
            });
        }
        found.push(CrateInfo {
            name: manifest.package.name,
            dir: relative_dir(root, &dir),
            role: meta.role,
            shell_paths: meta.shell_paths,
            clock_paths: meta.clock_paths,
        });
    }
    (found, violations)
}

/// Runs every check over the workspace at `root`.
pub fn check_workspace(root: &Path, dependencies: &dyn DependencySource) -> Vec<Violation> {
    let (crates, mut violations) = crates(root);
    for krate in &crates {
        if matches!(krate.role, Role::Core | Role::Engine) {
            check_dependencies(krate, dependencies, &mut violations);
            check_clocks(root, krate, &mut violations);
        }
        check_unsafe(root, krate, &mut violations);
    }
    check_scripts(root, &mut violations);
    violations
}

fn check_dependencies(
    krate: &CrateInfo,
    dependencies: &dyn DependencySource,
    violations: &mut Vec<Violation>,
) {
    let manifest = krate.dir.join("Cargo.toml");
    match dependencies.normal_dependencies(&krate.name) {
        Ok(names) => {
            let mut bad: Vec<&str> = names
                .iter()
                .map(String::as_str)
                .filter(|name| {
                    FORBIDDEN_IN_CORES.contains(name)
                        || (name.starts_with("brasa-") && name.ends_with("-net"))
                })
                .collect();
            bad.sort_unstable();
            bad.dedup();
            if !bad.is_empty() {
                violations.push(Violation {
                    path: manifest,
                    line: None,
                    rule: Rule::CoreDependency,
                    message: format!(
                        "{} is a {:?} crate but depends on {}",
                        krate.name,
                        krate.role,
                        bad.join(", ")
                    ),
                });
            }
        }
        Err(err) => violations.push(Violation {
            path: manifest,
            line: None,
            rule: Rule::CoreDependency,
            message: format!("cannot list the dependencies of {}: {err}", krate.name),
        }),
    }
}

/// Calls that read a clock.
const CLOCK_READS: &[&str] = &[
    "Instant::now(",
    "SystemTime::now(",
    "Utc::now(",
    "Local::now(",
    "clock_gettime(",
    "gettimeofday(",
];

fn check_clocks(root: &Path, krate: &CrateInfo, violations: &mut Vec<Violation>) {
    for file in rust_files(&root.join(&krate.dir).join("src")) {
        let relative_to_crate = relative(&root.join(&krate.dir), &file);
        let exempt = krate
            .shell_paths
            .iter()
            .chain(&krate.clock_paths)
            .any(|path| relative_to_crate.starts_with(path));
        if exempt {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (index, line) in non_test_lines(&text) {
            let code = strip_comment(line);
            if let Some(call) = CLOCK_READS.iter().find(|call| code.contains(*call)) {
                violations.push(Violation {
                    path: relative(root, &file),
                    line: Some(index + 1),
                    rule: Rule::ClockInCore,
                    message: format!(
                        "{} is a {:?} crate: take `now` as an argument instead of `{call}…)`",
                        krate.name, krate.role
                    ),
                });
            }
        }
    }
}

fn check_unsafe(root: &Path, krate: &CrateInfo, violations: &mut Vec<Violation>) {
    let crate_dir = root.join(&krate.dir);
    let mut crate_has_unsafe = false;
    for sub in ["src", "tests", "benches", "examples"] {
        for file in rust_files(&crate_dir.join(sub)) {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().collect();
            // Brace depth at which the innermost `unsafe impl` block opened: its methods
            // implement the unsafe trait's contract, which the impl's own SAFETY comment argues.
            let mut depth: i64 = 0;
            let mut unsafe_impl_depth: Option<i64> = None;
            for (index, line) in lines.iter().enumerate() {
                let code = strip_strings(strip_comment(line));
                let is_unsafe = has_unsafe_keyword(&code);
                if is_unsafe && sub == "src" {
                    crate_has_unsafe = true;
                }
                let trait_method = unsafe_impl_depth.is_some_and(|opened| depth > opened)
                    && code.trim_start().starts_with("unsafe fn");
                if is_unsafe && !trait_method && !justified(&lines, index) {
                    violations.push(Violation {
                        path: relative(root, &file),
                        line: Some(index + 1),
                        rule: Rule::UnsafeWithoutSafety,
                        message: "unsafe without a `// SAFETY:` comment saying why it is sound"
                            .to_string(),
                    });
                }
                if code.contains("unsafe impl") && unsafe_impl_depth.is_none() {
                    unsafe_impl_depth = Some(depth);
                }
                for ch in code.chars() {
                    match ch {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if unsafe_impl_depth.is_some_and(|opened| depth <= opened)
                    && !code.contains("unsafe impl")
                {
                    unsafe_impl_depth = None;
                }
            }
        }
    }
    if !crate_has_unsafe {
        let roots = ["src/lib.rs", "src/main.rs"];
        let forbids = roots.iter().any(|path| {
            std::fs::read_to_string(crate_dir.join(path))
                .is_ok_and(|text| text.contains("#![forbid(unsafe_code)]"))
        });
        if !forbids {
            violations.push(Violation {
                path: krate.dir.join("src"),
                line: None,
                rule: Rule::MissingForbidUnsafe,
                message: format!(
                    "{} has no unsafe code: say so with #![forbid(unsafe_code)]",
                    krate.name
                ),
            });
        }
    }
}

/// Process-killing commands that a test script must never use: they hit processes the script
/// did not start. (`pkill -P PID`, which ends the children of a process the script started,
/// selects by parent, not by name, and is allowed.)
const KILL_BY_NAME: &[&str] = &[
    "pkill",
    "killall",
    "systemctl stop",
    "service freeradius stop",
];

/// True when `word` on this line kills by name (see [`KILL_BY_NAME`]).
fn kills_by_name(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(at, _)| {
        let rest = code[at + word.len()..].trim_start();
        !(word == "pkill" && rest.starts_with("-P "))
    })
}

fn check_scripts(root: &Path, violations: &mut Vec<Violation>) {
    for dir in ["scripts", ".ci"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
        files.sort();
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            for (index, line) in text.lines().enumerate() {
                let code = line.split('#').next().unwrap_or("");
                if let Some(word) = KILL_BY_NAME.iter().find(|word| kills_by_name(code, word)) {
                    violations.push(Violation {
                        path: relative(root, &file),
                        line: Some(index + 1),
                        rule: Rule::ScriptKillsByName,
                        message: format!(
                            "`{word}` stops processes this script did not start; \
                             stop only what you started, by its PID"
                        ),
                    });
                }
            }
        }
    }
}

/// True when the `unsafe` on `lines[index]` has a `SAFETY:` comment (or, for an `unsafe fn`, a
/// `# Safety` doc section) on its own line or among the lines of the statement above it.
fn justified(lines: &[&str], index: usize) -> bool {
    let own = lines[index];
    if own.contains("SAFETY:") {
        return true;
    }
    let is_fn = own.contains("unsafe fn") || own.contains("unsafe extern");
    for line in lines[..index].iter().rev().take(12) {
        let trimmed = line.trim();
        if trimmed.contains("SAFETY:") || (is_fn && trimmed.contains("# Safety")) {
            return true;
        }
        let is_comment = trimmed.starts_with("//");
        let is_attribute = trimmed.starts_with("#[");
        if trimmed.is_empty()
            || (!is_comment && !is_attribute && (trimmed.ends_with(';') || trimmed.ends_with('}')))
        {
            return false;
        }
    }
    false
}

/// True when the code holds the `unsafe` keyword (not `unsafe_code` or a word containing it).
fn has_unsafe_keyword(code: &str) -> bool {
    let code = strip_strings(code);
    let bytes = code.as_bytes();
    let mut start = 0;
    while let Some(found) = code[start..].find("unsafe") {
        let at = start + found;
        let before_ok = at == 0 || !is_ident_byte(bytes[at - 1]);
        let after = at + "unsafe".len();
        let after_ok = after >= bytes.len() || !is_ident_byte(bytes[after]);
        if before_ok && after_ok {
            return true;
        }
        start = after;
    }
    false
}

fn is_ident_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The line without a trailing `//` comment (a `//` inside a string literal is rare enough in
/// these checks to accept the occasional false cut).
fn strip_comment(line: &str) -> &str {
    match line.find("//") {
        Some(at) => &line[..at],
        None => line,
    }
}

/// The line with the contents of double-quoted string literals removed.
fn strip_strings(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_string = false;
    let mut escaped = false;
    for ch in line.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                in_string = false;
                out.push(ch);
            }
        } else {
            if ch == '"' {
                in_string = true;
            }
            out.push(ch);
        }
    }
    out
}

/// The lines of a source file outside `#[cfg(test)]` items, with their 0-based index. An item
/// under `#[cfg(test)]` is skipped to its closing brace (or its `;` for a one-line item).
fn non_test_lines(text: &str) -> Vec<(usize, &str)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut index = 0;
    while index < lines.len() {
        let trimmed = lines[index].trim();
        if trimmed.starts_with("#[cfg(test)]") || trimmed.starts_with("#[cfg(all(test") {
            index = end_of_item(&lines, index + 1);
            continue;
        }
        out.push((index, lines[index]));
        index += 1;
    }
    out
}

/// The index just past the item that starts at or after `start`.
fn end_of_item(lines: &[&str], start: usize) -> usize {
    let mut depth: i64 = 0;
    let mut opened = false;
    for (index, line) in lines.iter().enumerate().skip(start) {
        let code = strip_strings(strip_comment(line));
        for ch in code.chars() {
            match ch {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        if opened && depth <= 0 {
            return index + 1;
        }
        if !opened && code.trim_end().ends_with(';') {
            return index + 1;
        }
    }
    lines.len()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn relative(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

fn relative_dir(root: &Path, dir: &Path) -> PathBuf {
    relative(root, dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct FakeTree(HashMap<&'static str, Vec<&'static str>>);

    impl DependencySource for FakeTree {
        fn normal_dependencies(&self, package: &str) -> Result<Vec<String>, String> {
            Ok(self
                .0
                .get(package)
                .map(|names| names.iter().map(|name| name.to_string()).collect())
                .unwrap_or_default())
        }
    }

    fn write(root: &Path, path: &str, text: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// The crate `crates/NAME` with `meta` in its `[package.metadata.brasa]` and `lib` as its
    /// `src/lib.rs`.
    fn krate(root: &Path, name: &str, meta: &str, lib: &str) {
        write(
            root,
            &format!("crates/{name}/Cargo.toml"),
            &format!("[package]\nname = \"{name}\"\n\n[package.metadata.brasa]\n{meta}\n"),
        );
        write(root, &format!("crates/{name}/src/lib.rs"), lib);
    }

    const CLEAN_LIB: &str = "#![forbid(unsafe_code)]\npub fn f(now: u64) -> u64 { now }\n";

    fn rules(violations: &[Violation]) -> Vec<Rule> {
        violations.iter().map(|violation| violation.rule).collect()
    }

    #[test]
    fn a_clean_workspace_passes() {
        let dir = tempfile::tempdir().unwrap();
        krate(dir.path(), "a", "role = \"core\"", CLEAN_LIB);
        write(
            dir.path(),
            "scripts/test",
            "#!/bin/sh\n# no pkill here\ncargo test\n",
        );
        let violations = check_workspace(dir.path(), &FakeTree(HashMap::new()));
        assert!(violations.is_empty(), "{violations:?}");
    }

    #[test]
    fn a_core_reaching_tokio_or_a_shell_crate_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        krate(dir.path(), "a", "role = \"core\"", CLEAN_LIB);
        krate(dir.path(), "s", "role = \"shell\"", CLEAN_LIB);
        let tree = FakeTree(HashMap::from([
            ("a", vec!["a", "prost", "tokio", "brasa-x-net"]),
            ("s", vec!["s", "tokio"]),
        ]));
        let violations = check_workspace(dir.path(), &tree);
        assert_eq!(rules(&violations), vec![Rule::CoreDependency]);
        assert!(violations[0].message.contains("brasa-x-net, tokio"));
    }

    #[test]
    fn a_clock_read_in_a_core_module_is_reported_but_not_in_tests_or_shell_paths() {
        let dir = tempfile::tempdir().unwrap();
        let meta = "role = \"engine\"\nshell_paths = [\"src/io\"]";
        krate(
            dir.path(),
            "e",
            meta,
            "#![forbid(unsafe_code)]\npub fn f() { let _ = std::time::Instant::now(); }\n\
             #[cfg(test)]\nmod tests {\n    fn g() { let _ = std::time::Instant::now(); }\n}\n",
        );
        write(
            dir.path(),
            "crates/e/src/io/mod.rs",
            "pub fn h() { let _ = std::time::SystemTime::now(); }\n",
        );
        let violations = check_workspace(dir.path(), &FakeTree(HashMap::new()));
        assert_eq!(rules(&violations), vec![Rule::ClockInCore]);
        assert_eq!(violations[0].line, Some(2));
    }

    #[test]
    fn unsafe_needs_a_safety_comment_and_safe_crates_must_forbid_it() {
        let dir = tempfile::tempdir().unwrap();
        krate(dir.path(), "u", "role = \"shell\"", "pub fn f(p: *const u8) -> u8 {\n    // SAFETY: the caller passes a valid pointer.\n    \
             let a = unsafe { *p };\n    let b = unsafe { *p };\n    a + b\n}\n");
        krate(
            dir.path(),
            "v",
            "role = \"shell\"",
            "// not unsafe_code, and \"unsafe\" in a string is no keyword\npub fn g() {}\n",
        );
        let violations = check_workspace(dir.path(), &FakeTree(HashMap::new()));
        assert_eq!(
            rules(&violations),
            vec![Rule::UnsafeWithoutSafety, Rule::MissingForbidUnsafe]
        );
        assert_eq!(violations[0].line, Some(4));
    }

    #[test]
    fn methods_of_an_unsafe_impl_share_its_safety_comment() {
        let dir = tempfile::tempdir().unwrap();
        krate(dir.path(), "g", "role = \"tool\"", "struct A;\n// SAFETY: every call is passed on to System with the caller's contract.\n\
             unsafe impl std::alloc::GlobalAlloc for A {\n    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {\n        \
             // SAFETY: as above.\n        unsafe { std::alloc::System.alloc(l) }\n    }\n    \
             unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {\n        \
             unsafe { std::alloc::System.dealloc(p, l) }\n    }\n}\nunsafe fn loose() {}\n");
        let violations = check_workspace(dir.path(), &FakeTree(HashMap::new()));
        let lines: Vec<Option<usize>> = violations.iter().map(|v| v.line).collect();
        // The unjustified block inside dealloc, and the free unsafe fn; not the trait methods.
        assert_eq!(lines, vec![Some(9), Some(12)], "{violations:?}");
    }

    #[test]
    fn a_crate_without_a_role_and_a_script_that_kills_by_name_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "crates/n/Cargo.toml",
            "[package]\nname = \"n\"\n",
        );
        write(dir.path(), "crates/n/src/lib.rs", CLEAN_LIB);
        write(
            dir.path(),
            "scripts/setup",
            "#!/bin/sh\npkill -x freeradius || true\n# a comment may say pkill\npkill -P \"$pid\"\n",
        );
        let violations = check_workspace(dir.path(), &FakeTree(HashMap::new()));
        assert_eq!(
            rules(&violations),
            vec![Rule::Role, Rule::ScriptKillsByName]
        );
        assert_eq!(violations[1].line, Some(2));
    }

    #[test]
    fn test_items_are_skipped_to_their_closing_brace() {
        let text = "a\n#[cfg(test)]\nmod t {\n  fn x() { y() }\n}\nb\n#[cfg(test)]\nuse z;\nc\n";
        let kept: Vec<&str> = non_test_lines(text).into_iter().map(|(_, l)| l).collect();
        assert_eq!(kept, vec!["a", "b", "c"]);
    }
}
