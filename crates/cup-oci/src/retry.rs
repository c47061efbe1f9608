//! Bounded retries of registry requests.
//!
//! Every request step (blob HEAD, blob upload, manifest PUT, manifest GET, blob GET) runs
//! through [`Retrier::run`]: a failure the registry or the network may not repeat is tried
//! again, up to [`RetryPolicy::attempts`] in all, after an exponential backoff with jitter.
//! What is retried is decided from HTTP statuses and transport errors of cup's own requests
//! ([`status_verdict`]) and oci-client's typed errors ([`verdict`]), never from message
//! text: connection errors and resets, timeouts (a stalled transfer ends at
//! [`RetryPolicy::request_timeout`]), bodies cut short, 5xx except 501, 408 and 429.
//! Everything else (401/403, 404, invalid requests, a digest that does not match after a
//! complete download) fails at once.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use oci_client::errors::{OciDistributionError, OciErrorCode};

use crate::Error;
use crate::progress::Progress;

/// How registry requests are retried and timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request step, the first included (1 = no retry).
    pub attempts: u32,
    /// Backoff before the second attempt; doubled for each further one (with jitter).
    pub base_delay: Duration,
    /// Longest wait between attempts, whatever the backoff or a 429 asks for.
    pub max_delay: Duration,
    /// A request whose connection is silent this long (no byte sent back) fails as a
    /// timeout and is retried: a stalled registry cannot hang a push or a pull.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Whether a failed attempt is worth repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Permanent: report it now.
    Fail,
    /// Transient: try again after the backoff (or at least `after`, for a 429).
    Retry { after: Option<Duration> },
}

/// A failed attempt: the error to report and whether to try again.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: Error,
    pub verdict: Verdict,
}

impl Failure {
    pub fn permanent(error: Error) -> Failure {
        Failure {
            error,
            verdict: Verdict::Fail,
        }
    }

    pub fn transient(error: Error) -> Failure {
        Failure {
            error,
            verdict: Verdict::Retry { after: None },
        }
    }
}

/// Errors of this crate raised outside a transfer (store, validation) never retry.
impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::permanent(error)
    }
}

/// oci-client 0.18 drops response headers from its errors, so a 429's `Retry-After`
/// cannot be read; this is the wait registries commonly ask for.
const TOO_MANY_REQUESTS_WAIT: Duration = Duration::from_secs(1);

/// Classifies an oci-client error.
pub(crate) fn verdict(e: &OciDistributionError) -> Verdict {
    match e {
        OciDistributionError::RequestError(re) => match re.status() {
            Some(status) => status_verdict(status.as_u16()),
            // No status: the request never got an answer (connect, reset, timeout, a body
            // cut short). A redirect loop or a request we built wrong would not heal.
            None if re.is_redirect() || re.is_builder() => Verdict::Fail,
            None => Verdict::Retry { after: None },
        },
        OciDistributionError::ServerError { code, .. } => status_verdict(*code),
        OciDistributionError::RegistryError { envelope, .. }
            if envelope
                .errors
                .iter()
                .any(|e| e.code == OciErrorCode::Toomanyrequests) =>
        {
            Verdict::Retry {
                after: Some(TOO_MANY_REQUESTS_WAIT),
            }
        }
        // A body stream that broke mid-way.
        OciDistributionError::IoError(_) => Verdict::Retry { after: None },
        _ => Verdict::Fail,
    }
}

/// 5xx except 501 (the registry does not implement it), 408 and 429 retry; the rest fail.
pub(crate) fn status_verdict(code: u16) -> Verdict {
    match code {
        429 => Verdict::Retry {
            after: Some(TOO_MANY_REQUESTS_WAIT),
        },
        408 => Verdict::Retry { after: None },
        501 => Verdict::Fail,
        500..=599 => Verdict::Retry { after: None },
        _ => Verdict::Fail,
    }
}

/// Runs request steps under a policy, reporting each retry.
pub(crate) struct Retrier<'a> {
    pub policy: &'a RetryPolicy,
    pub progress: &'a dyn Progress,
}

impl Retrier<'_> {
    /// Runs `attempt` until it succeeds, fails permanently, or the attempts are used up;
    /// `step` names the request in log lines ("uploading wasm layer sha256:…").
    pub async fn run<T, F, Fut>(&self, step: &str, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let attempts = self.policy.attempts.max(1);
        let mut number = 1;
        loop {
            let failure = match attempt().await {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let Verdict::Retry { after } = failure.verdict else {
                return Err(failure.error);
            };
            if number >= attempts {
                return Err(if attempts > 1 {
                    exhausted(failure.error, attempts)
                } else {
                    failure.error
                });
            }
            let delay = self.delay(number, after);
            let error = failure.error.to_string();
            tracing::warn!(
                step,
                attempt = number,
                of = attempts,
                retry_in_ms = delay.as_millis() as u64,
                error,
                "registry request failed; retrying"
            );
            self.progress.retry(step, &error, number, attempts, delay);
            tokio::time::sleep(delay).await;
            number += 1;
        }
    }

    /// Exponential backoff from `base_delay` with ±25 % jitter (so clients that failed
    /// together do not retry together), at least `floor`, at most `max_delay`.
    fn delay(&self, failed_attempt: u32, floor: Option<Duration>) -> Duration {
        let exponent = failed_attempt.saturating_sub(1).min(16);
        let backoff = self.policy.base_delay.saturating_mul(1 << exponent);
        let jittered = backoff.mul_f64(0.75 + 0.5 * unit_random());
        jittered
            .max(floor.unwrap_or_default())
            .min(self.policy.max_delay)
    }
}

/// A number in [0, 1) from the process's random hasher keys (no RNG dependency needed
/// for jitter).
fn unit_random() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The last error, saying that it was the last of several attempts.
fn exhausted(error: Error, attempts: u32) -> Error {
    let note = format!(" (gave up after {attempts} attempts)");
    match error {
        Error::Registry {
            registry,
            reference,
            detail,
        } => Error::Registry {
            registry,
            reference,
            detail: detail + &note,
        },
        Error::Unreachable {
            registry,
            reference,
            detail,
        } => Error::Unreachable {
            registry,
            reference,
            detail: detail + &note,
        },
        Error::SizeMismatch {
            what,
            expected,
            actual,
        } => Error::SizeMismatch {
            what: what + &note,
            expected,
            actual,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        for code in [500, 502, 503, 504, 599, 408] {
            assert_eq!(
                status_verdict(code),
                Verdict::Retry { after: None },
                "{code}"
            );
        }
        assert_eq!(
            status_verdict(429),
            Verdict::Retry {
                after: Some(TOO_MANY_REQUESTS_WAIT)
            }
        );
        for code in [400, 401, 403, 404, 405, 413, 416, 501] {
            assert_eq!(status_verdict(code), Verdict::Fail, "{code}");
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let policy = RetryPolicy {
            attempts: 6,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(700),
            request_timeout: Duration::from_secs(1),
        };
        let r = Retrier {
            policy: &policy,
            progress: &crate::NoProgress,
        };
        for _ in 0..50 {
            let first = r.delay(1, None);
            assert!((75..=125).contains(&first.as_millis()), "{first:?}");
            let third = r.delay(3, None);
            assert!((300..=500).contains(&third.as_millis()), "{third:?}");
            assert_eq!(r.delay(10, None), Duration::from_millis(700));
            let floored = r.delay(1, Some(Duration::from_millis(600)));
            assert_eq!(floored, Duration::from_millis(600));
            let capped = r.delay(1, Some(Duration::from_secs(30)));
            assert_eq!(capped, Duration::from_millis(700));
        }
    }

    // Real time with millisecond delays, not tokio's paused clock: its `test-util` feature
    // would change tokio's features between test and normal builds, and so make the quick
    // start and the tests compile everything above tokio twice.
    #[tokio::test(flavor = "current_thread")]
    async fn retries_transient_failures_and_stops_at_the_bound() {
        let policy = RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            ..RetryPolicy::default()
        };
        let r = Retrier {
            policy: &policy,
            progress: &crate::NoProgress,
        };
        let transient = || Error::Registry {
            registry: "r".into(),
            reference: "x".into(),
            detail: "503".into(),
        };
        let mut calls = 0;
        let ok: Result<u32, Error> = r
            .run("step", || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err(Failure::transient(transient()))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(ok.expect("third attempt succeeds"), 3);

        let mut calls = 0;
        let err = r
            .run("step", || {
                calls += 1;
                async { Err::<(), _>(Failure::transient(transient())) }
            })
            .await
            .expect_err("never succeeds");
        assert_eq!(calls, 3);
        assert!(
            err.to_string().contains("gave up after 3 attempts"),
            "{err}"
        );

        let mut calls = 0;
        r.run("step", || {
            calls += 1;
            async { Err::<(), _>(Failure::permanent(transient())) }
        })
        .await
        .expect_err("permanent");
        assert_eq!(calls, 1, "a permanent failure is not retried");
    }
}
