//! CURVE keys: X25519 public keys and key pairs, in raw bytes and in Z85 text (the 40-character
//! form libzmq's `zmq_z85_encode` and czmq certificates use).

use super::CurveError;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Length of a CURVE key in bytes.
pub const KEY_LEN: usize = 32;
/// Length of a CURVE key in Z85 text.
pub const Z85_KEY_LEN: usize = 40;

/// A CURVE (X25519) public key: what a server is known by, and what an authenticated client proves
/// it holds the secret for. `Copy` and hashable so it can key allow-lists and travel with events.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CurvePublicKey([u8; KEY_LEN]);

impl CurvePublicKey {
    /// Wrap 32 raw bytes (any 32 bytes are a valid X25519 point encoding).
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        CurvePublicKey(bytes)
    }

    /// The raw bytes (what travels on the wire).
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Parse the 40-character Z85 form (as printed by libzmq, pyzmq and czmq).
    pub fn from_z85(text: &str) -> Result<Self, CurveError> {
        z85_decode_key(text).map(|k| CurvePublicKey(*k))
    }

    /// The 40-character Z85 form.
    pub fn to_z85(&self) -> String {
        z85::encode(self.0)
    }

    /// Constant-time equality (for comparisons an attacker could time).
    pub fn ct_eq(&self, other: &CurvePublicKey) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for CurvePublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CurvePublicKey({})", self.to_z85())
    }
}

impl std::fmt::Display for CurvePublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_z85())
    }
}

impl std::str::FromStr for CurvePublicKey {
    type Err = CurveError;
    fn from_str(s: &str) -> Result<Self, CurveError> {
        CurvePublicKey::from_z85(s)
    }
}

/// A long-term CURVE key pair (a server's or a client's identity). The secret half is zeroized when
/// the pair is dropped and never printed by `Debug`.
#[derive(Clone)]
pub struct CurveKeyPair {
    public: CurvePublicKey,
    secret: Zeroizing<[u8; KEY_LEN]>,
}

impl CurveKeyPair {
    /// A fresh key pair from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let sk = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        Self::from_secret_bytes(sk.to_bytes())
    }

    /// The key pair for a known secret key (the public key is derived from it).
    pub fn from_secret_bytes(secret: [u8; KEY_LEN]) -> Self {
        let secret = Zeroizing::new(secret);
        let public = crypto_box::SecretKey::from_bytes(*secret).public_key();
        CurveKeyPair {
            public: CurvePublicKey(*public.as_bytes()),
            secret,
        }
    }

    /// The key pair for a secret key in Z85 text.
    pub fn from_secret_z85(text: &str) -> Result<Self, CurveError> {
        Ok(Self::from_secret_bytes(*z85_decode_key(text)?))
    }

    /// The public half.
    pub fn public(&self) -> CurvePublicKey {
        self.public
    }

    /// The secret key in Z85 text (for writing a secret certificate); zeroized on drop.
    pub fn secret_z85(&self) -> Zeroizing<String> {
        Zeroizing::new(z85::encode(*self.secret))
    }

    /// The secret key as RustCrypto wants it (crate-internal: the bytes stay in this crate).
    pub(crate) fn secret_key(&self) -> crypto_box::SecretKey {
        crypto_box::SecretKey::from_bytes(*self.secret)
    }
}

impl std::fmt::Debug for CurveKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurveKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl PartialEq for CurveKeyPair {
    fn eq(&self, other: &Self) -> bool {
        self.public == other.public && bool::from(self.secret.ct_eq(&*other.secret))
    }
}

impl Eq for CurveKeyPair {}

/// Decode a 40-character Z85 key to 32 bytes.
fn z85_decode_key(text: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, CurveError> {
    let text = text.trim();
    if text.len() != Z85_KEY_LEN {
        return Err(CurveError::BadKeyText(format!(
            "a Z85 key has {Z85_KEY_LEN} characters, got {}",
            text.len()
        )));
    }
    let bytes = Zeroizing::new(
        z85::decode(text).map_err(|e| CurveError::BadKeyText(format!("invalid Z85: {e}")))?,
    );
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    if bytes.len() != KEY_LEN {
        return Err(CurveError::BadKeyText(
            "Z85 key does not decode to 32 bytes".into(),
        ));
    }
    out.copy_from_slice(&bytes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Z85 test vector of the Z85 spec (RFC 32) and the key pair from libzmq's test suite
    /// (`tests/testutil_security.cpp`), whose public key is derived from its secret key.
    #[test]
    fn z85_vectors_and_libzmq_key_pair() {
        assert_eq!(
            z85::encode([0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B]),
            "HelloWorld"
        );
        let kp = CurveKeyPair::from_secret_z85("D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs").unwrap();
        assert_eq!(
            kp.public().to_z85(),
            "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
        );
        assert_eq!(
            CurvePublicKey::from_z85("Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID").unwrap(),
            kp.public()
        );
        assert_eq!(CurveKeyPair::from_secret_z85(&kp.secret_z85()).unwrap(), kp);
        assert!(!format!("{kp:?}").contains("D:)Q"));
    }

    #[test]
    fn bad_key_text_is_a_typed_error() {
        assert!(matches!(
            CurvePublicKey::from_z85("short"),
            Err(CurveError::BadKeyText(_))
        ));
        let bad = "\"".repeat(40);
        assert!(matches!(
            CurvePublicKey::from_z85(&bad),
            Err(CurveError::BadKeyText(_))
        ));
    }

    #[test]
    fn generated_pairs_differ_and_round_trip() {
        let a = CurveKeyPair::generate();
        let b = CurveKeyPair::generate();
        assert_ne!(a.public(), b.public());
        let back = CurveKeyPair::from_secret_z85(&a.secret_z85()).unwrap();
        assert_eq!(back.public(), a.public());
        assert!(a.public().ct_eq(&back.public()));
    }
}
