//! The subject of a client certificate, as Kubernetes reads it: the user in the common name
//! (CN), the groups in the organisation (O) values.

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::AccessError;

/// What a client certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSubject {
    /// The first CN of the subject, if it has one.
    pub common_name: Option<String>,
    /// Every O of the subject, in order.
    pub organizations: Vec<String>,
}

/// Reads the subject of a DER certificate. The certificate must already have been verified
/// (by the TLS handshake): this only reads it.
pub fn subject_of(der: &[u8]) -> Result<CertificateSubject, AccessError> {
    let (_, certificate) =
        X509Certificate::from_der(der).map_err(|e| AccessError::Certificate(e.to_string()))?;
    let subject = certificate.subject();
    let text = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        attr.as_str()
            .map(str::to_owned)
            .map_err(|_| AccessError::Certificate("a subject name that is not a string".into()))
    };
    let common_name = subject.iter_common_name().next().map(text).transpose()?;
    let organizations = subject
        .iter_organization()
        .map(text)
        .collect::<Result<_, _>>()?;
    Ok(CertificateSubject {
        common_name,
        organizations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cn_is_the_user_and_o_the_groups() {
        // Made with `openssl req -x509 -subj "/CN=alice/O=dev/O=ops"` (rcgen keeps one value
        // per attribute type, so it cannot make two O values).
        let der = include_bytes!("testdata/cn-alice-o-dev-o-ops.der");
        let subject = subject_of(der).unwrap();
        assert_eq!(subject.common_name.as_deref(), Some("alice"));
        assert_eq!(subject.organizations, ["dev", "ops"]);

        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "dev");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let subject = subject_of(cert.der()).unwrap();
        assert_eq!(subject.common_name, None);
        assert!(subject_of(b"not a certificate").is_err());
    }
}
