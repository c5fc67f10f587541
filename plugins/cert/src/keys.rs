//! A P-256 private key between its two containers, with RustCrypto's `sec1` and `pkcs8`:
//! PKCS#8 `PRIVATE KEY` (what rcgen/ring read and write) and SEC1 `EC PRIVATE KEY` with the
//! namedCurve parameter and the public key (what `step` writes and kpaas-mesh writes too;
//! Linkerd 2.14.10's `pkg/tls/codec.go` reads both, and Go refuses a SEC1 key without the curve).

use pkcs8::der::asn1::ObjectIdentifier;
use pkcs8::der::{Decode, Encode};
use pkcs8::{AlgorithmIdentifierRef, PrivateKeyInfo};
use sec1::{EcParameters, EcPrivateKey};

/// id-ecPublicKey (1.2.840.10045.2.1).
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1 / secp256r1 (1.2.840.10045.3.1.7).
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// rsaEncryption (1.2.840.113549.1.1.1), only to name it in errors.
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// A P-256 private key: the 32-byte scalar and the uncompressed public point.
#[derive(Clone, PartialEq, Eq)]
pub struct P256Key {
    pub private: Vec<u8>,
    pub public: Vec<u8>,
}

impl std::fmt::Debug for P256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P256Key { .. }")
    }
}

/// The key of a SEC1 `ECPrivateKey`, which must be on P-256 when it names its curve and must
/// carry its public key.
fn from_ec_private_key(k: &EcPrivateKey<'_>) -> Result<P256Key, String> {
    if let Some(EcParameters::NamedCurve(curve)) = k.parameters
        && curve != OID_P256
    {
        return Err("EC key is not on curve P-256 (prime256v1)".into());
    }
    let public = k
        .public_key
        .ok_or("EC key does not carry its public key; re-export it with openssl ec")?;
    if k.private_key.len() != 32 || public.len() != 65 || public[0] != 4 {
        return Err("EC key is not a P-256 key".into());
    }
    Ok(P256Key {
        private: k.private_key.to_vec(),
        public: public.to_vec(),
    })
}

/// Parses a PKCS#8 `PrivateKeyInfo` holding a P-256 key.
pub fn parse_pkcs8(der: &[u8]) -> Result<P256Key, String> {
    let info = PrivateKeyInfo::from_der(der).map_err(|_| "not a PKCS#8 private key".to_string())?;
    match info.algorithm.oid {
        OID_EC_PUBLIC_KEY => {}
        OID_RSA => return Err("key is RSA, expected ECDSA P-256".into()),
        _ => return Err("key is not an ECDSA key, expected ECDSA P-256".into()),
    }
    if let Ok(curve) = info.algorithm.parameters_oid()
        && curve != OID_P256
    {
        return Err("EC key is not on curve P-256 (prime256v1)".into());
    }
    let inner = EcPrivateKey::from_der(info.private_key)
        .map_err(|_| "not an EC private key".to_string())?;
    from_ec_private_key(&inner)
}

/// Parses a SEC1 `EC PRIVATE KEY`.
pub fn parse_sec1(der: &[u8]) -> Result<P256Key, String> {
    let k = EcPrivateKey::from_der(der).map_err(|_| "not an EC private key".to_string())?;
    from_ec_private_key(&k)
}

/// SEC1 `ECPrivateKey` with the namedCurve parameter and the public key, as `step` and
/// `openssl ec` write it.
pub fn to_sec1(key: &P256Key) -> Vec<u8> {
    EcPrivateKey {
        private_key: &key.private,
        parameters: Some(EcParameters::NamedCurve(OID_P256)),
        public_key: Some(&key.public),
    }
    .to_der()
    .expect("a 32-byte scalar and a 65-byte point encode")
}

/// PKCS#8 `PrivateKeyInfo` for ring/rcgen (the inner key without `[0]`, as ring writes it).
pub fn to_pkcs8(key: &P256Key) -> Vec<u8> {
    let inner = EcPrivateKey {
        private_key: &key.private,
        parameters: None,
        public_key: Some(&key.public),
    }
    .to_der()
    .expect("a 32-byte scalar and a 65-byte point encode");
    PrivateKeyInfo {
        algorithm: AlgorithmIdentifierRef {
            oid: OID_EC_PUBLIC_KEY,
            parameters: Some((&OID_P256).into()),
        },
        private_key: &inner,
        public_key: None,
    }
    .to_der()
    .expect("a PKCS#8 key info encodes")
}

/// A trust anchor's private key: P-256 (as kpaas-mesh and `step` make them), or any other key
/// Linkerd's identity controller accepts in a root (Go's crypto/x509: RSA, ECDSA P-384,
/// Ed25519) that ring can sign with. Held as PKCS#8 for rcgen, with the public key bits as
/// they stand in the certificate's subjectPublicKey (RSA: the PKCS#1 `RSAPublicKey`).
#[derive(Clone, PartialEq, Eq)]
pub struct AnchorKey {
    pub pkcs8: Vec<u8>,
    pub public: Vec<u8>,
    /// The P-256 form, for a P-256 key (written back as SEC1 `EC PRIVATE KEY`).
    pub p256: Option<P256Key>,
}

impl std::fmt::Debug for AnchorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnchorKey { .. }")
    }
}

impl From<P256Key> for AnchorKey {
    fn from(k: P256Key) -> Self {
        AnchorKey {
            pkcs8: to_pkcs8(&k),
            public: k.public.clone(),
            p256: Some(k),
        }
    }
}

/// A PKCS#1 `RSAPrivateKey` in a PKCS#8 `PrivateKeyInfo` (rsaEncryption, NULL parameters).
pub fn rsa_pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    PrivateKeyInfo {
        algorithm: AlgorithmIdentifierRef {
            oid: OID_RSA,
            parameters: Some(pkcs8::der::asn1::AnyRef::NULL),
        },
        private_key: pkcs1,
        public_key: None,
    }
    .to_der()
    .expect("a PKCS#8 key info encodes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> P256Key {
        let mut public = vec![4u8];
        public.extend((0..64).map(|i| i as u8));
        P256Key {
            private: (100..132).collect(),
            public,
        }
    }

    #[test]
    fn sec1_and_pkcs8_round_trip() {
        let key = sample();
        assert_eq!(parse_sec1(&to_sec1(&key)).unwrap(), key);
        assert_eq!(parse_pkcs8(&to_pkcs8(&key)).unwrap(), key);
    }

    /// The exact bytes Linkerd and `openssl ec` read: SEQUENCE { 1, OCTET STRING scalar,
    /// [0] { OID prime256v1 }, [1] { BIT STRING 0x00 || point } }.
    #[test]
    fn sec1_is_the_layout_step_and_openssl_write() {
        let key = sample();
        let mut want = vec![0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20];
        want.extend(&key.private);
        want.extend([
            0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
        ]);
        want.extend([0xa1, 0x44, 0x03, 0x42, 0x00]);
        want.extend(&key.public);
        assert_eq!(to_sec1(&key), want);
    }

    /// And the PKCS#8 ring writes: version 0, { id-ecPublicKey, prime256v1 }, the inner key
    /// without its curve parameter.
    #[test]
    fn pkcs8_is_the_layout_ring_writes() {
        let key = sample();
        let der = to_pkcs8(&key);
        let mut head = vec![0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13];
        head.extend([0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]);
        head.extend([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]);
        head.extend([0x04, 0x6d, 0x30, 0x6b, 0x02, 0x01, 0x01, 0x04, 0x20]);
        assert_eq!(&der[..head.len()], &head[..]);
        assert_eq!(der.len(), 0x87 + 3);
    }

    #[test]
    fn other_curves_keys_and_garbage_are_refused() {
        let mut der = to_sec1(&sample());
        // 1.2.840.10045.3.1.8 is not P-256
        let p256 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        let pos = der.windows(p256.len()).position(|w| w == p256).unwrap();
        der[pos + p256.len() - 1] = 0x08;
        assert!(parse_sec1(&der).unwrap_err().contains("P-256"));
        assert!(parse_sec1(&[0x30, 0x05, 1]).is_err());
        assert!(parse_pkcs8(b"garbage").is_err());
        // a SEC1 key without its public key
        let bare = EcPrivateKey {
            private_key: &sample().private,
            parameters: Some(EcParameters::NamedCurve(OID_P256)),
            public_key: None,
        }
        .to_der()
        .unwrap();
        assert!(parse_sec1(&bare).unwrap_err().contains("public key"));
    }
}
