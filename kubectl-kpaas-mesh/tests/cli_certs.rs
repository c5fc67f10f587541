//! The host binary end to end without a cluster: the cert plugin loaded from a temporary
//! plugin directory through the real loader, `certs generate/inspect` checked with openssl,
//! `plugins list`, `up --dry-run` and the refusal to half-apply `up`.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn plugins_list_shows_the_cert_plugin_from_a_plugin_dir() {
    let plugins = plugin_dir(&[&cert_plugin()]);
    let home = tempfile::tempdir().unwrap();
    let dir = plugins.path().to_str().unwrap();
    let out = host(
        &["--plugin-dir", dir, "plugins", "list", "-o", "json"],
        home.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let p = &doc["plugins"][0];
    assert_eq!(p["name"], "cert");
    assert_eq!(p["stage"], "cert");
    assert_eq!(p["abi_version"], kpaas_mesh_plugin_api::ABI_VERSION);
    assert!(p["path"].as_str().unwrap().starts_with(dir));
    assert_eq!(doc["errors"].as_array().unwrap().len(), 0);
    assert_eq!(doc["searched"][0]["origin"], "--plugin-dir");

    // The same directory through $KPAAS_MESH_PLUGIN_PATH.
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-kpaas_mesh"))
        .args(["plugins", "list"])
        .env("KPAAS_MESH_PLUGIN_PATH", format!("/nonexistent:{dir}"))
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("libkpaas_mesh_cert.so"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_world_writable_plugin_dir_is_refused() {
    let plugins = plugin_dir(&[&cert_plugin()]);
    std::fs::set_permissions(plugins.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = host(
        &[
            "--plugin-dir",
            plugins.path().to_str().unwrap(),
            "plugins",
            "list",
        ],
        home.path(),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("world-writable"), "{}", stderr(&out));
}

#[test]
fn certs_generate_makes_what_linkerd_reads() {
    let plugins = plugin_dir(&[&cert_plugin()]);
    let home = tempfile::tempdir().unwrap();
    let certs = home.path().join("linkerd/certs");
    let pd = plugins.path().to_str().unwrap();
    let out = host(
        &[
            "--plugin-dir",
            pd,
            "certs",
            "generate",
            "--out",
            certs.to_str().unwrap(),
        ],
        home.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&certs), 0o700);
    assert_eq!(mode(&certs.join("ca.key")), 0o600);
    assert_eq!(mode(&certs.join("issuer.key")), 0o600);
    assert_eq!(mode(&certs.join("ca.crt")), 0o644);

    let ca = certs.join("ca.crt");
    let issuer = certs.join("issuer.crt");
    // The chain verifies with openssl.
    let verify = run_ok(
        Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&ca)
            .arg(&issuer),
    );
    assert!(verify.contains(": OK"), "{verify}");
    // The extensions are the step profiles'.
    let text = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&ca),
    );
    assert!(
        text.contains("Subject: CN = root.linkerd.cluster.local"),
        "{text}"
    );
    assert!(text.contains("CA:TRUE, pathlen:1"), "{text}");
    assert!(text.contains("X509v3 Key Usage: critical"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
    assert!(text.contains("NIST CURVE: P-256"), "{text}");
    let text = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(&issuer),
    );
    assert!(
        text.contains("Subject: CN = identity.linkerd.cluster.local"),
        "{text}"
    );
    assert!(
        text.contains("Issuer: CN = root.linkerd.cluster.local"),
        "{text}"
    );
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
    // Keys: EC PRIVATE KEY with the curve OID, matching their certificates.
    for (key, cert) in [("ca.key", &ca), ("issuer.key", &issuer)] {
        let key = certs.join(key);
        let pem = std::fs::read_to_string(&key).unwrap();
        assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----"), "{pem}");
        let ec = run_ok(
            Command::new("openssl")
                .args(["ec", "-noout", "-text", "-in"])
                .arg(&key),
        );
        assert!(ec.contains("ASN1 OID: prime256v1"), "{ec}");
        let from_key = run_ok(
            Command::new("openssl")
                .args(["ec", "-pubout", "-in"])
                .arg(&key),
        );
        let from_cert = run_ok(
            Command::new("openssl")
                .args(["x509", "-noout", "-pubkey", "-in"])
                .arg(cert),
        );
        assert_eq!(from_key, from_cert, "{} does not match", key.display());
    }

    // A second run reuses everything.
    let before = std::fs::read(&issuer).unwrap();
    let out = host(
        &[
            "--plugin-dir",
            pd,
            "certs",
            "generate",
            "--out",
            certs.to_str().unwrap(),
        ],
        home.path(),
    );
    assert!(out.status.success());
    assert!(stdout(&out).contains("reusing issuer"), "{}", stdout(&out));
    assert_eq!(std::fs::read(&issuer).unwrap(), before);

    // inspect: a table and passing checks.
    let out = host(
        &[
            "--plugin-dir",
            pd,
            "certs",
            "inspect",
            certs.to_str().unwrap(),
        ],
        home.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("identity.linkerd.cluster.local"), "{s}");
    assert!(s.contains("Status check results are √"), "{s}");
}

#[test]
fn certs_generate_imports_an_openssl_anchor_and_rejects_weak_rsa() {
    let plugins = plugin_dir(&[&cert_plugin()]);
    let pd = plugins.path().to_str().unwrap();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // An anchor made by openssl the way step's root-ca profile makes it.
    run_ok(Command::new("openssl").current_dir(h).args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "root.key",
        "-out",
        "root.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=root.linkerd.cluster.local",
        "-addext",
        "basicConstraints=critical,CA:TRUE,pathlen:1",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]));
    let out_dir = h.join("certs");
    let out = host(
        &[
            "--plugin-dir",
            pd,
            "certs",
            "generate",
            "--out",
            out_dir.to_str().unwrap(),
            "--anchor-cert",
            h.join("root.crt").to_str().unwrap(),
            "--anchor-key",
            h.join("root.key").to_str().unwrap(),
            "--issuer-validity",
            "48h",
        ],
        h,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    run_ok(
        Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(h.join("root.crt"))
            .arg(out_dir.join("issuer.crt")),
    );
    // The imported key is rewritten as EC PRIVATE KEY for Linkerd, the issuer lives 48h,
    // so inspect warns (under 60 days) but passes.
    assert!(
        std::fs::read_to_string(out_dir.join("ca.key"))
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY")
    );
    let out = host(
        &[
            "--plugin-dir",
            pd,
            "certs",
            "inspect",
            out_dir.to_str().unwrap(),
        ],
        h,
    );
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("‼ issuer is valid for at least 60 days"),
        "{}",
        stdout(&out)
    );

    // An RSA anchor key (with its certificate) is refused in one line.
    run_ok(Command::new("openssl").current_dir(h).args([
        "req",
        "-x509",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-keyout",
        "rsa.key",
        "-out",
        "rsa.crt",
        "-days",
        "30",
        "-subj",
        "/CN=rsa",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
    ]));
    let out = host(
        &[
            "--plugin-dir",
            pd,
            "certs",
            "generate",
            "--out",
            h.join("c2").to_str().unwrap(),
            "--anchor-cert",
            h.join("rsa.crt").to_str().unwrap(),
            "--anchor-key",
            h.join("rsa.key").to_str().unwrap(),
        ],
        h,
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains("key type is RSA 1024; a trust anchor must be RSA (2048 bits or more)"),
        "{err}"
    );
    assert!(!h.join("c2").exists(), "nothing written on error");
}

#[test]
fn up_dry_run_prints_the_plan_redacted_and_names_missing_stages() {
    let plugins = plugin_dir(&[&cert_plugin()]);
    let pd = plugins.path().to_str().unwrap();
    let home = tempfile::tempdir().unwrap();
    let kc = kubeconfig(home.path());
    let certs = home.path().join("certs");
    let args = |extra: &[&str]| {
        let mut v = vec![
            "--plugin-dir",
            pd,
            "up",
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--cluster",
            "cluster1",
            "--cluster",
            "cluster2",
            "--certs-dir",
            certs.to_str().unwrap(),
        ];
        v.extend_from_slice(extra);
        v.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| {
        host(
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
            home.path(),
        )
    };

    let out = run(args(&["--dry-run"]));
    assert!(!out.status.success(), "missing stages fail the dry run");
    let plan = stdout(&out);
    assert!(
        plan.contains("# ── stage cert (up) by plugin cert ──"),
        "{plan}"
    );
    assert!(
        plan.contains(&format!(
            "# write file {}/issuer.key (mode 0600)",
            certs.display()
        )),
        "{plan}"
    );
    assert!(plan.contains("contents: <redacted>"), "{plan}");
    assert!(!plan.contains("PRIVATE KEY"), "keys leaked: {plan}");
    assert!(plan.contains("BEGIN CERTIFICATE"), "{plan}");
    assert!(
        plan.contains("# NOT PLANNED: the control-plane stage plugin is not installed"),
        "{plan}"
    );
    assert!(stderr(&out).contains("error: the control-plane stage plugin is not installed"));
    assert!(!certs.exists(), "dry-run wrote files");

    let out = run(args(&["--dry-run", "--only", "cert", "-o", "json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["steps"][0]["actions"].as_array().unwrap().len(), 4);
    assert!(!stdout(&out).contains("PRIVATE KEY"));

    // Without --dry-run, missing stages stop `up` before anything is done.
    let out = run(args(&[]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("not installed") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!certs.exists(), "up half-applied the cert stage");

    // --only cert runs for real.
    let out = run(args(&["--only", "cert"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(certs.join("issuer.key").exists());
    assert!(stdout(&out).contains("local"), "{}", stdout(&out));
}

#[test]
fn bad_cluster_input_is_one_line_and_exit_1() {
    let home = tempfile::tempdir().unwrap();
    let kc = kubeconfig(home.path());
    let kcs = kc.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["up", "--kubeconfig", kcs, "--cluster", "cluster1"],
            "need at least 2 clusters",
        ),
        (
            &[
                "up",
                "--kubeconfig",
                kcs,
                "--cluster",
                "cluster1",
                "--cluster",
                "cluster1",
            ],
            "given twice",
        ),
        (
            &[
                "up",
                "--kubeconfig",
                kcs,
                "--cluster",
                "cluster1",
                "--cluster",
                "x=nope",
            ],
            "context 'nope' is not in the kubeconfig",
        ),
    ];
    for (args, want) in cases {
        let out = host(args, home.path());
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn verify_and_check_without_their_plugins_fail() {
    let plugins = plugin_dir(&[&cert_plugin()]);
    let pd = plugins.path().to_str().unwrap();
    let home = tempfile::tempdir().unwrap();
    let kc = kubeconfig(home.path());
    let base = ["--plugin-dir", pd];
    let clusters = [
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--cluster",
        "cluster1",
        "--cluster",
        "cluster2",
    ];
    let run = |cmd: &[&str]| {
        let args: Vec<&str> = base
            .iter()
            .chain(cmd)
            .chain(clusters.iter())
            .copied()
            .collect();
        host(&args, home.path())
    };
    let out = run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the sample stage plugin is not installed"),
        "{}",
        stderr(&out)
    );
    let out = run(&["check", "--only", "smi"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the smi stage plugin is not installed"),
        "{}",
        stderr(&out)
    );
}
