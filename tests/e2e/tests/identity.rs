//! End-to-end test of Linkerd's REAL identity controller on the test bed (issue 15): the pod runner runs the
//! stable-2.14.10 `controller identity` for the `linkerd-identity` pod that `up` made, with the issuer Secret and
//! trust roots `up` installed mounted where the container expects them. The test then does what a proxy does at
//! start-up: it asks for a ServiceAccount token with audience `identity.l5d.io`, makes an ECDSA P-256 key and CSR
//! for `<sa>.<ns>.serviceaccount.identity.linkerd.cluster.local`, and calls the gRPC API
//! `io.linkerd.proxy.identity.Identity/Certify` at the identity pod's IP (port 8080, routed by the runner's veth).
//! The leaf it gets must name that identity and chain to the trust anchor in the tool's certs dir
//! (`openssl verify`). A token of another ServiceAccount is refused.
//!
//! The gRPC messages (in `common`) are written by hand (prost derives; no protoc), from linkerd2-proxy-api's identity.proto.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kpaas_mesh_e2e::{testbed_or_skip, with_timeout};
use kube::api::{Api, ListParams};
use serde_json::json;

const ALL: &str = "cert,control-plane,multicluster,netfix,smi,sample";

#[tokio::test]
async fn real_identity_controller_certifies_a_proxy_csr_with_the_issuer_up_installed() {
    let bed = testbed_or_skip!();
    let tool = Tool::new(bed.clone());
    let clusters = ["cluster1", "cluster2"];
    let _ = tool.run("down", &clusters, &["--only", ALL]);
    tool.ok("up", &clusters, &["--only", ALL]);
    let c1 = bed.client("cluster1").await.unwrap();

    // The identity pod `up` made; the runner serves Linkerd's identity controller at its pod IP.
    let pods = Api::<Pod>::namespaced(c1.clone(), "linkerd")
        .list(&ListParams::default().labels("linkerd.io/control-plane-component=identity"))
        .await
        .unwrap();
    let pod = pods.items.first().expect("an identity pod");
    let ip = pod.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let addr = format!("{ip}:8080");

    let ns = bed.namespace("cluster1", "identity").await.unwrap();
    let identity = format!(
        "default.{}.serviceaccount.identity.linkerd.cluster.local",
        ns.name
    );
    // The namespace's default ServiceAccount is made by the controller-manager; wait until it is there.
    kpaas_mesh_e2e::wait_for(
        Api::<ServiceAccount>::namespaced(c1.clone(), &ns.name),
        "default",
        |s: Option<&ServiceAccount>| s.is_some(),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let token = sa_token(&c1, &ns.name, "default").await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    // As the proxy makes it: CN and DNS SAN = the identity.
    let mut params = rcgen::CertificateParams::new(vec![identity.clone()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, identity.clone());
    let csr = params.serialize_request(&key).unwrap();
    let request = CertifyRequest {
        identity: identity.clone(),
        token: token.clone().into_bytes(),
        certificate_signing_request: csr.der().to_vec(),
    };

    // The controller may still be starting (the runner started it when kwok marked the pod running): retry
    // while it is unavailable, with a deadline.
    let resp = with_timeout(
        Duration::from_secs(90),
        format!("Certify at {addr}"),
        async {
            loop {
                match certify(&addr, request.clone()).await {
                    Ok(r) => return Ok(r),
                    Err(s) if s.code() == tonic::Code::Unavailable => {
                        tokio::time::sleep(Duration::from_millis(500)).await
                    }
                    Err(s) => anyhow::bail!("Certify failed: {s}"),
                }
            }
        },
    )
    .await
    .unwrap();

    // The leaf names the proxy's identity and chains to the tool's trust anchor through the issuer.
    let (_, leaf) = x509_parser::parse_x509_certificate(&resp.leaf_certificate).unwrap();
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .map(|s| {
            s.value
                .general_names
                .iter()
                .map(|n| n.to_string())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        sans.iter().any(|s| s.contains(&identity)),
        "leaf SANs {sans:?}"
    );
    assert!(
        resp.valid_until.as_ref().is_some_and(|t| t.seconds > 0),
        "{:?}",
        resp.valid_until
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("leaf.pem"),
        pem("CERTIFICATE", &resp.leaf_certificate),
    )
    .unwrap();
    let chain: String = resp
        .intermediate_certificates
        .iter()
        .map(|c| pem("CERTIFICATE", c))
        .collect();
    assert!(!chain.is_empty(), "no intermediate (issuer) certificate");
    std::fs::write(dir.path().join("chain.pem"), chain).unwrap();
    let out = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(tool.certs_dir().join("ca.crt"))
        .arg("-untrusted")
        .arg(dir.path().join("chain.pem"))
        .arg(dir.path().join("leaf.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the leaf does not chain to the trust anchor: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A token of one ServiceAccount does not buy the identity of another.
    let other = CertifyRequest {
        identity: format!(
            "other.{}.serviceaccount.identity.linkerd.cluster.local",
            ns.name
        ),
        ..request.clone()
    };
    let err = certify(&addr, other).await.unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    assert_ne!(err.code(), tonic::Code::Unavailable, "{err}");

    ns.delete().await.unwrap();
    tool.ok("down", &clusters, &["--only", ALL]);
}

const IDENTITY_PODS: &str = "linkerd.io/control-plane-component=identity";

/// Puts `crt`/`key` into cluster1's `linkerd-identity-issuer` Secret and restarts the identity pod (the way an
/// operator rolls the identity controller), so the real controller starts with them; returns the new pod.
async fn install_issuer(client: &kube::Client, crt: &str, key: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), "linkerd")
        .patch(
            "linkerd-identity-issuer",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"data": {"crt.pem": b64(crt), "key.pem": b64(key)}})),
        )
        .await
        .unwrap();
    let old = wait_pod(client, "linkerd", IDENTITY_PODS, None).await;
    Api::<Pod>::namespaced(client.clone(), "linkerd")
        .delete(&old, &Default::default())
        .await
        .unwrap();
    wait_pod(client, "linkerd", IDENTITY_PODS, Some(&old)).await
}

/// `openssl <args> -in <key file>`: a private key rewritten by openssl.
fn openssl_key(args: &[&str], path: &std::path::Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .arg("-in")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A key in the SEC1 `EC PRIVATE KEY` form, from rcgen's PKCS#8.
fn sec1(pkcs8: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    std::fs::write(&path, pkcs8).unwrap();
    let text = openssl_key(&["pkey", "-traditional"], &path);
    assert!(text.starts_with("-----BEGIN EC PRIVATE KEY-----"), "{text}");
    text
}

/// An issuer certificate (CN as kpaas-mesh and `step` make it) signed by `ca`, changed by `edit`; its key as
/// SEC1.
fn issuer_signed_by(
    ca: &rcgen::Issuer<'_, rcgen::KeyPair>,
    edit: impl FnOnce(&mut rcgen::CertificateParams),
) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "identity.linkerd.cluster.local");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    edit(&mut params);
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), sec1(&key.serialize_pem()))
}

/// The private key of a PEM file as PKCS#8.
fn pkcs8(path: &std::path::Path) -> String {
    openssl_key(&["pkcs8", "-topk8", "-nocrypt"], path)
}

#[tokio::test]
async fn real_identity_controller_judges_broken_issuers_and_check_names_the_cause() {
    let bed = testbed_or_skip!();
    let tool = Tool::new(bed.clone());
    let clusters = ["cluster1", "cluster2"];
    const CP: &str = "cert,control-plane";
    let _ = tool.run("down", &clusters, &["--only", ALL]);
    tool.ok("up", &clusters, &["--only", CP]);
    let c1 = bed.client("cluster1").await.unwrap();
    let certs = tool.certs_dir();
    let read = |f: &str| std::fs::read_to_string(certs.join(f)).unwrap();
    let anchor = rcgen::Issuer::from_ca_cert_pem(
        &read("ca.crt"),
        rcgen::KeyPair::from_pem(&pkcs8(&certs.join("ca.key"))).unwrap(),
    )
    .unwrap();
    const ISSUER_ROW: &str =
        "every cluster's issuer chains to the trust anchor and is valid for at least 60 days";
    let issuer_row = |tool: &Tool| check_row(tool, &clusters, CP, ISSUER_ROW);

    // 1. The issuer `up` made, its key re-encoded as PKCS#8: Linkerd 2.14.10 reads PKCS#8 too (pkg/tls/codec.go
    //    DecodePEMKey), so its identity controller starts and certifies; check agrees.
    let pod = install_issuer(&c1, &read("issuer.crt"), &pkcs8(&certs.join("issuer.key"))).await;
    wait_log(
        &bed,
        "cluster1",
        "linkerd",
        &pod,
        "starting gRPC server on :8080",
    );
    let row = issuer_row(&tool);
    assert_eq!(row["status"], "ok", "{row}");

    // 2.-4. What Linkerd's identity controller refuses at start-up (pkg/identity/service.go loadCredentials), in
    //    its own words in the runner's log of the new pod, and the cause check names for the same Secret.
    let (expired_crt, expired_key) = issuer_signed_by(&anchor, |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let (leaf_crt, leaf_key) = issuer_signed_by(&anchor, |p| p.is_ca = rcgen::IsCa::NoCa);
    let other_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut other_params = rcgen::CertificateParams::default();
    other_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(1));
    let other_anchor = rcgen::Issuer::new(other_params, other_key);
    let (foreign_crt, foreign_key) = issuer_signed_by(&other_anchor, |_| {});
    let cases = [
        (
            "expired",
            expired_crt,
            expired_key,
            "x509: certificate has expired or is not yet valid",
            "cluster1: linkerd-identity-issuer expired on 2021-01-01",
        ),
        (
            "not a CA",
            leaf_crt,
            leaf_key,
            "it must be an intermediate-CA, but it is not",
            "cluster1: linkerd-identity-issuer is not a CA certificate",
        ),
        (
            "signed by another anchor",
            foreign_crt,
            foreign_key,
            "x509: certificate signed by unknown authority",
            "cluster1: linkerd-identity-issuer is not signed by any root in linkerd-identity-trust-roots",
        ),
    ];
    for (what, crt, key, linkerd_says, check_says) in cases {
        let pod = install_issuer(&c1, &crt, &key).await;
        wait_log(&bed, "cluster1", "linkerd", &pod, linkerd_says);
        let row = issuer_row(&tool);
        assert_eq!(row["status"], "fail", "{what}: {row}");
        assert!(
            row["detail"].as_str().unwrap().contains(check_says),
            "{what}: {row}"
        );
    }

    tool.ok("down", &clusters, &["--only", ALL]);
}

/// A trust anchor of another key type than P-256 (issue 12: "every trust-anchor key type that the release's
/// identity controller accepts"): an RSA 3072 root made by openssl is imported with `certs generate`, `up` installs
/// it with an ECDSA P-256 issuer signed by it, and Linkerd's real identity controller starts with that pair (it
/// verifies the issuer against the roots at start-up, `pkg/identity/service.go` loadCredentials) and certifies a
/// proxy CSR whose leaf verifies against the RSA root.
#[tokio::test]
async fn real_identity_controller_runs_on_an_rsa_trust_anchor() {
    let bed = testbed_or_skip!();
    let tool = Tool::new(bed.clone());
    let clusters = ["cluster1", "cluster2"];
    const CP: &str = "cert,control-plane";
    let _ = tool.run("down", &clusters, &["--only", ALL]);
    let src = tempfile::tempdir().unwrap();
    let (key, crt) = (src.path().join("root.key"), src.path().join("root.crt"));
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:3072",
        "-out",
        key.to_str().unwrap(),
    ]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-sha256",
        "-days",
        "3650",
        "-subj",
        "/CN=root.linkerd.cluster.local",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        crt.to_str().unwrap(),
    ]);
    let bin = target_dir().join("kubectl-kpaas_mesh");
    let out = std::process::Command::new(&bin)
        .args(["--plugin-dir"])
        .arg(tool.plugins.path())
        .args(["certs", "generate", "--out"])
        .arg(tool.certs_dir())
        .arg("--anchor-cert")
        .arg(&crt)
        .arg("--anchor-key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tool.ok("up", &clusters, &["--only", CP]);
    let inspect = tool.ok("status", &clusters, &["--only", "cert"]);
    assert!(inspect.contains("RSA 3072"), "{inspect}");

    let ns = bed.namespace("cluster1", "rsa").await.unwrap();
    let c1 = bed.client("cluster1").await.unwrap();
    kpaas_mesh_e2e::wait_for(
        Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(c1.clone(), &ns.name),
        "default",
        |s: Option<&k8s_openapi::api::core::v1::ServiceAccount>| s.is_some(),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let (leaf, chain) = proxy_leaf(&bed, "cluster1", &ns.name, "default").await;
    let root = std::fs::read_to_string(&crt).unwrap();
    verifies(&leaf, &chain, &root).unwrap();
    let row = check_row(
        &tool,
        &clusters,
        CP,
        "every cluster's issuer chains to the trust anchor and is valid for at least 60 days",
    );
    assert_eq!(row["status"], "ok", "{row}");
    ns.delete().await.unwrap();
    tool.ok("down", &clusters, &["--only", ALL]);
}
