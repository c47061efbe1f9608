//! NaCl's `crypto_secretbox` (XSalsa20 + Poly1305), the cipher of cosign's key files: the
//! first 32 bytes of the XSalsa20 keystream key Poly1305, the rest encrypts the message, and
//! the sealed box is the 16-byte tag followed by the ciphertext (as Go's
//! `golang.org/x/crypto/nacl/secretbox` and libsodium lay it out).

use poly1305::Poly1305;
use poly1305::universal_hash::KeyInit;
use salsa20::XSalsa20;
use salsa20::cipher::{KeyIvInit, StreamCipher};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Key size in bytes.
pub(crate) const KEY_LEN: usize = 32;
/// Nonce size in bytes.
pub(crate) const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The cipher positioned after the Poly1305 key, and that key's authenticator.
fn start(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN]) -> (XSalsa20, Poly1305) {
    let mut cipher = XSalsa20::new(key.into(), nonce.into());
    let mut mac_key = Zeroizing::new([0u8; 32]);
    cipher.apply_keystream(&mut mac_key[..]);
    let mac = Poly1305::new((&*mac_key).into());
    (cipher, mac)
}

/// Encrypts and authenticates `plaintext`: tag ‖ ciphertext.
pub(crate) fn seal(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    let (mut cipher, mac) = start(key, nonce);
    let mut sealed = vec![0u8; TAG_LEN + plaintext.len()];
    sealed[TAG_LEN..].copy_from_slice(plaintext);
    cipher.apply_keystream(&mut sealed[TAG_LEN..]);
    let tag = mac.compute_unpadded(&sealed[TAG_LEN..]);
    sealed[..TAG_LEN].copy_from_slice(&tag);
    sealed
}

/// Checks the tag (in constant time) and only then decrypts; `None` when it does not match.
pub(crate) fn open(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < TAG_LEN {
        return None;
    }
    let (tag, ciphertext) = sealed.split_at(TAG_LEN);
    let (mut cipher, mac) = start(key, nonce);
    let expected = mac.compute_unpadded(ciphertext);
    if !bool::from(expected.as_slice().ct_eq(tag)) {
        return None;
    }
    let mut plaintext = Zeroizing::new(ciphertext.to_vec());
    cipher.apply_keystream(&mut plaintext);
    Some(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nacl_test_vector() {
        // The secretbox vector of NaCl's tests (tests/secretbox.c, also libsodium's
        // test/default/secretbox.c): "firstkey", "nonce", the 131-byte message and the box.
        let key: [u8; 32] =
            hex::decode("1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389")
                .unwrap()
                .try_into()
                .unwrap();
        let nonce: [u8; 24] = hex::decode("69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37")
            .unwrap()
            .try_into()
            .unwrap();
        let message = hex::decode(concat!(
            "be075fc53c81f2d5cf141316ebeb0c7b5228c52a4c62cbd44b66849b64244ffc",
            "e5ecbaaf33bd751a1ac728d45e6c61296cdc3c01233561f41db66cce314adb31",
            "0e3be8250c46f06dceea3a7fa1348057e2f6556ad6b1318a024a838f21af1fde",
            "048977eb48f59ffd4924ca1c60902e52f0a089bc76897040e082f93776384864",
            "5e0705",
        ))
        .unwrap();
        let sealed = hex::decode(concat!(
            "f3ffc7703f9400e52a7dfb4b3d3305d9",
            "8e993b9f48681273c29650ba32fc76ce48332ea7164d96a4476fb8c531a1186a",
            "c0dfc17c98dce87b4da7f011ec48c97271d2c20f9b928fe2270d6fb863d51738",
            "b48eeee314a7cc8ab932164548e526ae90224368517acfeabd6bb3732bc0e9da",
            "99832b61ca01b6de56244a9e88d5f9b37973f622a43d14a6599b1f654cb45a74",
            "e355a5",
        ))
        .unwrap();
        assert_eq!(seal(&key, &nonce, &message), sealed);
        assert_eq!(open(&key, &nonce, &sealed).unwrap().as_slice(), message);

        let mut tampered = sealed.clone();
        tampered[40] ^= 1;
        assert!(open(&key, &nonce, &tampered).is_none());
        assert!(open(&key, &nonce, &sealed[..15]).is_none());
        let mut other_key = key;
        other_key[0] ^= 1;
        assert!(open(&other_key, &nonce, &sealed).is_none());
    }
}
