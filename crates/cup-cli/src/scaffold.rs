//! `cup controller new`: writes a controller project that builds, embeds its definitions and
//! is served by `cupd` as it is, in Rust (a WASI preview 1 command on the cup SDK), Python
//! or JavaScript (components of the `cup-controller` world), from templates kept as files
//! under `templates/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::Output;

/// The SDK of the checkout this `cup` was built from: the default dependency while it exists.
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../cup-controller-sdk");

/// The version the new project serves.
const VERSION: &str = "v1";

/// The component contract, written into Python and JavaScript projects as it is, so that they
/// build outside this repository and always against the contract this cup speaks.
const CONTRACT: &str = include_str!("../../../wit/controller.wit");

/// The npm lock of the JavaScript example, which pins the whole JavaScript toolchain (every
/// package with its integrity hash); a new project gets it with its own name.
const NPM_LOCK: &str = include_str!("../../../examples/js-redirects/package-lock.json");
/// The package name the lock above carries.
const NPM_LOCK_NAME: &str = "cup-example-js-redirects";

/// The language of the new controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// A Rust crate on the cup SDK, built with cargo for wasm32-wasip1 (a WASI preview 1
    /// command).
    Rust,
    /// A Python component (cup:controller/controller@0.1.0), built with a pinned
    /// componentize-py installed under the project; needs python3 >= 3.10 with venv.
    Python,
    /// A JavaScript component (cup:controller/controller@0.1.0), built with a pinned
    /// componentize-js installed under the project with npm ci; needs node and npm.
    Js,
}

impl Lang {
    fn files(self) -> &'static [(&'static str, Body)] {
        match self {
            Lang::Rust => &RUST,
            Lang::Python => &PYTHON,
            Lang::Js => &JS,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }

    /// What the table output calls it.
    fn describe(self) -> &'static str {
        match self {
            Lang::Rust => "a Rust crate",
            Lang::Python => "a Python component",
            Lang::Js => "a JavaScript component",
        }
    }
}

/// What a file of the new project is made from.
#[derive(Debug, Clone, Copy)]
enum Body {
    /// A template with `{{key}}` placeholders.
    Template(&'static str),
    /// `wit/controller.wit` of this repository, byte for byte.
    Contract,
    /// The JavaScript toolchain's lock, with the project's name.
    NpmLock,
}

/// The files every language shares: what cupd and cup see of a controller.
const DEFINITION: Body =
    Body::Template(include_str!("../templates/controller/definition.json.tmpl"));
const CONTROLLER_CONFIG: Body =
    Body::Template(include_str!("../templates/controller/controller.json.tmpl"));
const HELLO: Body = Body::Template(include_str!("../templates/controller/hello.json.tmpl"));

/// (path in the new project, what it is made from), per language. Rendered in this order.
const RUST: [(&str, Body); 8] = [
    (
        "Cargo.toml",
        Body::Template(include_str!("../templates/controller/Cargo.toml.tmpl")),
    ),
    (
        "src/main.rs",
        Body::Template(include_str!("../templates/controller/main.rs.tmpl")),
    ),
    ("defs/{{plural}}.json", DEFINITION),
    (
        "build.sh",
        Body::Template(include_str!("../templates/controller/build.sh.tmpl")),
    ),
    ("config/controller.json", CONTROLLER_CONFIG),
    ("examples/hello.json", HELLO),
    (
        "README.md",
        Body::Template(include_str!("../templates/controller/README.md.tmpl")),
    ),
    (
        ".gitignore",
        Body::Template(include_str!("../templates/controller/gitignore.tmpl")),
    ),
];

const PYTHON: [(&str, Body); 11] = [
    (
        "src/store.py",
        Body::Template(include_str!("../templates/python/store.py.tmpl")),
    ),
    (
        "src/app.py",
        Body::Template(include_str!("../templates/python/app.py.tmpl")),
    ),
    (
        "tests/test_store.py",
        Body::Template(include_str!("../templates/python/test_store.py.tmpl")),
    ),
    ("wit/controller.wit", Body::Contract),
    (
        "requirements.txt",
        Body::Template(include_str!("../templates/python/requirements.txt.tmpl")),
    ),
    ("defs/{{plural}}.json", DEFINITION),
    (
        "build.sh",
        Body::Template(include_str!("../templates/python/build.sh.tmpl")),
    ),
    ("config/controller.json", CONTROLLER_CONFIG),
    ("examples/hello.json", HELLO),
    (
        "README.md",
        Body::Template(include_str!("../templates/python/README.md.tmpl")),
    ),
    (
        ".gitignore",
        Body::Template(include_str!("../templates/python/gitignore.tmpl")),
    ),
];

const JS: [(&str, Body); 16] = [
    (
        "package.json",
        Body::Template(include_str!("../templates/js/package.json.tmpl")),
    ),
    ("package-lock.json", Body::NpmLock),
    (
        "src/store.js",
        Body::Template(include_str!("../templates/js/store.js.tmpl")),
    ),
    (
        "src/wasi-fs.js",
        Body::Template(include_str!("../templates/js/wasi-fs.js.tmpl")),
    ),
    (
        "src/component.js",
        Body::Template(include_str!("../templates/js/component.js.tmpl")),
    ),
    (
        "test/store.test.js",
        Body::Template(include_str!("../templates/js/store.test.js.tmpl")),
    ),
    (
        "test/node-fs.js",
        Body::Template(include_str!("../templates/js/node-fs.js.tmpl")),
    ),
    (
        "test/component.test.js",
        Body::Template(include_str!("../templates/js/component.test.js.tmpl")),
    ),
    (
        "wit/world.wit",
        Body::Template(include_str!("../templates/js/world.wit.tmpl")),
    ),
    ("wit/controller.wit", Body::Contract),
    ("defs/{{plural}}.json", DEFINITION),
    (
        "build.sh",
        Body::Template(include_str!("../templates/js/build.sh.tmpl")),
    ),
    ("config/controller.json", CONTROLLER_CONFIG),
    ("examples/hello.json", HELLO),
    (
        "README.md",
        Body::Template(include_str!("../templates/js/README.md.tmpl")),
    ),
    (
        ".gitignore",
        Body::Template(include_str!("../templates/js/gitignore.tmpl")),
    ),
];

/// The file made executable.
const SCRIPT: &str = "build.sh";

#[derive(Args)]
pub struct NewArgs {
    /// The project's name, also the package's (NAME.wasm) and the Controller's name:
    /// lowercase letters, digits, '-' and '_', starting with a letter.
    pub name: String,
    /// The language to write the controller in: rust (a crate on the cup SDK, a WASI
    /// preview 1 command), python (a component built with componentize-py) or js (a
    /// component built with componentize-js). Each builds with its own build.sh and serves
    /// the same resources the same way.
    #[arg(long, value_enum, value_name = "LANG", default_value_t = Lang::Rust)]
    pub lang: Lang,
    /// Where to create it; must not exist or be empty. [default: ./NAME]
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,
    /// The API group of the resources. [default: NAME.example.com]
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// The resource Kind: an ASCII letter in upper case, then letters and digits.
    #[arg(long, value_name = "KIND", default_value = "Note")]
    pub kind: String,
    /// The plural used in URLs and by `cup get`. [default: the Kind in lower case + "s"]
    #[arg(long, value_name = "PLURAL")]
    pub plural: Option<String>,
    /// Rust only: depend on the SDK at this path (a checkout's crates/cup-controller-sdk).
    /// [default: the SDK of the checkout this cup was built from, while it exists]
    #[arg(long, value_name = "PATH", conflicts_with = "sdk_git")]
    pub sdk_path: Option<PathBuf>,
    /// Rust only: depend on the SDK from this Git repository (a clone URL of cup).
    #[arg(long, value_name = "URL")]
    pub sdk_git: Option<String>,
    /// Rust only: the commit or tag of --sdk-git to use (Cargo's `rev`). [default: its
    /// default branch]
    #[arg(long, value_name = "REV", requires = "sdk_git")]
    pub sdk_rev: Option<String>,
}

/// Where the SDK comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sdk {
    Path(PathBuf),
    Git { url: String, rev: Option<String> },
}

impl Sdk {
    /// The `[dependencies]` line.
    fn dependency(&self) -> Result<String> {
        Ok(match self {
            Sdk::Path(path) => {
                let path = path
                    .to_str()
                    .with_context(|| format!("the SDK path {} is not UTF-8", path.display()))?;
                format!("cup-controller-sdk = {{ path = {} }}", toml_string(path))
            }
            Sdk::Git { url, rev: None } => {
                format!("cup-controller-sdk = {{ git = {} }}", toml_string(url))
            }
            Sdk::Git {
                url,
                rev: Some(rev),
            } => format!(
                "cup-controller-sdk = {{ git = {}, rev = {} }}",
                toml_string(url),
                toml_string(rev)
            ),
        })
    }
}

/// Everything the templates are filled with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Vars {
    name: String,
    kind: String,
    group: String,
    plural: String,
    singular: String,
    /// Rust only: the `[dependencies]` line of the SDK.
    sdk_dependency: Option<String>,
}

impl Vars {
    fn get(&self, key: &str) -> Option<&str> {
        Some(match key {
            "name" => &self.name,
            "kind" => &self.kind,
            "group" => &self.group,
            "plural" => &self.plural,
            "singular" => &self.singular,
            "version" => VERSION,
            "sdk_dependency" => self.sdk_dependency.as_deref()?,
            _ => return None,
        })
    }
}

/// What `new` reports.
#[derive(Serialize)]
struct Created {
    dir: PathBuf,
    language: Lang,
    kind: String,
    group: String,
    version: &'static str,
    plural: String,
    files: Vec<String>,
}

pub fn run(args: NewArgs, output: Output) -> Result<i32> {
    let lang = args.lang;
    check_name(&args.name, lang)?;
    check_kind(&args.kind)?;
    let group = match args.group {
        Some(group) => group,
        None => format!("{}.example.com", args.name.replace('_', "-")),
    };
    check_group(&group)?;
    let singular = args.kind.to_ascii_lowercase();
    let plural = args.plural.unwrap_or_else(|| format!("{singular}s"));
    check_plural(&plural)?;
    if lang != Lang::Rust {
        for (given, flag) in [
            (args.sdk_path.is_some(), "--sdk-path"),
            (args.sdk_git.is_some(), "--sdk-git"),
            (args.sdk_rev.is_some(), "--sdk-rev"),
        ] {
            if given {
                bail!(
                    "{flag} is for --lang rust only: a {} controller does not use the Rust SDK",
                    lang.as_str()
                );
            }
        }
    }
    let sdk = match (args.sdk_path, args.sdk_git) {
        _ if lang != Lang::Rust => None,
        (Some(path), _) => Some(Sdk::Path(sdk_dir(&path)?)),
        (None, Some(url)) => {
            if url.trim().is_empty() {
                bail!("--sdk-git needs a URL");
            }
            Some(Sdk::Git {
                url,
                rev: args.sdk_rev,
            })
        }
        (None, None) => Some(Sdk::Path(built_from_sdk()?)),
    };
    let vars = Vars {
        name: args.name.clone(),
        kind: args.kind,
        group,
        plural,
        singular,
        sdk_dependency: sdk.map(|sdk| sdk.dependency()).transpose()?,
    };
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    let files = write_project(&dir, &vars, lang)?;
    let created = Created {
        dir: dir.clone(),
        language: lang,
        kind: vars.kind,
        group: vars.group,
        version: VERSION,
        plural: vars.plural,
        files,
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&created)?),
        Output::Table => {
            println!(
                "created {} in {}: {} ({}/{VERSION}, plural {}), {}",
                args.name,
                dir.display(),
                created.kind,
                created.group,
                created.plural,
                lang.describe()
            );
            if dir == Path::new(".") {
                println!("next: ./build.sh   (then see README.md)");
            } else {
                let dir = dir.display();
                println!("next: cd {dir} && ./build.sh   (then see README.md)");
            }
        }
    }
    Ok(0)
}

/// Renders every template into a staging directory and moves the result into place, so a
/// failure leaves no half-written project behind: the staging directory itself becomes `dir`,
/// or, when `dir` is an existing empty directory (possibly someone's working directory, which
/// must stay the same directory), its entries are moved into it. Returns the relative paths
/// written.
fn write_project(dir: &Path, vars: &Vars, lang: Lang) -> Result<Vec<String>> {
    let exists = match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} already exists and is not empty; choose another --dir",
                    dir.display()
                );
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("{} already exists and is not a directory", dir.display())
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    // On the same file system as `dir`, so that the moves are renames.
    let staging_parent = if exists {
        dir.to_owned()
    } else {
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        parent
    };
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}.", vars.name))
        .tempdir_in(&staging_parent)
        .with_context(|| format!("creating a directory in {}", staging_parent.display()))?;
    let mut written = Vec::new();
    for &(path, body) in lang.files() {
        let rel = render(path, vars)?;
        let full = staging.path().join(&rel);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&full, content(body, vars)?)
            .with_context(|| format!("writing {}", full.display()))?;
        if rel == SCRIPT {
            set_mode_755(&full)?;
        }
        written.push(rel);
    }
    if exists {
        for entry in std::fs::read_dir(staging.path())
            .with_context(|| format!("reading {}", staging.path().display()))?
        {
            let from = entry
                .with_context(|| format!("reading {}", staging.path().display()))?
                .path();
            let to = dir.join(from.file_name().unwrap_or_default());
            std::fs::rename(&from, &to)
                .with_context(|| format!("moving {} into {}", to.display(), dir.display()))?;
        }
        // `staging`, now empty, is removed when dropped.
        return Ok(written);
    }
    // The temporary directory was created 0700; the project gets the usual permissions.
    set_mode_755(staging.path())?;
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, dir) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(e).with_context(|| format!("moving the new project to {}", dir.display()));
    }
    Ok(written)
}

/// rwxr-xr-x: for the build script, and for the project's directory (its temporary directory
/// was created 0700).
#[cfg(unix)]
fn set_mode_755(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting the permissions of {}", path.display()))
}

#[cfg(not(unix))]
fn set_mode_755(_: &Path) -> Result<()> {
    Ok(())
}

/// The text of one file of the new project.
fn content(body: Body, vars: &Vars) -> Result<String> {
    match body {
        Body::Template(template) => render(template, vars),
        Body::Contract => Ok(CONTRACT.to_owned()),
        Body::NpmLock => npm_lock(&vars.name),
    }
}

/// The JavaScript example's lock with the project's name, in the two places npm writes it
/// (the lock's own name and its root package's). `npm ci` refuses a lock whose root does not
/// match package.json, so the name must be replaced in both.
fn npm_lock(name: &str) -> Result<String> {
    let from = format!("\"name\": \"{NPM_LOCK_NAME}\"");
    let found = NPM_LOCK.matches(&from).count();
    if found != 2 {
        bail!(
            "the npm lock names {NPM_LOCK_NAME:?} {found} times, not twice: it cannot be renamed"
        );
    }
    Ok(NPM_LOCK.replace(&from, &format!("\"name\": \"{name}\"")))
}

/// Fills `{{key}}` placeholders. An unknown key is an error, so a template cannot ship with
/// a placeholder left in it.
fn render(template: &str, vars: &Vars) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .with_context(|| format!("unclosed placeholder at {:?}", truncate(&rest[start..])))?;
        let key = &after[..end];
        let value = vars
            .get(key)
            .with_context(|| format!("unknown placeholder {{{{{key}}}}}"))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

/// A TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The SDK this `cup` was built from, while that checkout exists.
fn built_from_sdk() -> Result<PathBuf> {
    let path = Path::new(BUILT_FROM_SDK);
    if !is_sdk(path) {
        bail!(
            "the cup-controller-sdk this cup was built from ({}) is not there any more; \
             pass --sdk-path DIR (crates/cup-controller-sdk of a cup checkout) or --sdk-git URL",
            path.display()
        );
    }
    path.canonicalize()
        .with_context(|| format!("resolving {}", path.display()))
}

/// `--sdk-path`, absolute, so the new crate builds from wherever it is moved to.
fn sdk_dir(path: &Path) -> Result<PathBuf> {
    if !is_sdk(path) {
        bail!(
            "--sdk-path {}: not the cup-controller-sdk crate (no Cargo.toml naming it)",
            path.display()
        );
    }
    path.canonicalize()
        .with_context(|| format!("resolving {}", path.display()))
}

/// Whether `dir` holds the SDK's manifest.
fn is_sdk(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|manifest| manifest.contains("name = \"cup-controller-sdk\""))
}

/// Names Cargo refuses for a package or that would clash with its own directories.
const RESERVED: [&str; 9] = [
    "build",
    "deps",
    "examples",
    "incremental",
    "alloc",
    "core",
    "proc_macro",
    "std",
    "test",
];

/// Rust keywords: Cargo refuses them as package names.
const KEYWORDS: [&str; 51] = [
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "Self", "static", "struct", "super", "trait", "true", "try", "type",
    "typeof", "unsafe", "unsized", "use", "virtual", "where", "while",
];

/// A name that is also usable as a file name, a Controller name and (by default) in the API
/// group: lowercase ASCII letters, digits, '-' and '_', starting with a letter. A Rust
/// project's is also a crate name, a JavaScript project's an npm package name.
fn check_name(name: &str, lang: Lang) -> Result<()> {
    let Some(first) = name.chars().next() else {
        bail!("the controller name cannot be empty");
    };
    if name.len() > 64 {
        bail!("controller name {name:?} is longer than 64 characters");
    }
    if !first.is_ascii_lowercase() {
        bail!("controller name {name:?} must start with a lowercase ASCII letter");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        bail!(
            "controller name {name:?} contains {c:?}: use lowercase ASCII letters, digits, '-' and '_'"
        );
    }
    if name.ends_with(['-', '_']) {
        bail!("controller name {name:?} cannot end with '-' or '_'");
    }
    let reserved = match lang {
        Lang::Rust => KEYWORDS.contains(&name) || RESERVED.contains(&name) || name == "proc-macro",
        Lang::Python => false,
        Lang::Js => name == "node_modules",
    };
    if reserved {
        let by = match lang {
            Lang::Rust => "Rust or Cargo",
            Lang::Python | Lang::Js => "npm",
        };
        bail!("controller name {name:?} is reserved by {by}");
    }
    Ok(())
}

/// A Kind that is also a Rust type name prefix: an uppercase ASCII letter, then ASCII
/// letters and digits.
fn check_kind(kind: &str) -> Result<()> {
    let mut chars = kind.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric())
        && kind.len() <= 63;
    if !ok {
        bail!(
            "--kind {kind:?}: a Kind is an uppercase ASCII letter followed by letters and digits (e.g. Note)"
        );
    }
    Ok(())
}

/// A DNS-like group: dot-separated labels of lowercase letters, digits and '-'.
fn check_group(group: &str) -> Result<()> {
    let ok = !group.is_empty()
        && group.len() <= 253
        && group.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    if !ok {
        bail!(
            "--group {group:?}: a group is a DNS name: dot-separated labels of lowercase letters, digits and '-' (e.g. notes.example.com)"
        );
    }
    Ok(())
}

/// A plural: lowercase ASCII letters and digits, starting with a letter (one URL segment).
fn check_plural(plural: &str) -> Result<()> {
    let mut chars = plural.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && plural.len() <= 63;
    if !ok {
        bail!(
            "--plural {plural:?}: use lowercase ASCII letters and digits, starting with a letter"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            name: "my-notes".into(),
            kind: "Memo".into(),
            group: "my-notes.example.com".into(),
            plural: "memos".into(),
            singular: "memo".into(),
            sdk_dependency: Some(
                Sdk::Path("/src/cup/crates/cup-controller-sdk".into())
                    .dependency()
                    .unwrap(),
            ),
        }
    }

    const LANGS: [Lang; 3] = [Lang::Rust, Lang::Python, Lang::Js];

    /// The rendered text of `path` (as listed, placeholders unrendered) for `lang`.
    fn rendered_file(lang: Lang, path: &str, vars: &Vars) -> String {
        let &(_, body) = lang
            .files()
            .iter()
            .find(|(p, _)| *p == path)
            .unwrap_or_else(|| panic!("{lang:?} has no {path}"));
        content(body, vars).unwrap_or_else(|e| panic!("{lang:?} {path}: {e}"))
    }

    #[test]
    fn names_that_are_crate_names_pass() {
        for name in ["notes", "my-notes", "my_notes2", "a", "x1-y_z"] {
            for lang in LANGS {
                check_name(name, lang).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        for (name, reason) in [
            ("", "cannot be empty"),
            ("1notes", "must start with a lowercase"),
            ("-notes", "must start with a lowercase"),
            ("Notes", "must start with a lowercase"),
            ("my notes", "contains ' '"),
            ("my.notes", "contains '.'"),
            ("my/notes", "contains '/'"),
            ("../notes", "must start with a lowercase"),
            ("nötes", "contains 'ö'"),
            ("notes-", "cannot end with"),
            ("fn", "reserved"),
            ("test", "reserved"),
            ("deps", "reserved"),
            ("proc-macro", "reserved"),
        ] {
            let err = check_name(name, Lang::Rust).expect_err(name).to_string();
            assert!(err.contains(reason), "{name:?}: {err}");
        }
        assert!(check_name(&"a".repeat(65), Lang::Rust).is_err());
        check_name(&"a".repeat(64), Lang::Rust).unwrap();
        // Rust's and Cargo's reserved names are fine elsewhere; npm reserves its own.
        for name in ["fn", "test", "deps", "proc-macro"] {
            check_name(name, Lang::Python).unwrap();
            check_name(name, Lang::Js).unwrap();
        }
        let err = check_name("node_modules", Lang::Js)
            .unwrap_err()
            .to_string();
        assert!(err.contains("reserved by npm"), "{err}");
        check_name("node_modules", Lang::Python).unwrap();
        assert!(check_name("Notes", Lang::Python).is_err());
        assert!(check_name("a.b", Lang::Js).is_err());
    }

    #[test]
    fn kinds_groups_and_plurals_are_checked() {
        check_kind("Note").unwrap();
        check_kind("V2Thing").unwrap();
        for bad in ["", "note", "No-te", "Nöte", "2Note"] {
            assert!(check_kind(bad).is_err(), "{bad:?}");
        }
        check_group("notes.example.com").unwrap();
        check_group("a-b.c1").unwrap();
        for bad in ["", ".", "a..b", "A.b", "a/b", "-a.b", "a_b.c", "a.b."] {
            assert!(check_group(bad).is_err(), "{bad:?}");
        }
        check_plural("notes").unwrap();
        for bad in ["", "Notes", "no-tes", "no/tes", "1notes"] {
            assert!(check_plural(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn render_fills_every_placeholder() {
        let out = render(
            "{{name}} {{kind}} {{group}}/{{version}} {{plural}} {{singular}}",
            &vars(),
        )
        .unwrap();
        assert_eq!(out, "my-notes Memo my-notes.example.com/v1 memos memo");
        // Single braces and lone closing pairs (Rust, JSON) pass through.
        assert_eq!(
            render("{\"a\":{}} format!(\"{x}\") }}", &vars()).unwrap(),
            "{\"a\":{}} format!(\"{x}\") }}"
        );
    }

    #[test]
    fn render_refuses_unknown_or_unclosed_placeholders() {
        let err = render("a {{nmae}} b", &vars()).unwrap_err().to_string();
        assert!(err.contains("unknown placeholder {{nmae}}"), "{err}");
        let err = render("a {{name b", &vars()).unwrap_err().to_string();
        assert!(err.contains("unclosed placeholder"), "{err}");
    }

    #[test]
    fn every_template_renders_completely() {
        let vars = vars();
        for lang in LANGS {
            for &(path, body) in lang.files() {
                let text = content(body, &vars).unwrap_or_else(|e| panic!("{lang:?} {path}: {e}"));
                assert!(!text.contains("{{"), "{lang:?} {path} keeps a placeholder");
                // Written for this project, not left over from an example.
                if matches!(body, Body::Template(_)) {
                    for other in ["redirect", "groceries", "python-notes", "web.example.com"] {
                        assert!(!text.contains(other), "{lang:?} {path} mentions {other}");
                    }
                }
            }
            let files: Vec<String> = lang
                .files()
                .iter()
                .map(|(path, _)| render(path, &vars).unwrap())
                .collect();
            let mut unique = files.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), files.len(), "{lang:?}: {files:?}");
            for shared in [
                "defs/memos.json",
                "build.sh",
                "config/controller.json",
                "examples/hello.json",
                "README.md",
                ".gitignore",
            ] {
                assert!(files.contains(&shared.to_owned()), "{lang:?}: {files:?}");
            }
            // Each build script and README names the package it builds.
            assert!(rendered_file(lang, "build.sh", &vars).contains("config/my-notes.wasm"));
            assert!(rendered_file(lang, "README.md", &vars).contains("config/my-notes.wasm"));
            assert!(rendered_file(lang, ".gitignore", &vars).contains("/config/my-notes.wasm"));
        }
        // Only a Rust crate depends on the SDK: a component template asking for it fails.
        let no_sdk = Vars {
            sdk_dependency: None,
            ..vars.clone()
        };
        let err = render("{{sdk_dependency}}", &no_sdk)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown placeholder"), "{err}");
        for lang in [Lang::Python, Lang::Js] {
            for &(path, body) in lang.files() {
                content(body, &no_sdk).unwrap_or_else(|e| panic!("{lang:?} {path}: {e}"));
            }
        }
    }

    #[test]
    fn every_language_writes_its_files() {
        for lang in LANGS {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("new");
            let files = write_project(&dir, &vars(), lang).unwrap();
            assert_eq!(files.len(), lang.files().len());
            for file in &files {
                assert!(dir.join(file).is_file(), "{lang:?} {file}");
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(dir.join(SCRIPT))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o111, 0o111, "{lang:?} {mode:o}");
            }
        }
    }

    #[test]
    fn components_carry_the_contract_as_it_is() {
        let contract = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../wit/controller.wit"
        ))
        .unwrap();
        for lang in [Lang::Python, Lang::Js] {
            assert_eq!(rendered_file(lang, "wit/controller.wit", &vars()), contract);
        }
        assert!(contract.contains("package cup:controller@0.1.0;"));
        assert!(contract.contains("world cup-controller {"));
        // The JavaScript world includes that world and adds only the filesystem imports.
        let world = rendered_file(Lang::Js, "wit/world.wit", &vars());
        assert!(
            world.contains("include cup:controller/cup-controller@0.1.0;"),
            "{world}"
        );
        let build = rendered_file(Lang::Js, "build.sh", &vars());
        assert!(build.contains("--world-name component"), "{build}");
        assert!(world.contains("world component {"), "{world}");
        let build = rendered_file(Lang::Python, "build.sh", &vars());
        assert!(build.contains("world=cup-controller"), "{build}");
    }

    #[test]
    fn the_npm_files_agree_with_each_other_and_the_example() {
        let vars = vars();
        let package: serde_json::Value =
            serde_json::from_str(&rendered_file(Lang::Js, "package.json", &vars)).unwrap();
        let lock: serde_json::Value =
            serde_json::from_str(&rendered_file(Lang::Js, "package-lock.json", &vars)).unwrap();
        assert_eq!(package["name"], "my-notes");
        assert_eq!(lock["name"], "my-notes");
        assert_eq!(lock["packages"][""]["name"], "my-notes");
        // npm ci installs only what the lock's root declares, and refuses a lock that does
        // not match package.json.
        assert_eq!(
            lock["packages"][""]["devDependencies"],
            package["devDependencies"]
        );
        assert!(lock["packages"][""].get("dependencies").is_none());
        assert!(package.get("dependencies").is_none());
        // The same toolchain as the example, pinned to exact versions.
        let example: serde_json::Value =
            serde_json::from_str(include_str!("../../../examples/js-redirects/package.json"))
                .unwrap();
        assert_eq!(package["devDependencies"], example["devDependencies"]);
        for (name, version) in package["devDependencies"].as_object().unwrap() {
            let version = version.as_str().unwrap();
            assert!(
                version.chars().all(|c| c.is_ascii_digit() || c == '.'),
                "{name} {version}"
            );
            assert_eq!(
                lock["packages"][format!("node_modules/{name}")]["version"],
                version,
                "{name}"
            );
        }
        assert_eq!(package["type"], "module");
        // Nothing else of the example's name is left.
        assert!(!rendered_file(Lang::Js, "package-lock.json", &vars).contains(NPM_LOCK_NAME));
    }

    #[test]
    fn the_python_tools_are_pinned_with_hashes() {
        let requirements = rendered_file(Lang::Python, "requirements.txt", &vars());
        let example = include_str!("../../../examples/python-notes/requirements.txt");
        let pinned = |text: &str| -> Vec<String> {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .map(|l| l.trim_end_matches('\\').trim().to_owned())
                .collect()
        };
        let ours = pinned(&requirements);
        assert_eq!(ours[0], "componentize-py==0.25.1");
        assert!(
            ours[1..].iter().all(|l| l.starts_with("--hash=sha256:")),
            "{ours:?}"
        );
        // The same componentize-py, with the same hashes, as the example; no wasmtime.
        let theirs = pinned(example);
        let at = theirs
            .iter()
            .position(|l| l == &ours[0])
            .expect("in the example");
        assert_eq!(ours[..], theirs[at..at + ours.len()]);
        assert!(!requirements.contains("wasmtime"));
    }

    #[test]
    fn rendered_json_files_parse_and_agree() {
        for lang in LANGS {
            json_files_parse_and_agree(lang);
        }
    }

    fn json_files_parse_and_agree(lang: Lang) {
        let vars = vars();
        let rendered = |name: &str| -> serde_json::Value {
            serde_json::from_str(&rendered_file(lang, name, &vars)).expect(name)
        };
        let definition: cup_model::ResourceDefinition =
            serde_json::from_value(rendered("defs/{{plural}}.json")).unwrap();
        cup_model::validate_definition(&definition).unwrap();
        assert_eq!(definition.metadata.name, "memos.my-notes.example.com");
        assert_eq!(definition.names.kind, "Memo");
        assert_eq!(definition.names.singular, "memo");
        assert_eq!(definition.names.plural, "memos");
        assert_eq!(definition.spec.group, "my-notes.example.com");
        assert!(definition.spec.versions.contains_key(VERSION));

        let controller = rendered("config/controller.json");
        assert_eq!(controller["kind"], "Controller");
        assert_eq!(controller["metadata"]["name"], "my-notes");
        assert_eq!(controller["spec"]["spec"]["path"], "my-notes.wasm");

        let hello = rendered("examples/hello.json");
        assert_eq!(hello["apiVersion"], "my-notes.example.com/v1");
        assert_eq!(hello["kind"], "Memo");
        // The sample is valid under the definition's schema.
        let schema = &definition.spec.versions[VERSION];
        let validator = cup_model::compile_schema(schema).unwrap();
        assert!(validator.is_valid(&hello));
        assert!(!validator.is_valid(&serde_json::json!({
            "apiVersion": "my-notes.example.com/v1", "kind": "Memo", "spec": {"text": 1}
        })));
    }

    /// docs/DEFINITIONS.md shows what `cup controller new notes` writes: it must stay so.
    #[test]
    fn the_documented_definition_is_the_one_written() {
        let doc = include_str!("../../../docs/DEFINITIONS.md");
        let example = doc
            .split("```json\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a JSON example in docs/DEFINITIONS.md");
        let notes = Vars {
            name: "notes".into(),
            kind: "Note".into(),
            group: "notes.example.com".into(),
            plural: "notes".into(),
            singular: "note".into(),
            sdk_dependency: None,
        };
        for lang in LANGS {
            assert_eq!(
                example,
                rendered_file(lang, "defs/{{plural}}.json", &notes),
                "{lang:?}"
            );
        }
    }

    #[test]
    fn the_sdk_dependency_is_written_as_toml() {
        assert_eq!(
            Sdk::Path("/src/cup/crates/cup-controller-sdk".into())
                .dependency()
                .unwrap(),
            r#"cup-controller-sdk = { path = "/src/cup/crates/cup-controller-sdk" }"#
        );
        assert_eq!(
            Sdk::Path(r#"C:\a "b""#.into()).dependency().unwrap(),
            r#"cup-controller-sdk = { path = "C:\\a \"b\"" }"#
        );
        assert_eq!(
            Sdk::Git {
                url: "https://git.example/cup.git".into(),
                rev: None
            }
            .dependency()
            .unwrap(),
            r#"cup-controller-sdk = { git = "https://git.example/cup.git" }"#
        );
        assert_eq!(
            Sdk::Git {
                url: "https://git.example/cup.git".into(),
                rev: Some("v0.1.0".into())
            }
            .dependency()
            .unwrap(),
            r#"cup-controller-sdk = { git = "https://git.example/cup.git", rev = "v0.1.0" }"#
        );
    }

    #[test]
    fn the_sdk_this_cup_was_built_from_is_found() {
        let sdk = built_from_sdk().unwrap();
        assert!(sdk.is_absolute());
        assert!(is_sdk(&sdk));
        assert!(!is_sdk(&sdk.join("src")));
        let err = sdk_dir(&sdk.join("src")).unwrap_err().to_string();
        assert!(err.contains("not the cup-controller-sdk crate"), "{err}");
    }

    #[test]
    fn write_project_refuses_a_non_empty_directory_and_fills_an_empty_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("taken");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("keep.txt"), "mine").unwrap();
        let err = write_project(&dir, &vars(), Lang::Rust)
            .unwrap_err()
            .to_string();
        assert!(err.contains("already exists and is not empty"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
            "mine"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = write_project(&file, &vars(), Lang::Rust)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a directory"), "{err}");

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let files = write_project(&empty, &vars(), Lang::Rust).unwrap();
        assert_eq!(files.len(), RUST.len());
        for file in &files {
            assert!(empty.join(file).is_file(), "{file}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(empty.join(SCRIPT))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o111, 0o111, "{mode:o}");
        }
        // Filled in place: no staging directory is left in it or beside it.
        let mut inside: Vec<String> = std::fs::read_dir(&empty)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        inside.sort();
        assert_eq!(
            inside,
            [
                ".gitignore",
                "Cargo.toml",
                "README.md",
                "build.sh",
                "config",
                "defs",
                "examples",
                "src"
            ]
        );
        // A directory that does not exist yet, parents included.
        let deep = tmp.path().join("a/b/new");
        write_project(&deep, &vars(), Lang::Rust).unwrap();
        assert!(deep.join("src/main.rs").is_file());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&deep).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o755, "{mode:o}");
        }
        let mut left: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["a", "empty", "file", "taken"]);
        assert_eq!(
            std::fs::read_dir(tmp.path().join("a/b")).unwrap().count(),
            1
        );
    }
}
