//! Certificate work for the cert stage: generate the trust anchor and issuer the guide makes
//! with `step certificate create` (profiles root-ca and intermediate-ca), parse and validate
//! existing or imported files, and write keys the way Linkerd reads them.

use crate::keys::{self, AnchorKey, P256Key};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

/// The trust anchor's common name, by Linkerd's convention.
pub const ANCHOR_CN: &str = "root.linkerd.cluster.local";
/// The issuer's common name, by Linkerd's convention.
pub const ISSUER_CN: &str = "identity.linkerd.cluster.local";

/// Certificates start a minute in the past so nodes with a slightly late clock accept them.
const BACKDATE: Duration = Duration::minutes(1);

/// What we need to know about one certificate, detached from the parser's borrows.
#[derive(Clone, Debug)]
pub struct CertInfo {
    pub der: Vec<u8>,
    pub pem: String,
    pub subject: String,
    pub issuer: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    pub path_len: Option<u32>,
    pub can_sign_certs: bool,
    /// e.g. "ECDSA P-256", "RSA 2048", "Ed25519".
    pub key_type: String,
    /// The raw subject public key (the uncompressed point for EC keys).
    pub public_key: Vec<u8>,
}

impl CertInfo {
    /// Whole days from `now` until expiry (negative once expired).
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }
}

fn pem_lf(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Parses a PEM file that must hold exactly one certificate. `what` names the file in errors.
pub fn parse_cert(what: &str, pem_text: &str) -> Result<CertInfo, String> {
    let blocks = pem::parse_many(pem_text).map_err(|e| format!("{what}: not PEM ({e})"))?;
    let certs: Vec<_> = blocks.iter().filter(|b| b.tag() == "CERTIFICATE").collect();
    let cert = match certs.as_slice() {
        [one] => *one,
        [] => return Err(format!("{what}: no CERTIFICATE block in the file")),
        more => {
            return Err(format!(
                "{what}: holds {} certificates; expected exactly one",
                more.len()
            ));
        }
    };
    let der = cert.contents().to_vec();
    let (_, x509) = X509Certificate::from_der(&der)
        .map_err(|e| format!("{what}: not a valid X.509 certificate ({e})"))?;
    let cn = |name: &X509Name<'_>| {
        name.iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| name.to_string())
    };
    let bc = x509
        .basic_constraints()
        .map_err(|e| format!("{what}: bad basic constraints ({e})"))?
        .map(|e| e.value.clone());
    let ku = x509
        .key_usage()
        .map_err(|e| format!("{what}: bad key usage ({e})"))?
        .map(|e| e.value.key_cert_sign());
    let spki = x509.public_key();
    let key_type = match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            if curve == Some(x509_parser::oid_registry::OID_EC_P256) {
                "ECDSA P-256".to_string()
            } else if curve == Some(x509_parser::oid_registry::OID_NIST_EC_P384) {
                "ECDSA P-384".to_string()
            } else {
                "ECDSA (not P-256)".to_string()
            }
        }
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
            format!("RSA {}", rsa.key_size())
        }
        Ok(_) if spki.algorithm.algorithm == x509_parser::oid_registry::OID_SIG_ED25519 => {
            "Ed25519".to_string()
        }
        Ok(_) => spki.algorithm.algorithm.to_id_string(),
        Err(_) => "unknown".to_string(),
    };
    Ok(CertInfo {
        pem: pem_lf("CERTIFICATE", &der),
        subject: cn(x509.subject()),
        issuer: cn(x509.issuer()),
        not_before: x509.validity().not_before.to_datetime(),
        not_after: x509.validity().not_after.to_datetime(),
        is_ca: bc.as_ref().is_some_and(|b| b.ca),
        path_len: bc.and_then(|b| b.path_len_constraint),
        can_sign_certs: ku.unwrap_or(true),
        key_type,
        public_key: spki.subject_public_key.data.to_vec(),
        der,
    })
}

/// Parses every certificate of a PEM bundle (a trust-roots ConfigMap during a rotation holds
/// more than one).
pub fn parse_bundle(what: &str, pem_text: &str) -> Result<Vec<CertInfo>, String> {
    let blocks = pem::parse_many(pem_text).map_err(|e| format!("{what}: not PEM ({e})"))?;
    let certs: Vec<CertInfo> = blocks
        .iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| parse_cert(what, &pem_lf("CERTIFICATE", b.contents())))
        .collect::<Result<_, _>>()?;
    if certs.is_empty() {
        return Err(format!("{what}: no CERTIFICATE block"));
    }
    Ok(certs)
}

/// Parses a private key PEM: `EC PRIVATE KEY` (SEC1) or `PRIVATE KEY` (PKCS#8), P-256 only.
pub fn parse_key(what: &str, pem_text: &str) -> Result<P256Key, String> {
    let blocks = pem::parse_many(pem_text).map_err(|e| format!("{what}: not PEM ({e})"))?;
    let block = blocks
        .iter()
        .find(|b| b.tag().ends_with("PRIVATE KEY"))
        .ok_or_else(|| format!("{what}: no PRIVATE KEY block in the file"))?;
    let parsed = match block.tag() {
        "EC PRIVATE KEY" => keys::parse_sec1(block.contents()),
        "PRIVATE KEY" => keys::parse_pkcs8(block.contents()),
        "RSA PRIVATE KEY" => Err("key is RSA, expected ECDSA P-256".to_string()),
        "ENCRYPTED PRIVATE KEY" => Err("key is encrypted; give an unencrypted key".to_string()),
        other => Err(format!("unsupported key type '{other}'")),
    };
    parsed.map_err(|e| format!("{what}: {e}"))
}

/// Parses a trust anchor's private key: P-256 as [`parse_key`] reads it, `RSA PRIVATE KEY`
/// (PKCS#1), or a PKCS#8 `PRIVATE KEY` of RSA, ECDSA P-384 or Ed25519.
pub fn parse_anchor_key(what: &str, pem_text: &str) -> Result<AnchorKey, String> {
    if let Ok(k) = parse_key(what, pem_text) {
        return Ok(k.into());
    }
    let blocks = pem::parse_many(pem_text).map_err(|e| format!("{what}: not PEM ({e})"))?;
    let block = blocks
        .iter()
        .find(|b| b.tag().ends_with("PRIVATE KEY"))
        .ok_or_else(|| format!("{what}: no PRIVATE KEY block in the file"))?;
    let pkcs8 = match block.tag() {
        "RSA PRIVATE KEY" => keys::rsa_pkcs1_to_pkcs8(block.contents()),
        "PRIVATE KEY" => block.contents().to_vec(),
        "EC PRIVATE KEY" => {
            return Err(format!(
                "{what}: an EC key not on P-256 must be given as PKCS#8 (openssl pkcs8 -topk8 -nocrypt)"
            ));
        }
        "ENCRYPTED PRIVATE KEY" => {
            return Err(format!("{what}: key is encrypted; give an unencrypted key"));
        }
        other => return Err(format!("{what}: unsupported key type '{other}'")),
    };
    let pair = KeyPair::try_from(pkcs8.as_slice()).map_err(|_| {
        format!("{what}: not a key kpaas-mesh can sign with (RSA, ECDSA P-256/P-384 or Ed25519)")
    })?;
    Ok(AnchorKey {
        public: pair.public_key_raw().to_vec(),
        pkcs8,
        p256: None,
    })
}

/// A trust anchor's key as written to `ca.key`: P-256 as SEC1 (like `step`), others as PKCS#8.
pub fn anchor_key_pem(key: &AnchorKey) -> String {
    match &key.p256 {
        Some(k) => key_pem(k),
        None => pem_lf("PRIVATE KEY", &key.pkcs8),
    }
}

/// The key as Linkerd reads it: `EC PRIVATE KEY`, SEC1, with the curve OID.
pub fn key_pem(key: &P256Key) -> String {
    pem_lf("EC PRIVATE KEY", &keys::to_sec1(key))
}

fn signing_key(key: &AnchorKey) -> Result<KeyPair, String> {
    KeyPair::try_from(key.pkcs8.as_slice())
        .map_err(|e| format!("cannot use the private key for signing ({e})"))
}

fn new_key() -> Result<(KeyPair, P256Key), String> {
    let pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("cannot generate a P-256 key ({e})"))?;
    let key = keys::parse_pkcs8(&pair.serialize_der())?;
    Ok((pair, key))
}

/// A random positive 128-bit serial (rcgen would otherwise derive it from the public key).
fn random_serial() -> Result<SerialNumber, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a serial ({e})"))?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn ca_params(
    cn: &str,
    path_len: u8,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<CertificateParams, String> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// A freshly made certificate and its key.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key: P256Key,
}

/// The trust anchor: self-signed, CA, pathlen 1, certSign+cRLSign (critical).
pub fn generate_anchor(now: OffsetDateTime, validity: Duration) -> Result<Issued, String> {
    let (pair, key) = new_key()?;
    let params = ca_params(ANCHOR_CN, 1, now, validity)?;
    let cert = params
        .self_signed(&pair)
        .map_err(|e| format!("cannot sign the trust anchor ({e})"))?;
    Ok(Issued {
        cert_pem: pem_lf("CERTIFICATE", cert.der()),
        key,
    })
}

/// The issuer: CA, pathlen 0, certSign+cRLSign, signed by the anchor, with an authority key
/// identifier pointing at the anchor. Never outlives the anchor.
pub fn issue_issuer(
    anchor: &CertInfo,
    anchor_key: &AnchorKey,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<Issued, String> {
    let anchor_pair = signing_key(anchor_key)?;
    let ca = Issuer::from_ca_cert_pem(&anchor.pem, anchor_pair)
        .map_err(|e| format!("cannot use the trust anchor as issuer ({e})"))?;
    let (pair, key) = new_key()?;
    let mut params = ca_params(ISSUER_CN, 0, now, validity)?;
    params.not_after = params.not_after.min(anchor.not_after);
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&pair, &ca)
        .map_err(|e| format!("cannot sign the issuer ({e})"))?;
    Ok(Issued {
        cert_pem: pem_lf("CERTIFICATE", cert.der()),
        key,
    })
}

/// Checks that `issuer`'s signature was made by `anchor`'s key.
pub fn verify_signed_by(issuer: &CertInfo, anchor: &CertInfo) -> Result<(), String> {
    let (_, child) = X509Certificate::from_der(&issuer.der).map_err(|e| e.to_string())?;
    let (_, parent) = X509Certificate::from_der(&anchor.der).map_err(|e| e.to_string())?;
    child
        .verify_signature(Some(parent.public_key()))
        .map_err(|_| "issuer.crt is not signed by the trust anchor in ca.crt".to_string())
}

/// The checks every CA certificate of the chain must pass, as one error line.
/// What a CA certificate is for, which decides the key types it may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A trust anchor: any key Linkerd's identity controller verifies with (Go's crypto/x509
    /// reads RSA, ECDSA and Ed25519 roots) that kpaas-mesh can sign an issuer with.
    Anchor,
    /// The issuer: ECDSA P-256 (Linkerd's identity controller signs leaves with it).
    Issuer,
}

/// Whether `key_type` (as [`parse_cert`] names it) may be used in `role`.
pub fn key_type_allowed(role: Role, key_type: &str) -> bool {
    match role {
        Role::Issuer => key_type == "ECDSA P-256",
        Role::Anchor => {
            matches!(key_type, "ECDSA P-256" | "ECDSA P-384" | "Ed25519")
                || key_type
                    .strip_prefix("RSA ")
                    .and_then(|b| b.parse::<usize>().ok())
                    .is_some_and(|bits| bits >= 2048)
        }
    }
}

pub fn validate_ca(
    what: &str,
    cert: &CertInfo,
    now: OffsetDateTime,
    role: Role,
) -> Result<(), String> {
    if !cert.is_ca {
        return Err(format!(
            "{what}: '{}' is not a CA certificate (basicConstraints CA:TRUE missing)",
            cert.subject
        ));
    }
    if !cert.can_sign_certs {
        return Err(format!(
            "{what}: key usage does not allow certificate signing"
        ));
    }
    if !key_type_allowed(role, &cert.key_type) {
        return Err(match role {
            Role::Issuer => format!(
                "{what}: key type is {}, Linkerd needs ECDSA P-256",
                cert.key_type
            ),
            Role::Anchor => format!(
                "{what}: key type is {}; a trust anchor must be RSA (2048 bits or more), ECDSA P-256 or P-384, or Ed25519",
                cert.key_type
            ),
        });
    }
    if now < cert.not_before {
        return Err(format!(
            "{what}: not valid yet (valid from {})",
            rfc3339(cert.not_before)
        ));
    }
    if now > cert.not_after {
        return Err(format!("{what}: expired on {}", rfc3339(cert.not_after)));
    }
    Ok(())
}

/// Checks that `key` is the private half of `cert`'s public key.
pub fn check_key_matches(what: &str, cert: &CertInfo, key_public: &[u8]) -> Result<(), String> {
    if cert.public_key != key_public {
        return Err(format!(
            "{what}: the private key does not match the certificate"
        ));
    }
    Ok(())
}

/// `2035-11-22T10:00:00Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn anchor_and_issuer_have_the_guide_shape() {
        let t = now();
        let anchor = generate_anchor(t, Duration::days(3650)).unwrap();
        let anchor_info = parse_cert("ca.crt", &anchor.cert_pem).unwrap();
        assert_eq!(anchor_info.subject, ANCHOR_CN);
        assert_eq!(anchor_info.issuer, ANCHOR_CN);
        assert!(anchor_info.is_ca);
        assert_eq!(anchor_info.path_len, Some(1));
        assert_eq!(anchor_info.key_type, "ECDSA P-256");
        assert_eq!(anchor_info.days_left(t), 3649);
        check_key_matches("ca.key", &anchor_info, &anchor.key.public).unwrap();

        let issuer = issue_issuer(
            &anchor_info,
            &anchor.key.clone().into(),
            t,
            Duration::hours(8760),
        )
        .unwrap();
        let info = parse_cert("issuer.crt", &issuer.cert_pem).unwrap();
        assert_eq!(
            (info.subject.as_str(), info.issuer.as_str()),
            (ISSUER_CN, ANCHOR_CN)
        );
        assert_eq!(info.path_len, Some(0));
        assert_eq!(info.days_left(t), 364);
        verify_signed_by(&info, &anchor_info).unwrap();
        check_key_matches("issuer.key", &info, &issuer.key.public).unwrap();
        assert!(check_key_matches("issuer.key", &info, &anchor.key.public).is_err());
        validate_ca("issuer.crt", &info, t, Role::Issuer).unwrap();
    }

    #[test]
    fn issuer_never_outlives_its_anchor() {
        let t = now();
        let anchor = generate_anchor(t, Duration::days(30)).unwrap();
        let info = parse_cert("ca.crt", &anchor.cert_pem).unwrap();
        let issuer =
            issue_issuer(&info, &anchor.key.clone().into(), t, Duration::days(365)).unwrap();
        let issuer = parse_cert("issuer.crt", &issuer.cert_pem).unwrap();
        assert_eq!(issuer.not_after, info.not_after);
    }

    #[test]
    fn serials_are_random_and_positive() {
        let t = now();
        let a = parse_cert(
            "a",
            &generate_anchor(t, Duration::days(1)).unwrap().cert_pem,
        )
        .unwrap();
        let b = parse_cert(
            "b",
            &generate_anchor(t, Duration::days(1)).unwrap().cert_pem,
        )
        .unwrap();
        let serial = |c: &CertInfo| {
            X509Certificate::from_der(&c.der)
                .unwrap()
                .1
                .raw_serial()
                .to_vec()
        };
        assert_ne!(serial(&a), serial(&b));
        assert!(serial(&a)[0] < 0x80 && serial(&a).len() == 16);
    }

    #[test]
    fn keys_are_written_as_sec1_and_read_back_in_both_formats() {
        let anchor = generate_anchor(now(), Duration::days(1)).unwrap();
        let pem_text = key_pem(&anchor.key);
        assert!(
            pem_text.starts_with("-----BEGIN EC PRIVATE KEY-----\n"),
            "{pem_text}"
        );
        assert_eq!(parse_key("k", &pem_text).unwrap(), anchor.key);
        let pkcs8 = pem_lf("PRIVATE KEY", &keys::to_pkcs8(&anchor.key));
        assert_eq!(parse_key("k", &pkcs8).unwrap(), anchor.key);
    }

    #[test]
    fn unusable_inputs_are_named_in_one_line() {
        assert!(
            parse_cert("ca.crt", "hello")
                .unwrap_err()
                .starts_with("ca.crt:")
        );
        let two = format!(
            "{}{}",
            generate_anchor(now(), Duration::days(1)).unwrap().cert_pem,
            generate_anchor(now(), Duration::days(1)).unwrap().cert_pem
        );
        assert!(
            parse_cert("ca.crt", &two)
                .unwrap_err()
                .contains("holds 2 certificates")
        );
        let rsa = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(
            parse_key("ca.key", rsa).unwrap_err(),
            "ca.key: key is RSA, expected ECDSA P-256"
        );
    }
}
