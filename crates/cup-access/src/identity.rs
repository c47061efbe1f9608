//! The caller of a request.

use serde::Serialize;

/// Group every authenticated caller is in.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The user of a request without credentials, when anonymous access is on.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// The group of [`ANONYMOUS_USER`].
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// A bearer token from the token file.
    Token,
    /// A verified client certificate.
    ClientCertificate,
    /// Headers set by a trusted authenticating proxy.
    RequestHeader,
    /// No credentials; anonymous access is on.
    Anonymous,
}

/// Who is calling: a user name and the groups it is in (the built-in ones included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// The user name.
    pub user: String,
    /// Its groups, `system:authenticated` or `system:unauthenticated` among them.
    pub groups: Vec<String>,
    /// How the caller was identified.
    pub method: Method,
}

impl Caller {
    /// An authenticated caller: `groups` plus `system:authenticated`, without repeats.
    pub fn authenticated(user: String, groups: Vec<String>, method: Method) -> Caller {
        let mut all: Vec<String> = Vec::with_capacity(groups.len() + 1);
        for group in groups {
            if !group.is_empty() && !all.contains(&group) {
                all.push(group);
            }
        }
        if !all.iter().any(|g| g == AUTHENTICATED_GROUP) {
            all.push(AUTHENTICATED_GROUP.to_owned());
        }
        Caller {
            user,
            groups: all,
            method,
        }
    }

    /// The anonymous caller.
    pub fn anonymous() -> Caller {
        Caller {
            user: ANONYMOUS_USER.to_owned(),
            groups: vec![UNAUTHENTICATED_GROUP.to_owned()],
            method: Method::Anonymous,
        }
    }

    /// Whether the caller is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticated_callers_get_the_builtin_group_once() {
        let caller = Caller::authenticated(
            "alice".into(),
            vec![
                "dev".into(),
                "dev".into(),
                String::new(),
                AUTHENTICATED_GROUP.into(),
            ],
            Method::Token,
        );
        assert_eq!(caller.groups, ["dev", AUTHENTICATED_GROUP]);
        assert!(Caller::anonymous().in_group(UNAUTHENTICATED_GROUP));
        assert!(!Caller::anonymous().in_group(AUTHENTICATED_GROUP));
    }
}
