//! Sigstore's trusted root file (`trusted_root.json`): the certificate authorities (Fulcio)
//! and transparency logs (Rekor) a keyless signature is checked against, read offline.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::keys::PublicKey;

/// The only `mediaType` read: the format this crate was written against.
pub const TRUSTED_ROOT_MEDIA_TYPE: &str =
    "application/vnd.dev.sigstore.trustedroot+json;version=0.1";
/// The largest trusted root file read (1 MiB); Sigstore's public one is about 10 KiB.
pub const MAX_TRUSTED_ROOT_BYTES: usize = 1024 * 1024;
/// The most certificates in one certificate authority's chain, and in a signature's chain
/// annotation.
pub const MAX_CHAIN_CERTIFICATES: usize = 10;
/// The only transparency log key type whose entries are checked; logs of other key types are
/// kept (so Sigstore's public file reads) but a bundle naming one is refused.
const P256_KEY_DETAILS: &str = "PKIX_ECDSA_P256_SHA_256";

/// Why a trusted root file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustedRootError {
    /// The file is larger than this crate reads.
    #[error("the trusted root is {len} bytes, more than the {max} accepted")]
    TooLarge {
        /// Its size in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON of the trusted root's shape.
    #[error("not a Sigstore trusted root: {0}")]
    Malformed(String),
    /// Another `mediaType` (another version of the format, or another document).
    #[error("trusted root of media type {found:?}; expected {TRUSTED_ROOT_MEDIA_TYPE:?}")]
    MediaType {
        /// The file's `mediaType`.
        found: String,
    },
    /// A certificate authority or a log whose keys or certificates cannot be used.
    #[error("trusted root: {0}")]
    Invalid(String),
}

/// The certificate authorities and transparency logs keyless signatures are verified
/// against, read from Sigstore's `trusted_root.json` ([`TrustedRoot::from_json`]). Timestamp
/// authorities and certificate transparency logs in the file are ignored: verification
/// relies on the transparency log's signed entry timestamp instead.
#[derive(Debug, Clone)]
pub struct TrustedRoot {
    pub(crate) logs: Vec<Log>,
    pub(crate) authorities: Vec<Authority>,
}

/// A transparency log (Rekor) of the trusted root.
#[derive(Debug, Clone)]
pub(crate) struct Log {
    /// The log's ID as the file gives it (`logId.keyId`), which bundles name in hex.
    pub(crate) key_id: Vec<u8>,
    pub(crate) base_url: String,
    /// `None` for a key type this crate does not verify with.
    pub(crate) key: Option<PublicKey>,
    pub(crate) key_details: String,
    pub(crate) valid: Validity,
}

/// A certificate authority (Fulcio) of the trusted root.
#[derive(Debug, Clone)]
pub(crate) struct Authority {
    pub(crate) uri: String,
    /// DER certificates as the file lists them: the issuing certificate first, the root last.
    pub(crate) certificates: Vec<Vec<u8>>,
    pub(crate) valid: Validity,
}

/// A `validFor` range, in Unix seconds; a missing bound (or a missing `validFor`, which
/// the format allows) is open, as Sigstore's own clients read it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Validity {
    pub(crate) start: Option<i64>,
    pub(crate) end: Option<i64>,
}

impl Validity {
    /// Whether `time` is in the range (the end is exclusive).
    pub(crate) fn contains(&self, time: i64) -> bool {
        self.start.is_none_or(|start| time >= start) && self.end.is_none_or(|end| time < end)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRoot {
    media_type: String,
    #[serde(default)]
    tlogs: Vec<RawLog>,
    #[serde(default)]
    certificate_authorities: Vec<RawAuthority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLog {
    #[serde(default)]
    base_url: String,
    public_key: RawPublicKey,
    log_id: RawLogId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPublicKey {
    raw_bytes: String,
    #[serde(default)]
    key_details: String,
    #[serde(default)]
    valid_for: Option<RawValidity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLogId {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAuthority {
    #[serde(default)]
    uri: String,
    cert_chain: RawChain,
    #[serde(default)]
    valid_for: Option<RawValidity>,
}

#[derive(Deserialize)]
struct RawChain {
    certificates: Vec<RawCertificate>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCertificate {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct RawValidity {
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    end: Option<String>,
}

impl TrustedRoot {
    /// Reads a trusted root in Sigstore's format (`mediaType`
    /// [`TRUSTED_ROOT_MEDIA_TYPE`]): its `tlogs` (base64 DER SubjectPublicKeyInfo, `logId`,
    /// `validFor`) and `certificateAuthorities` (base64 DER certificates, issuing one first,
    /// root last, `validFor`). Files over [`MAX_TRUSTED_ROOT_BYTES`] are refused; so is a
    /// certificate that does not parse, a chain of more than [`MAX_CHAIN_CERTIFICATES`], a
    /// P-256 log key that does not parse, and a `validFor` bound that is not RFC 3339 (a
    /// missing `validFor` or bound is open).
    pub fn from_json(bytes: &[u8]) -> Result<TrustedRoot, TrustedRootError> {
        if bytes.len() > MAX_TRUSTED_ROOT_BYTES {
            return Err(TrustedRootError::TooLarge {
                len: bytes.len(),
                max: MAX_TRUSTED_ROOT_BYTES,
            });
        }
        let raw: RawRoot = serde_json::from_slice(bytes)
            .map_err(|e| TrustedRootError::Malformed(e.to_string()))?;
        if raw.media_type != TRUSTED_ROOT_MEDIA_TYPE {
            return Err(TrustedRootError::MediaType {
                found: raw.media_type,
            });
        }
        let invalid = TrustedRootError::Invalid;
        let mut logs = Vec::with_capacity(raw.tlogs.len());
        for (i, log) in raw.tlogs.into_iter().enumerate() {
            let what = format!("tlogs[{i}] ({})", log.base_url);
            let key_id = STANDARD
                .decode(log.log_id.key_id.trim())
                .map_err(|_| invalid(format!("{what}: logId.keyId is not base64")))?;
            let der = STANDARD
                .decode(log.public_key.raw_bytes.trim())
                .map_err(|_| invalid(format!("{what}: publicKey.rawBytes is not base64")))?;
            let key = if log.public_key.key_details == P256_KEY_DETAILS {
                Some(
                    PublicKey::from_spki_der(&der)
                        .map_err(|e| invalid(format!("{what}: public key: {e}")))?,
                )
            } else {
                None
            };
            logs.push(Log {
                key_id,
                base_url: log.base_url,
                key,
                key_details: log.public_key.key_details,
                valid: validity(&log.public_key.valid_for)
                    .map_err(|e| invalid(format!("{what}: validFor: {e}")))?,
            });
        }
        let mut authorities = Vec::with_capacity(raw.certificate_authorities.len());
        for (i, ca) in raw.certificate_authorities.into_iter().enumerate() {
            let what = format!("certificateAuthorities[{i}] ({})", ca.uri);
            let count = ca.cert_chain.certificates.len();
            if count == 0 || count > MAX_CHAIN_CERTIFICATES {
                return Err(invalid(format!(
                    "{what}: {count} certificates; 1 to {MAX_CHAIN_CERTIFICATES} are read"
                )));
            }
            let mut certificates = Vec::with_capacity(count);
            for (j, certificate) in ca.cert_chain.certificates.iter().enumerate() {
                let der = STANDARD
                    .decode(certificate.raw_bytes.trim())
                    .map_err(|_| invalid(format!("{what}: certificate {j} is not base64")))?;
                x509_parser::parse_x509_certificate(&der)
                    .map_err(|e| invalid(format!("{what}: certificate {j}: {e}")))?;
                certificates.push(der);
            }
            // The last certificate is the trust anchor: refuse now one that cannot be.
            let root = rustls_pki_types::CertificateDer::from(certificates[count - 1].as_slice());
            webpki::anchor_from_trusted_cert(&root)
                .map_err(|e| invalid(format!("{what}: root certificate: {e}")))?;
            authorities.push(Authority {
                uri: ca.uri,
                certificates,
                valid: validity(&ca.valid_for)
                    .map_err(|e| invalid(format!("{what}: validFor: {e}")))?,
            });
        }
        Ok(TrustedRoot { logs, authorities })
    }
}

fn validity(raw: &Option<RawValidity>) -> Result<Validity, String> {
    let Some(raw) = raw else {
        return Ok(Validity::default());
    };
    let bound = |name: &str, text: &Option<String>| match text {
        Some(text) => parse_rfc3339(text)
            .map(Some)
            .ok_or_else(|| format!("{name} {text:?} is not an RFC 3339 date-time")),
        None => Ok(None),
    };
    Ok(Validity {
        start: bound("start", &raw.start)?,
        end: bound("end", &raw.end)?,
    })
}

/// An RFC 3339 date-time (`2022-04-13T20:06:15.000Z`, `…+01:00`) as Unix seconds, the
/// fraction dropped. Written here rather than taken from `time` because the workspace builds
/// `time` without its parser, and this is the one date format the file uses.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        rest = &fraction[len..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let zone = [*h1, *h2, *m1, *m2];
            if !zone.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let hours = i64::from(zone[0] - b'0') * 10 + i64::from(zone[1] - b'0');
            let minutes = i64::from(zone[2] - b'0') * 10 + i64::from(zone[3] - b'0');
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    // 60 is a leap second, which Unix time folds into the next one's.
    if day == 0 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-03-01T12:00:00Z"), Some(1_772_366_400));
        assert_eq!(
            parse_rfc3339("2026-03-01T12:00:00.999Z"),
            Some(1_772_366_400)
        );
        assert_eq!(
            parse_rfc3339("2026-03-01T13:00:00+01:00"),
            Some(1_772_366_400)
        );
        assert_eq!(
            parse_rfc3339("2026-03-01T11:30:00-00:30"),
            Some(1_772_366_400)
        );
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        for bad in [
            "",
            "2026-03-01",
            "2026-03-01T12:00:00",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-03-01T24:00:00Z",
            "2026-03-01T12:00:00.Z",
            "2026-03-01T12:00:00+1:00",
            "2026-03-01 12:00:00Z",
            "+026-03-01T12:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_file_is_bounded_and_typed() {
        let big = vec![b' '; MAX_TRUSTED_ROOT_BYTES + 1];
        assert!(matches!(
            TrustedRoot::from_json(&big),
            Err(TrustedRootError::TooLarge { .. })
        ));
        assert!(matches!(
            TrustedRoot::from_json(b"{"),
            Err(TrustedRootError::Malformed(_))
        ));
        assert!(matches!(
            TrustedRoot::from_json(
                br#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.2"}"#
            ),
            Err(TrustedRootError::MediaType { .. })
        ));
        let empty = TrustedRoot::from_json(
            format!(r#"{{"mediaType":"{TRUSTED_ROOT_MEDIA_TYPE}","ctlogs":[],"timestampAuthorities":[]}}"#)
                .as_bytes(),
        )
        .unwrap();
        assert!(empty.logs.is_empty() && empty.authorities.is_empty());
        let open = Validity::default();
        assert!(open.contains(i64::MIN) && open.contains(i64::MAX));
        let bounded = Validity {
            start: Some(10),
            end: Some(20),
        };
        assert!(!bounded.contains(9) && bounded.contains(10) && !bounded.contains(20));
        let bad_date = format!(
            r#"{{"mediaType":"{TRUSTED_ROOT_MEDIA_TYPE}","tlogs":[{{"publicKey":{{"rawBytes":"","keyDetails":"PKIX_ED25519","validFor":{{"start":"yesterday"}}}},"logId":{{"keyId":""}}}}]}}"#
        );
        assert!(matches!(
            TrustedRoot::from_json(bad_date.as_bytes()),
            Err(TrustedRootError::Invalid(m)) if m.contains("yesterday")
        ));
        // A log of a key type not verified here is kept, keyless, so the file still reads.
        let ed25519 = bad_date.replace(r#","validFor":{"start":"yesterday"}"#, "");
        let root = TrustedRoot::from_json(ed25519.as_bytes()).unwrap();
        assert!(root.logs[0].key.is_none());
        let bad_cert = format!(
            r#"{{"mediaType":"{TRUSTED_ROOT_MEDIA_TYPE}","certificateAuthorities":[{{"uri":"u","certChain":{{"certificates":[{{"rawBytes":"AAAA"}}]}},"validFor":{{"start":"2025-01-01T00:00:00Z"}}}}]}}"#
        );
        assert!(matches!(
            TrustedRoot::from_json(bad_cert.as_bytes()),
            Err(TrustedRootError::Invalid(m)) if m.contains("certificate 0")
        ));
    }
}
