//! Bad input, as a table (issue 14): every row is a command the operator might type (or a state they might be
//! in), the one error line it must print, and its exit code; before and after each row every cluster's object set
//! and helm releases are listed and must be the same (nothing changed). The same rows are the README's table
//! ("Bad input"), which this test checks holds each expected line.
//!
//! Runs on a two-cluster bed where `up --only cert,control-plane` ran, so rows about a running mesh apply.

mod common;

use common::*;
use kpaas_mesh_e2e::{TestBed, testbed_or_skip};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const STAGES: &str = "cert,control-plane";
const CLUSTERS: [&str; 2] = ["cluster1", "cluster2"];

/// One row: what is run, the words its error line must hold, the exit code.
struct Row {
    input: String,
    command: Command,
    expect: &'static str,
    code: i32,
}

type Snapshot = Vec<(BTreeSet<String>, BTreeMap<String, (String, u64)>)>;

async fn snapshot(bed: &TestBed) -> Snapshot {
    let mut out = Vec::new();
    for c in CLUSTERS {
        out.push((
            object_set(bed, c).await.unwrap(),
            helm_releases(bed, c).unwrap(),
        ));
    }
    out
}

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}

/// The kpaas-mesh command a row runs: the bed's environment, the tool's plugins, charts and certificates, then
/// the row's words (a later flag wins over an earlier one).
fn tool_cmd(tool: &Tool, words: &[&str]) -> Command {
    let bin = target_dir().join("kubectl-kpaas_mesh");
    let mut c = tool.bed.command(bin.to_str().unwrap());
    c.arg("--plugin-dir").arg(tool.plugins.path());
    c.args(&words[..1]);
    c.arg("--chart-dir").arg(&tool.charts);
    c.arg("--certs-dir").arg(tool.certs_dir());
    c.args(&words[1..]);
    c
}

/// A command without the tool's plugin directory (rows about plugins).
fn bare_cmd(tool: &Tool, words: &[&str]) -> Command {
    let bin = target_dir().join("kubectl-kpaas_mesh");
    let mut c = tool.bed.command(bin.to_str().unwrap());
    c.env("HOME", "/nonexistent");
    c.args(words);
    c
}

fn row(input: &str, command: Command, expect: &'static str, code: i32) -> Row {
    Row {
        input: input.into(),
        command,
        expect,
        code,
    }
}

fn up(tool: &Tool, extra: &[&str]) -> Command {
    let mut w = vec![
        "up",
        "--cluster",
        "cluster1",
        "--cluster",
        "cluster2",
        "--only",
        STAGES,
    ];
    w.extend(extra);
    tool_cmd(tool, &w)
}

fn copy_plugins(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test]
async fn bad_input_is_one_line_a_non_zero_exit_and_nothing_changed() {
    let bed = testbed_or_skip!();
    let tool = Tool::new(bed.clone());
    let _ = tool.run("down", &CLUSTERS, &["--only", STAGES]);
    tool.ok("up", &CLUSTERS, &["--only", STAGES]);
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| -> PathBuf { work.path().join(p) };
    let ws = |p: &str| -> String { w(p).display().to_string() };
    let certs = tool.certs_dir().display().to_string();

    // inputs made on disk
    std::fs::write(w("list.yaml"), "- a\n").unwrap();
    std::fs::write(
        w("typo.yaml"),
        "clusters:\n- name: cluster1\n- name: cluster2\nnetfx: none\n",
    )
    .unwrap();
    std::fs::create_dir_all(w("empty-charts")).unwrap();
    // a kubeconfig defining the bed's cluster name for another server (kubeadm names every cluster alike)
    let kc = bed.kubeconfig_path().display().to_string();
    let bed_cfg: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&kc).unwrap()).unwrap();
    let cluster_name = bed_cfg["contexts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "cluster1")
        .unwrap()["context"]["cluster"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(
        w("other-kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster_name}\n  cluster:\n    server: https://127.0.0.1:1\n\
             users:\n- name: other\n  user:\n    token: t\ncontexts:\n- name: other\n  context:\n    cluster: {cluster_name}\n    user: other\n"
        ),
    )
    .unwrap();
    let merged = format!("{kc}:{}", ws("other-kubeconfig"));
    // certificates: a second anchor and issuer, a non-CA root, a P-521 root, an issuer of another anchor
    let other = ws("other-certs");
    let st = bare_cmd(
        &tool,
        &[
            "--plugin-dir",
            tool.plugins.path().to_str().unwrap(),
            "certs",
            "generate",
            "--out",
            &other,
        ],
    )
    .status()
    .unwrap();
    assert!(st.success());
    for (name, sel) in [("foreign-issuer", "issuer"), ("foreign-key", "key")] {
        let d = ws(name);
        sh(&format!(
            "mkdir -p {d} && cp {certs}/* {d}/ && chmod 700 {d}"
        ));
        match sel {
            "issuer" => sh(&format!("cp {other}/issuer.crt {other}/issuer.key {d}/")),
            _ => sh(&format!("cp {other}/issuer.key {d}/issuer.key")),
        }
    }
    sh(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {k} -out {c} -subj /CN=notca -days 30 -addext basicConstraints=critical,CA:FALSE 2>/dev/null",
        k = ws("notca.key"),
        c = ws("notca.crt")
    ));
    sh(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-521 -nodes -keyout {k} -out {c} -subj /CN=p521 -days 30 -addext basicConstraints=critical,CA:TRUE 2>/dev/null",
        k = ws("p521.key"),
        c = ws("p521.crt")
    ));
    // plugin directories: world-writable; one corrupt library; one without the sample stage
    copy_plugins(tool.plugins.path(), &w("ww-plugins"));
    sh(&format!("chmod 777 {}", ws("ww-plugins")));
    copy_plugins(tool.plugins.path(), &w("corrupt-plugins"));
    std::fs::write(
        w("corrupt-plugins/libkpaas_mesh_sample.so"),
        b"not an ELF file",
    )
    .unwrap();
    copy_plugins(tool.plugins.path(), &w("no-sample"));
    std::fs::remove_file(w("no-sample/libkpaas_mesh_sample.so")).unwrap();
    let full = "cert,control-plane,multicluster,netfix,sample";

    let c2 = ["--cluster", "cluster1", "--cluster", "cluster2"];
    let rows = vec![
        row(
            "up --cluster Cluster_1 --cluster cluster2",
            tool_cmd(
                &tool,
                &["up", "--cluster", "Cluster_1", "--cluster", "cluster2"],
            ),
            "is not a DNS-1123 label",
            2,
        ),
        row(
            "up --cluster cluster1",
            tool_cmd(&tool, &["up", "--cluster", "cluster1"]),
            "need at least 2 clusters",
            1,
        ),
        row(
            "up --cluster cluster1 --cluster cluster1",
            tool_cmd(
                &tool,
                &["up", "--cluster", "cluster1", "--cluster", "cluster1"],
            ),
            "cluster name 'cluster1' is given twice",
            1,
        ),
        row(
            "up … --only dns",
            up(&tool, &["--only", "dns"]),
            "--only dns: unknown stage",
            1,
        ),
        row(
            "up … --only cert --skip smi",
            up(&tool, &["--skip", "smi"]),
            "cannot be used with",
            2,
        ),
        row(
            "up … --timeout soon",
            up(&tool, &["--timeout", "soon"]),
            "invalid duration 'soon'",
            2,
        ),
        row(
            "up … --set nosuch.key=v",
            up(&tool, &["--set", "nosuch.key=v"]),
            "no stage or plugin named 'nosuch'",
            1,
        ),
        row(
            "up … --set sample.nosuch=1",
            up(&tool, &["--set", "sample.nosuch=1"]),
            "plugin sample has no option 'nosuch'",
            1,
        ),
        row(
            "up … --weights cluster1=abc",
            up(&tool, &["--only", full, "--weights", "cluster1=abc"]),
            "not a number from 0 to 1000",
            1,
        ),
        row(
            "up … --weights cluster1=50,cluster3=50",
            up(
                &tool,
                &["--only", full, "--weights", "cluster1=50,cluster3=50"],
            ),
            "no cluster named cluster3",
            1,
        ),
        row(
            "up … --sample-client nosuch",
            up(&tool, &["--only", full, "--sample-client", "nosuch"]),
            "--sample-client nosuch: not one of the clusters",
            1,
        ),
        row(
            "up … --linkerd-version 2.99",
            up(&tool, &["--linkerd-version", "2.99"]),
            "unsupported Linkerd version '2.99'",
            1,
        ),
        row(
            "up … --registry harbor.example.com/",
            up(&tool, &["--registry", "harbor.example.com/"]),
            "--registry 'harbor.example.com/': not an image registry path",
            1,
        ),
        row(
            "unlink --cluster cluster1 --from Bad_Name",
            tool_cmd(
                &tool,
                &["unlink", "--cluster", "cluster1", "--from", "Bad_Name"],
            ),
            "'Bad_Name' is not a DNS-1123 label",
            1,
        ),
        row(
            "up … --kubeconfig /nope",
            up(&tool, &["--kubeconfig", "/nope"]),
            "cannot read kubeconfig /nope",
            1,
        ),
        row(
            "up --cluster cluster1=nosuchctx --cluster cluster2",
            tool_cmd(
                &tool,
                &[
                    "up",
                    "--cluster",
                    "cluster1=nosuchctx",
                    "--cluster",
                    "cluster2",
                ],
            ),
            "context 'nosuchctx' is not in the kubeconfig",
            1,
        ),
        row(
            "up … --kubeconfig BED:OTHER (OTHER defines the bed's cluster name for another server)",
            up(&tool, &["--kubeconfig", &merged]),
            "is defined differently in",
            1,
        ),
        row(
            "up --config /nope.yaml",
            tool_cmd(&tool, &["up", "--config", "/nope.yaml"]),
            "--config /nope.yaml: no such file",
            1,
        ),
        row(
            "up --config FILE (a key misspelt)",
            tool_cmd(&tool, &["up", "--config", &ws("typo.yaml")]),
            "unknown field `netfx`",
            1,
        ),
        row(
            "up … --chart-dir /nope",
            up(&tool, &["--chart-dir", "/nope"]),
            "--chart-dir /nope: not a directory",
            1,
        ),
        row(
            "up … --chart-dir EMPTY",
            up(&tool, &["--chart-dir", &ws("empty-charts")]),
            "release linkerd-crds: chart not found",
            1,
        ),
        row(
            "up … --values control-plane=/nope.yaml",
            up(&tool, &["--values", "control-plane=/nope.yaml"]),
            "--values control-plane=/nope.yaml: No such file",
            1,
        ),
        row(
            "up … --values control-plane=LIST",
            up(
                &tool,
                &["--values", &format!("control-plane={}", ws("list.yaml"))],
            ),
            "not a YAML mapping",
            1,
        ),
        row(
            "up … --registry 'bad registry'",
            up(&tool, &["--registry", "bad registry"]),
            "--registry 'bad registry': not an image registry path",
            1,
        ),
        row(
            "up … --netfix nosuch",
            up(
                &tool,
                &[
                    "--only",
                    "cert,control-plane,multicluster,netfix",
                    "--netfix",
                    "nosuch",
                ],
            ),
            "the netfix plugin 'netfix-nosuch' is not installed",
            1,
        ),
        row(
            "up … --netfix baremetal (no --gateway-public)",
            up(
                &tool,
                &[
                    "--only",
                    "cert,control-plane,multicluster,netfix",
                    "--netfix",
                    "baremetal",
                ],
            ),
            "no public gateway address for cluster1, cluster2",
            1,
        ),
        row(
            "up … --gateway-public nosuch=1.2.3.4",
            up(&tool, &["--gateway-public", "nosuch=1.2.3.4"]),
            "--gateway-public nosuch=1.2.3.4: no cluster named nosuch",
            1,
        ),
        row(
            "up … --netfix openstack (no credentials)",
            up(
                &tool,
                &[
                    "--only",
                    "cert,control-plane,multicluster,netfix",
                    "--netfix",
                    "openstack",
                ],
            ),
            "no OpenStack credentials",
            1,
        ),
        row(
            "up … --netfix openstack, Keystone unreachable",
            {
                let mut c = up(
                    &tool,
                    &[
                        "--only",
                        "cert,control-plane,multicluster,netfix",
                        "--netfix",
                        "openstack",
                    ],
                );
                c.env("OS_AUTH_URL", "http://127.0.0.1:1/v3")
                    .env("OS_USERNAME", "u")
                    .env("OS_PASSWORD", "p")
                    .env("OS_PROJECT_NAME", "p")
                    .env("OS_USER_DOMAIN_NAME", "Default")
                    .env("OS_PROJECT_DOMAIN_NAME", "Default");
                c
            },
            "cannot reach Keystone at http://127.0.0.1:1/v3",
            1,
        ),
        row(
            "up … --certs-dir NEW (a running mesh, another anchor)",
            up(&tool, &["--certs-dir", &ws("new-certs")]),
            "refusing to replace the trust anchor of a running mesh",
            1,
        ),
        row(
            "up … --certs-dir DIR (issuer from another anchor)",
            up(&tool, &["--certs-dir", &ws("foreign-issuer")]),
            "is not signed by the trust anchor",
            1,
        ),
        row(
            "up … --certs-dir DIR (issuer key not the issuer's)",
            up(&tool, &["--certs-dir", &ws("foreign-key")]),
            "the private key does not match the certificate",
            1,
        ),
        row(
            "certs generate --anchor-cert NOT-A-CA",
            bare_cmd(
                &tool,
                &[
                    "--plugin-dir",
                    tool.plugins.path().to_str().unwrap(),
                    "certs",
                    "generate",
                    "--out",
                    &ws("g1"),
                    "--anchor-cert",
                    &ws("notca.crt"),
                    "--anchor-key",
                    &ws("notca.key"),
                ],
            ),
            "is not a CA certificate (basicConstraints CA:TRUE missing)",
            1,
        ),
        row(
            "certs generate --anchor-cert P-521",
            bare_cmd(
                &tool,
                &[
                    "--plugin-dir",
                    tool.plugins.path().to_str().unwrap(),
                    "certs",
                    "generate",
                    "--out",
                    &ws("g2"),
                    "--anchor-cert",
                    &ws("p521.crt"),
                    "--anchor-key",
                    &ws("p521.key"),
                ],
            ),
            "a trust anchor must be RSA (2048 bits or more), ECDSA P-256 or P-384, or Ed25519",
            1,
        ),
        row(
            "certs generate --anchor-cert /nope --anchor-key /nope",
            bare_cmd(
                &tool,
                &[
                    "--plugin-dir",
                    tool.plugins.path().to_str().unwrap(),
                    "certs",
                    "generate",
                    "--out",
                    &ws("g3"),
                    "--anchor-cert",
                    "/nope",
                    "--anchor-key",
                    "/nope",
                ],
            ),
            "--anchor-cert /nope: no such file",
            1,
        ),
        row(
            "up --plugin-dir WORLD-WRITABLE",
            bare_cmd(
                &tool,
                &[
                    &["up"][..],
                    &c2,
                    &["--plugin-dir", &ws("ww-plugins"), "--only", STAGES],
                ]
                .concat(),
            ),
            "the cert stage plugin is not installed",
            1,
        ),
        row(
            "up --plugin-dir DIR (a corrupt library)",
            bare_cmd(
                &tool,
                &[&["up"][..], &c2, &["--plugin-dir", &ws("corrupt-plugins")]].concat(),
            ),
            "1 plugin file(s) failed to load",
            1,
        ),
        row(
            "up --plugin-dir DIR (no sample plugin)",
            bare_cmd(
                &tool,
                &[&["up"][..], &c2, &["--plugin-dir", &ws("no-sample")]].concat(),
            ),
            "the sample stage plugin is not installed",
            1,
        ),
    ];
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let mut failures = Vec::new();
    for mut r in rows {
        let before = snapshot(&bed).await;
        let out = r.command.output().unwrap();
        let after = snapshot(&bed).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        let code = out.status.code().unwrap_or(-1);
        eprintln!(
            "| `{}` | {} | {code} |",
            r.input,
            errors.first().unwrap_or(&"(none)")
        );
        if code != r.code
            || errors.len() != 1
            || !errors[0].contains(r.expect)
            || r.expect.is_empty()
        {
            failures.push(format!(
                "{}: exit {code}, errors {errors:?}\n{stderr}",
                r.input
            ));
        }
        if before != after {
            failures.push(format!("{}: the clusters changed", r.input));
        }
        if !r.expect.is_empty() && !readme.contains(r.expect) {
            failures.push(format!("{}: README's table lacks {:?}", r.input, r.expect));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    tool.ok("down", &CLUSTERS, &["--only", STAGES]);
}
