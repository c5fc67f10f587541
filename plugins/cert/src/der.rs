//! Just enough DER to move a P-256 private key between PKCS#8 (what rcgen/ring read and
//! write) and SEC1 `EC PRIVATE KEY` with the namedCurve parameter (what `step` writes and
//! kpaas-mesh writes too; Linkerd 2.14.10's `pkg/tls/codec.go` reads both, and Go refuses a
//! SEC1 key without the curve).

/// id-ecPublicKey (1.2.840.10045.2.1).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 / secp256r1 (1.2.840.10045.3.1.7).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// rsaEncryption (1.2.840.113549.1.1.1), only to name it in errors.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;
const CTX0: u8 = 0xa0;
const CTX1: u8 = 0xa1;

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

/// Reads one TLV; returns (tag, content, rest).
fn read_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let bad = || "malformed DER".to_string();
    let (&tag, rest) = input.split_first().ok_or_else(bad)?;
    let (&first, rest) = rest.split_first().ok_or_else(bad)?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(bad());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// Reads all TLVs of a constructed value's content.
fn read_all(mut content: &[u8]) -> Result<Vec<(u8, &[u8])>, String> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tag, value, rest) = read_tlv(content)?;
        out.push((tag, value));
        content = rest;
    }
    Ok(out)
}

fn write_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// Parses an `ECPrivateKey` (RFC 5915). When `[0]` parameters are present they must name
/// P-256. The public key `[1]` is required (rcgen cannot rebuild a key pair without it).
fn parse_ec_private_key(der: &[u8]) -> Result<P256Key, String> {
    let (tag, content, _) = read_tlv(der)?;
    if tag != SEQUENCE {
        return Err("not an EC private key".into());
    }
    let fields = read_all(content)?;
    let mut private = None;
    let mut public = None;
    for (tag, value) in fields {
        match tag {
            OCTET_STRING => private = Some(value.to_vec()),
            CTX0 => {
                let (t, oid, _) = read_tlv(value)?;
                if t != OID || oid != OID_P256 {
                    return Err("EC key is not on curve P-256 (prime256v1)".into());
                }
            }
            CTX1 => {
                let (t, bits, _) = read_tlv(value)?;
                if t != BIT_STRING || bits.first() != Some(&0) {
                    return Err("malformed EC public key".into());
                }
                public = Some(bits[1..].to_vec());
            }
            _ => {}
        }
    }
    let private = private.ok_or("EC key has no private scalar")?;
    let public =
        public.ok_or("EC key does not carry its public key; re-export it with openssl ec")?;
    if private.len() != 32 || public.len() != 65 || public[0] != 4 {
        return Err("EC key is not a P-256 key".into());
    }
    Ok(P256Key { private, public })
}

/// Parses a PKCS#8 `PrivateKeyInfo` holding a P-256 key.
pub fn parse_pkcs8(der: &[u8]) -> Result<P256Key, String> {
    let (tag, content, _) = read_tlv(der)?;
    if tag != SEQUENCE {
        return Err("not a PKCS#8 private key".into());
    }
    let fields = read_all(content)?;
    let [(INTEGER, _), (SEQUENCE, alg), (OCTET_STRING, key), ..] = fields.as_slice() else {
        return Err("not a PKCS#8 private key".into());
    };
    let alg = read_all(alg)?;
    match alg.as_slice() {
        [(OID, oid), rest @ ..] if *oid == OID_EC_PUBLIC_KEY => {
            if let [(OID, curve), ..] = rest
                && *curve != OID_P256
            {
                return Err("EC key is not on curve P-256 (prime256v1)".into());
            }
        }
        [(OID, oid), ..] if *oid == OID_RSA => {
            return Err("key is RSA, expected ECDSA P-256".into());
        }
        _ => return Err("key is not an ECDSA key, expected ECDSA P-256".into()),
    }
    parse_ec_private_key(key)
}

/// Parses a SEC1 `EC PRIVATE KEY`.
pub fn parse_sec1(der: &[u8]) -> Result<P256Key, String> {
    parse_ec_private_key(der)
}

/// SEC1 `ECPrivateKey` with the namedCurve parameter and the public key, as `step` and
/// `openssl ec` write it.
pub fn to_sec1(key: &P256Key) -> Vec<u8> {
    write_tlv(
        SEQUENCE,
        &concat(&[
            write_tlv(INTEGER, &[1]),
            write_tlv(OCTET_STRING, &key.private),
            write_tlv(CTX0, &write_tlv(OID, OID_P256)),
            write_tlv(
                CTX1,
                &write_tlv(BIT_STRING, &[&[0u8][..], &key.public].concat()),
            ),
        ]),
    )
}

/// PKCS#8 `PrivateKeyInfo` for ring/rcgen (the inner key without `[0]`, as ring writes it).
pub fn to_pkcs8(key: &P256Key) -> Vec<u8> {
    let inner = write_tlv(
        SEQUENCE,
        &concat(&[
            write_tlv(INTEGER, &[1]),
            write_tlv(OCTET_STRING, &key.private),
            write_tlv(
                CTX1,
                &write_tlv(BIT_STRING, &[&[0u8][..], &key.public].concat()),
            ),
        ]),
    );
    write_tlv(
        SEQUENCE,
        &concat(&[
            write_tlv(INTEGER, &[0]),
            write_tlv(
                SEQUENCE,
                &concat(&[write_tlv(OID, OID_EC_PUBLIC_KEY), write_tlv(OID, OID_P256)]),
            ),
            write_tlv(OCTET_STRING, &inner),
        ]),
    )
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

    #[test]
    fn sec1_carries_the_named_curve() {
        let der = to_sec1(&sample());
        let oid_tlv = write_tlv(OID, OID_P256);
        assert!(der.windows(oid_tlv.len()).any(|w| w == oid_tlv));
    }

    #[test]
    fn long_lengths_are_encoded_and_read() {
        let content = vec![7u8; 300];
        let tlv = write_tlv(OCTET_STRING, &content);
        assert_eq!(&tlv[..4], &[OCTET_STRING, 0x82, 0x01, 0x2c]);
        let (tag, value, rest) = read_tlv(&tlv).unwrap();
        assert_eq!((tag, value, rest.len()), (OCTET_STRING, &content[..], 0));
    }

    #[test]
    fn other_curves_and_garbage_are_refused() {
        let mut der = to_sec1(&sample());
        // Change the curve OID's last byte: 1.2.840.10045.3.1.8 is not P-256.
        let pos = der
            .windows(OID_P256.len())
            .position(|w| w == OID_P256)
            .unwrap();
        der[pos + OID_P256.len() - 1] = 0x08;
        assert!(parse_sec1(&der).unwrap_err().contains("P-256"));
        assert!(parse_sec1(&[0x30, 0x05, 1]).is_err());
        assert!(parse_pkcs8(b"garbage").is_err());
    }
}
