//! Trust anchors as the clusters hold them: the certificates of a PEM bundle (Linkerd's
//! `linkerd-identity-trust-roots` ConfigMap, key `ca-bundle.crt`) and their SHA-256
//! fingerprints, so a stage can tell whether a running mesh already trusts an anchor; and the
//! queries for the identity objects a control plane holds (its trust roots and its issuer).

use crate::linkerd::LINKERD_NS;
use kpaas_mesh_plugin_api::FactQuery;

/// The ConfigMap holding the trust roots every proxy and the identity controller verify with.
pub const TRUST_ROOTS_CONFIGMAP: &str = "linkerd-identity-trust-roots";
/// Its key.
pub const TRUST_ROOTS_KEY: &str = "ca-bundle.crt";
/// The Secret the identity controller reads its issuer from (`crt.pem`, `key.pem`).
pub const ISSUER_SECRET: &str = "linkerd-identity-issuer";

/// The query for a cluster's trust roots ConfigMap.
pub fn trust_roots_query(cluster: &str) -> FactQuery {
    crate::facts::object_query(
        cluster,
        "v1",
        "ConfigMap",
        Some(LINKERD_NS),
        TRUST_ROOTS_CONFIGMAP,
    )
}

/// The query for a cluster's issuer Secret.
pub fn issuer_secret_query(cluster: &str) -> FactQuery {
    crate::facts::object_query(cluster, "v1", "Secret", Some(LINKERD_NS), ISSUER_SECRET)
}

/// The bundle in a trust roots ConfigMap (empty when the key is missing).
pub fn roots_bundle(configmap: &serde_json::Value) -> String {
    configmap["data"][TRUST_ROOTS_KEY]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// A Secret's data entry, decoded as UTF-8.
pub fn secret_text(secret: &serde_json::Value, key: &str) -> Option<String> {
    use base64::Engine;
    let b = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
    String::from_utf8(bytes).ok()
}

/// When an object was last written by anyone: the latest `metadata.managedFields[].time`
/// (RFC 3339), else its creation. Used to tell which pods started before a change.
pub fn last_written(object: &serde_json::Value) -> Option<String> {
    let meta = &object["metadata"];
    meta["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["time"].as_str())
        .max()
        .or_else(|| meta["creationTimestamp"].as_str())
        .map(String::from)
}

/// The DER of every `CERTIFICATE` block in `bundle` (other blocks are skipped).
pub fn certificates(bundle: &str) -> Result<Vec<Vec<u8>>, String> {
    let blocks = pem::parse_many(bundle).map_err(|e| format!("unreadable PEM: {e}"))?;
    Ok(blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect())
}

/// `sha256:` and the first 16 hex digits of the certificate's SHA-256 (what `openssl x509
/// -fingerprint -sha256` prints, lower case, without colons, shortened).
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{}", &hex[..16])
}

/// The fingerprints of the certificates in `bundle`.
pub fn fingerprints(bundle: &str) -> Result<Vec<String>, String> {
    Ok(certificates(bundle)?
        .iter()
        .map(|d| fingerprint(d))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    // PEM framing around arbitrary bytes: this module reads PEM blocks and hashes their
    // contents, it does not parse the certificate.
    const ONE: &str = "-----BEGIN CERTIFICATE-----
MIIBOTCB36ADAgECAhQG1dNBrGVGyexq2+ASn7mTyoE5DzAKBggqhkjOPQQDAjAP
MQ0wCwYDVQQDDAR0ZXN0MB4XDTI1MDEwMTAwMDAwMFoXDTM1MDEwMTAwMDAwMFow
DzENMAsGA1UEAwwEdGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABEqTl4iV
b3KqyW0Z0jMjl7rUCJ9k3xH6tXJsN4l6yq2m0m3s6mVn8Q7mS2d0lJrWq8uQ1d0k
Vb9p1m0lZ6m5v2mjEzARMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAw
RgIhAO8m1Vn0yq3bq1m0lZ6m5v2mWq8uQ1d0kVb9p1m0lZ6mAiEA1m0lZ6m5v2mW
q8uQ1d0kVb9p1m0lZ6m5v2mWq8uQ1d0=
-----END CERTIFICATE-----
";

    #[test]
    fn bundles_and_fingerprints() {
        let two =
            format!("{ONE}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{ONE}");
        let certs = certificates(&two).unwrap();
        assert_eq!(certs.len(), 2, "the key block is skipped");
        let fp = fingerprints(&two).unwrap();
        assert_eq!(fp[0], fp[1]);
        assert!(
            fp[0].starts_with("sha256:") && fp[0].len() == 7 + 16,
            "{}",
            fp[0]
        );
        // SHA-256 of the DER, as any tool computes it.
        let d = ring::digest::digest(&ring::digest::SHA256, &certs[0]);
        assert_eq!(&fp[0][7..9], format!("{:02x}", d.as_ref()[0]));
        assert!(certificates("not pem at all").unwrap().is_empty());
    }
}
