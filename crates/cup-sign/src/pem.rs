//! Finding the PEM block of a key file.

use p256::pkcs8::der::pem;

use crate::MAX_PEM_BYTES;
use crate::error::KeyError;

/// The first PEM block of `text` whose type is not `EC PARAMETERS` (which `openssl ecparam
/// -genkey` writes before the key), decoded: its type and contents.
pub(crate) fn first_block(text: &[u8]) -> Result<(String, Vec<u8>), KeyError> {
    if text.len() > MAX_PEM_BYTES {
        return Err(KeyError::TooLarge { max: MAX_PEM_BYTES });
    }
    let text =
        std::str::from_utf8(text).map_err(|_| KeyError::NotPem("the file is not text".into()))?;
    let mut rest = text;
    loop {
        let Some(start) = rest.find("-----BEGIN ") else {
            return Err(KeyError::NotPem("no \"-----BEGIN\" line".into()));
        };
        let block = &rest[start..];
        let header_end = block["-----BEGIN ".len()..]
            .find("-----")
            .ok_or_else(|| KeyError::NotPem("an unterminated BEGIN line".into()))?;
        let pem_type = &block["-----BEGIN ".len()..][..header_end];
        let end_line = format!("-----END {pem_type}-----");
        let end = block
            .find(&end_line)
            .ok_or_else(|| KeyError::NotPem(format!("no \"{end_line}\" line")))?
            + end_line.len();
        if pem_type == "EC PARAMETERS" {
            rest = &block[end..];
            continue;
        }
        if block[..end].contains("Proc-Type:") {
            // OpenSSL's legacy PEM encryption (`openssl ec -aes256`): MD5-derived keys,
            // deliberately not read.
            return Err(KeyError::Encryption(format!(
                "{pem_type} with OpenSSL's legacy PEM encryption (Proc-Type, DEK-Info); \
                 convert it with `openssl pkcs8 -topk8 -v2 aes-256-cbc`"
            )));
        }
        let (label, contents) = pem::decode_vec(&block.as_bytes()[..end])
            .map_err(|e| KeyError::NotPem(format!("{pem_type}: {e}")))?;
        return Ok((label.to_owned(), contents));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_ec_parameters_and_refuses_what_is_not_pem() {
        let text = "junk\n-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n-----BEGIN X-----\nAAEC\n-----END X-----\n";
        let (label, contents) = first_block(text.as_bytes()).unwrap();
        assert_eq!(label, "X");
        assert_eq!(contents, [0, 1, 2]);

        assert!(matches!(first_block(b"nothing"), Err(KeyError::NotPem(_))));
        assert!(matches!(
            first_block(b"-----BEGIN X-----\nAAEC\n"),
            Err(KeyError::NotPem(_))
        ));
        assert!(matches!(
            first_block(b"-----BEGIN X-----\n!!!!\n-----END X-----\n"),
            Err(KeyError::NotPem(_))
        ));
        assert!(matches!(
            first_block(&[0xff, 0xfe]),
            Err(KeyError::NotPem(_))
        ));
        let legacy = "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAEC\n-----END EC PRIVATE KEY-----\n";
        assert!(matches!(
            first_block(legacy.as_bytes()),
            Err(KeyError::Encryption(_))
        ));
        let big = vec![b'a'; MAX_PEM_BYTES + 1];
        assert!(matches!(first_block(&big), Err(KeyError::TooLarge { .. })));
    }
}
