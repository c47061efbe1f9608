//! The registry's credential challenge, run by cup itself: `GET /v2/` without credentials,
//! then, if the registry answers with a Bearer challenge, a token requested from the realm
//! it names with the user's credentials. The realm is checked first
//! ([`super::Registry::check_realm`]), so credentials never go to a token service on a host
//! the user did not allow, nor over plain HTTP for an HTTPS registry.

use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{StatusCode, Url};

use super::push_http::{Failed, Refusal, read_capped};

/// Largest token answer read (a JSON object holding a token of a few KiB).
const MAX_TOKEN_ANSWER: u64 = 1 << 20;

/// A Bearer challenge: where to ask for a token, and for which service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Challenge {
    pub realm: String,
    pub service: Option<String>,
}

/// Asks the registry how it wants to be authenticated (`GET <base>/v2/`, no credentials).
/// `None`: no Bearer challenge (the registry takes basic auth, or asks for nothing).
pub(super) async fn challenge(
    http: &reqwest::Client,
    base: &str,
) -> std::result::Result<Option<Challenge>, Failed> {
    let url = Url::parse(&format!("{base}/v2/"))
        .map_err(|e| Failed::Protocol(format!("cannot form the URL {base}/v2/: {e}")))?;
    let response = http.get(url).send().await?;
    let status = response.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(Failed::Answer(Refusal::from(response).await));
    }
    Ok(response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(bearer_challenge))
}

/// The first Bearer challenge with a realm in a `WWW-Authenticate` value.
pub(super) fn bearer_challenge(header: &str) -> Option<Challenge> {
    http_auth::parser::ChallengeParser::new(header)
        .filter_map(Result::ok)
        .filter(|c| c.scheme.eq_ignore_ascii_case("Bearer"))
        .find_map(|c| {
            let param = |name: &str| {
                c.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            Some(Challenge {
                realm: param("realm")?,
                service: param("service"),
            })
        })
}

/// A token for `scope` from a realm already judged fit to receive the credentials.
pub(super) async fn fetch(
    http: &reqwest::Client,
    realm: Url,
    challenge: &Challenge,
    scope: &str,
    (username, password): (&str, &str),
) -> std::result::Result<String, Failed> {
    let mut query = vec![("scope", scope)];
    if let Some(service) = &challenge.service {
        query.push(("service", service));
    }
    // reqwest drops the Authorization header on a redirect to another host or port.
    let response = http
        .get(realm)
        .query(&query)
        .basic_auth(username, Some(password))
        .send()
        .await?;
    if response.status() != StatusCode::OK {
        return Err(Failed::Answer(Refusal::from(response).await));
    }
    let body = read_capped(response, MAX_TOKEN_ANSWER, "the token service's answer").await?;
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(&body)
        .map_err(|e| Failed::Protocol(format!("the token service's answer is not JSON: {e}")))?;
    answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Failed::Protocol("the token service's answer holds no token".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let c = bearer_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg.example",scope="x""#,
        )
        .expect("bearer");
        assert_eq!(c.realm, "https://auth.example/token");
        assert_eq!(c.service.as_deref(), Some("reg.example"));
        assert_eq!(bearer_challenge(r#"Basic realm="cup-test""#), None);
        assert_eq!(bearer_challenge("Bearer service=\"x\""), None);
        let c = bearer_challenge(r#"Basic realm="a", Bearer realm="http://127.0.0.2:1/t""#)
            .expect("second challenge");
        assert_eq!(c.realm, "http://127.0.0.2:1/t");
    }
}
