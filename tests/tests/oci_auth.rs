//! Registry credentials through the real binary against a registry that requires basic
//! auth: refused without credentials, accepted from --username/--password-stdin, from
//! Docker's config.json `auths`, and from a `credHelpers` helper program.

use std::ffi::OsStr;

use crate::oci_common::*;
use cup_e2e::flipt_package;
use cup_e2e::registry::TestRegistry;

const USER: &str = "cup";
const PASSWORD: &str = "secret";
/// base64("cup:secret"), as `docker login` writes it.
const AUTH: &str = "Y3VwOnNlY3JldA==";

#[test]
fn credentials_from_flags_config_json_and_helpers() {
    let registry = TestRegistry::start_with_auth(USER, PASSWORD);
    let w = Work::new();
    let reference = registry.reference("cup/private:v1");
    let wasm = w.wasm().to_string_lossy().into_owned();

    let err = fails(w.cup(&["controller", "push", &wasm, &reference]));
    says(
        &err,
        &[
            "unauthorised",
            &format!("registry {}", registry.host()),
            "cup/private:v1",
        ],
    );
    let wrong = w.cup_with(
        &[
            "controller",
            "push",
            "--username",
            USER,
            "--password-stdin",
            &wasm,
            &reference,
        ],
        &[],
        "nope\n",
    );
    says(&fails(wrong), &["unauthorised"]);

    let pushed = w.cup_with(
        &[
            "controller",
            "push",
            "--username",
            USER,
            "--password-stdin",
            &wasm,
            &reference,
        ],
        &[],
        &format!("{PASSWORD}\n"),
    );
    let digest = pushed_digest(&ok(pushed));

    // Pull with nothing: refused, store untouched.
    let err = fails(w.cup(&["controller", "pull", &reference]));
    says(&err, &["unauthorised", &registry.host()]);
    assert_empty_store(&w.store());

    // Docker config.json with an `auths` entry (DOCKER_CONFIG points at its directory).
    let docker = w.path("docker");
    std::fs::create_dir(&docker).expect("dir");
    let config = serde_json::json!({"auths": {registry.host(): {"auth": AUTH}}});
    std::fs::write(docker.join("config.json"), config.to_string()).expect("config.json");
    let env = [("DOCKER_CONFIG", docker.as_os_str())];
    let pulled = ok(w.cup_with(&["-o", "json", "controller", "pull", &reference], &env, ""));
    assert!(pulled.contains(&digest), "{pulled}");

    // A credential helper named in credHelpers, found on PATH as Docker finds it.
    let helper_dir = w.path("bin");
    std::fs::create_dir(&helper_dir).expect("dir");
    let helper = helper_dir.join("docker-credential-cuptest");
    let script = format!(
        "#!/bin/sh\nread server\necho '{{\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n"
    );
    std::fs::write(&helper, script).expect("helper");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let config = serde_json::json!({"credHelpers": {registry.host(): "cuptest"}});
    std::fs::write(docker.join("config.json"), config.to_string()).expect("config.json");
    let path = std::env::join_paths(std::iter::once(helper_dir.clone()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    let env: [(&str, &OsStr); 2] = [
        ("DOCKER_CONFIG", docker.as_os_str()),
        ("PATH", path.as_os_str()),
    ];
    let out = w.path("helper.wasm");
    ok(w.cup_with(
        &[
            "controller",
            "pull",
            &reference,
            "-O",
            &out.to_string_lossy(),
        ],
        &env,
        "",
    ));
    assert_eq!(std::fs::read(out).expect("pulled"), flipt_package());

    // A malformed config.json is an error that names it, not a silent anonymous pull.
    std::fs::write(docker.join("config.json"), "{not json").expect("config.json");
    let env = [("DOCKER_CONFIG", docker.as_os_str())];
    let err = fails(w.cup_with(&["controller", "pull", &reference], &env, ""));
    says(&err, &["config.json", "not a valid Docker config"]);
}
