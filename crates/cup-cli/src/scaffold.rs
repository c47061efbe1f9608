//! `cup controller new`: writes a controller crate that builds, embeds its definitions and is
//! served by `cupd` as it is, from templates kept as files under `templates/controller`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use crate::Output;

/// The SDK of the checkout this `cup` was built from: the default dependency while it exists.
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../cup-controller-sdk");

/// The version the new crate serves.
const VERSION: &str = "v1";

/// (path in the new crate, template). Rendered in this order.
const TEMPLATES: [(&str, &str); 8] = [
    (
        "Cargo.toml",
        include_str!("../templates/controller/Cargo.toml.tmpl"),
    ),
    (
        "src/main.rs",
        include_str!("../templates/controller/main.rs.tmpl"),
    ),
    (
        "defs/{{plural}}.json",
        include_str!("../templates/controller/definition.json.tmpl"),
    ),
    (
        "build.sh",
        include_str!("../templates/controller/build.sh.tmpl"),
    ),
    (
        "config/controller.json",
        include_str!("../templates/controller/controller.json.tmpl"),
    ),
    (
        "examples/hello.json",
        include_str!("../templates/controller/hello.json.tmpl"),
    ),
    (
        "README.md",
        include_str!("../templates/controller/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../templates/controller/gitignore.tmpl"),
    ),
];

/// The file made executable.
const SCRIPT: &str = "build.sh";

#[derive(Args)]
pub struct NewArgs {
    /// The crate name, also the module's (NAME.wasm) and the Controller's name: lowercase
    /// letters, digits, '-' and '_', starting with a letter.
    pub name: String,
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
    /// Depend on the SDK at this path (a checkout's crates/cup-controller-sdk).
    /// [default: the SDK of the checkout this cup was built from, while it exists]
    #[arg(long, value_name = "PATH", conflicts_with = "sdk_git")]
    pub sdk_path: Option<PathBuf>,
    /// Depend on the SDK from this Git repository (a clone URL of cup).
    #[arg(long, value_name = "URL")]
    pub sdk_git: Option<String>,
    /// The commit or tag of --sdk-git to use (Cargo's `rev`). [default: its default branch]
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
    sdk_dependency: String,
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
            "sdk_dependency" => &self.sdk_dependency,
            _ => return None,
        })
    }
}

/// What `new` reports.
#[derive(Serialize)]
struct Created {
    dir: PathBuf,
    kind: String,
    group: String,
    version: &'static str,
    plural: String,
    files: Vec<String>,
}

pub fn run(args: NewArgs, output: Output) -> Result<i32> {
    check_name(&args.name)?;
    check_kind(&args.kind)?;
    let group = match args.group {
        Some(group) => group,
        None => format!("{}.example.com", args.name.replace('_', "-")),
    };
    check_group(&group)?;
    let singular = args.kind.to_ascii_lowercase();
    let plural = args.plural.unwrap_or_else(|| format!("{singular}s"));
    check_plural(&plural)?;
    let sdk = match (args.sdk_path, args.sdk_git) {
        (Some(path), _) => Sdk::Path(sdk_dir(&path)?),
        (None, Some(url)) => {
            if url.trim().is_empty() {
                bail!("--sdk-git needs a URL");
            }
            Sdk::Git {
                url,
                rev: args.sdk_rev,
            }
        }
        (None, None) => Sdk::Path(built_from_sdk()?),
    };
    let vars = Vars {
        name: args.name.clone(),
        kind: args.kind,
        group,
        plural,
        singular,
        sdk_dependency: sdk.dependency()?,
    };
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    let files = write_crate(&dir, &vars)?;
    let created = Created {
        dir: dir.clone(),
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
                "created {} in {}: {} ({}/{VERSION}, plural {})",
                args.name,
                dir.display(),
                created.kind,
                created.group,
                created.plural
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
/// failure leaves no half-written crate behind: the staging directory itself becomes `dir`,
/// or, when `dir` is an existing empty directory (possibly someone's working directory, which
/// must stay the same directory), its entries are moved into it. Returns the relative paths
/// written.
fn write_crate(dir: &Path, vars: &Vars) -> Result<Vec<String>> {
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
    for (path, template) in TEMPLATES {
        let rel = render(path, vars)?;
        let full = staging.path().join(&rel);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&full, render(template, vars)?)
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
    // The temporary directory was created 0700; the crate gets the usual permissions.
    set_mode_755(staging.path())?;
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, dir) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(e).with_context(|| format!("moving the new crate to {}", dir.display()));
    }
    Ok(written)
}

/// rwxr-xr-x: for the build script, and for the crate's directory (its temporary directory
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

/// A crate name that is also usable as a file name, a Controller name and (by default) in
/// the API group: lowercase ASCII letters, digits, '-' and '_', starting with a letter.
fn check_name(name: &str) -> Result<()> {
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
    if KEYWORDS.contains(&name) || RESERVED.contains(&name) || name == "proc-macro" {
        bail!("controller name {name:?} is reserved by Rust or Cargo");
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
            sdk_dependency: Sdk::Path("/src/cup/crates/cup-controller-sdk".into())
                .dependency()
                .unwrap(),
        }
    }

    #[test]
    fn names_that_are_crate_names_pass() {
        for name in ["notes", "my-notes", "my_notes2", "a", "x1-y_z"] {
            check_name(name).unwrap_or_else(|e| panic!("{name}: {e}"));
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
            let err = check_name(name).expect_err(name).to_string();
            assert!(err.contains(reason), "{name:?}: {err}");
        }
        assert!(check_name(&"a".repeat(65)).is_err());
        check_name(&"a".repeat(64)).unwrap();
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
        for (path, template) in TEMPLATES {
            let rendered = render(template, &vars).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(!rendered.contains("{{"), "{path} keeps a placeholder");
            assert!(render(path, &vars).is_ok());
        }
        let files: Vec<String> = TEMPLATES
            .iter()
            .map(|(path, _)| render(path, &vars).unwrap())
            .collect();
        assert!(files.contains(&"defs/memos.json".to_owned()), "{files:?}");
    }

    #[test]
    fn rendered_json_files_parse_and_agree() {
        let vars = vars();
        let rendered = |name: &str| -> serde_json::Value {
            let (_, template) = TEMPLATES
                .iter()
                .find(|(path, _)| *path == name)
                .expect("a template");
            serde_json::from_str(&render(template, &vars).unwrap()).expect(name)
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
            sdk_dependency: String::new(),
        };
        let (_, template) = TEMPLATES
            .iter()
            .find(|(path, _)| *path == "defs/{{plural}}.json")
            .expect("the definition template");
        assert_eq!(example, render(template, &notes).unwrap());
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
    fn write_crate_refuses_a_non_empty_directory_and_fills_an_empty_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("taken");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("keep.txt"), "mine").unwrap();
        let err = write_crate(&dir, &vars()).unwrap_err().to_string();
        assert!(err.contains("already exists and is not empty"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
            "mine"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = write_crate(&file, &vars()).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let files = write_crate(&empty, &vars()).unwrap();
        assert_eq!(files.len(), TEMPLATES.len());
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
        write_crate(&deep, &vars()).unwrap();
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
