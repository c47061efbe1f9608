//! Registry credentials: Docker's `config.json` (`auths`, `credHelpers`, `credsStore`, read
//! with the `docker_credential` crate, which runs `docker-credential-<helper> get`) or an
//! explicit username and password.

use std::path::PathBuf;

use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::secrets::RegistryAuth;

use crate::{Error, Result};

/// Where credentials come from.
#[derive(Clone, Default)]
pub enum Credentials {
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; anonymous when the file
    /// or an entry for the registry is missing.
    #[default]
    DockerConfig,
    /// Given on the command line (`--username` and `--password-stdin`).
    Basic {
        /// The registry user name.
        username: String,
        /// The password or token; never printed by `Debug`.
        password: String,
    },
    /// No credentials.
    Anonymous,
}

impl std::fmt::Debug for Credentials {
    // Never print a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::DockerConfig => f.write_str("DockerConfig"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// The Docker config file in use, if any.
pub fn docker_config_path() -> Option<PathBuf> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))?;
    Some(dir.join("config.json"))
}

/// The credentials to use for `registry` (`host[:port]` as in the reference).
pub fn resolve(credentials: &Credentials, registry: &str) -> Result<RegistryAuth> {
    match credentials {
        Credentials::Anonymous => Ok(RegistryAuth::Anonymous),
        Credentials::Basic { username, password } => {
            Ok(RegistryAuth::Basic(username.clone(), password.clone()))
        }
        Credentials::DockerConfig => match docker_config_path() {
            Some(path) if path.exists() => from_docker_config(&path, registry),
            _ => Ok(RegistryAuth::Anonymous),
        },
    }
}

fn from_docker_config(path: &std::path::Path, registry: &str) -> Result<RegistryAuth> {
    let fail = |detail: String| Error::Credentials {
        registry: registry.to_owned(),
        detail,
    };
    let file = std::fs::File::open(path).map_err(Error::io(path))?;
    // Docker keys Docker Hub by its legacy URL.
    let server = match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "https://index.docker.io/v1/",
        other => other,
    };
    match docker_credential::get_credential_from_reader(std::io::BufReader::new(file), server) {
        Ok(DockerCredential::UsernamePassword(u, p)) => Ok(RegistryAuth::Basic(u, p)),
        Ok(DockerCredential::IdentityToken(_)) => Err(fail(format!(
            "{} holds an identity token, which cup cannot exchange; use --username and --password-stdin",
            path.display()
        ))),
        Err(CredentialRetrievalError::NoCredentialConfigured) => Ok(RegistryAuth::Anonymous),
        // A credential store with no entry for this registry answers like this.
        Err(CredentialRetrievalError::HelperFailure { stdout, .. })
            if stdout.contains("credentials not found") =>
        {
            Ok(RegistryAuth::Anonymous)
        }
        Err(CredentialRetrievalError::ConfigReadError) => Err(fail(format!(
            "{} is not a valid Docker config file",
            path.display()
        ))),
        Err(e) => Err(fail(format!("{e} (from {})", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auths_from_a_config_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("config.json");
        // base64("user:secret")
        std::fs::write(
            &path,
            r#"{"auths":{"reg.example:5000":{"auth":"dXNlcjpzZWNyZXQ="}}}"#,
        )
        .expect("write");
        assert_eq!(
            from_docker_config(&path, "reg.example:5000").expect("auth"),
            RegistryAuth::Basic("user".into(), "secret".into())
        );
        assert_eq!(
            from_docker_config(&path, "other.example").expect("auth"),
            RegistryAuth::Anonymous
        );
        std::fs::write(&path, "not json").expect("write");
        assert!(from_docker_config(&path, "x").is_err());
    }

    #[test]
    // Docker finds credential helpers on PATH, so the test must set it; Rust 2024 makes
    // `set_var` unsafe because another thread may read the environment at the same time.
    #[allow(unsafe_code)]
    fn runs_credential_helpers() {
        let dir = tempfile::tempdir().expect("tmp");
        let helper = dir.path().join("docker-credential-fake");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\necho \"{\\\"Username\\\":\\\"u-$server\\\",\\\"Secret\\\":\\\"s\\\"}\"\n",
        )
        .expect("write helper");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"credHelpers":{"reg.example":"fake"}}"#).expect("write");
        // The helper is found on PATH, as Docker does it.
        let old = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![dir.path().to_owned()];
        paths.extend(std::env::split_paths(&old));
        let joined = std::env::join_paths(paths).expect("join");
        // SAFETY: this is the only test in this binary that reads or writes PATH.
        unsafe { std::env::set_var("PATH", &joined) };
        let got = from_docker_config(&path, "reg.example");
        // SAFETY: as above.
        unsafe { std::env::set_var("PATH", &old) };
        assert_eq!(
            got.expect("auth"),
            RegistryAuth::Basic("u-reg.example".into(), "s".into())
        );
    }
}
