//! End-to-end test of what `up` says while it runs and when a wait runs out, on the bed's real API servers:
//! `--progress plain` prints a timestamped line per action (never on stdout); a control plane that cannot be
//! scheduled (a nodeSelector no node has) times out with the Deployment's last state and the kubectl command that
//! shows more; the next `up` with schedulable values converges.

mod common;

use common::*;
use kpaas_mesh_e2e::testbed_or_skip;

const STAGES: &str = "cert,control-plane";
const CLUSTERS: [&str; 2] = ["cluster1", "cluster2"];

#[tokio::test]
async fn progress_lines_and_a_timeout_that_says_where_it_stood() {
    let bed = testbed_or_skip!();
    let tool = Tool::new(bed.clone());
    let _ = tool.run("down", &CLUSTERS, &["--only", STAGES]);

    let values = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(values.path(), "nodeSelector:\n  kpaas-mesh-e2e: nowhere\n").unwrap();
    let v = format!("control-plane={}", values.path().display());
    let out = tool.run(
        "up",
        &CLUSTERS,
        &[
            "--only",
            STAGES,
            "--values",
            &v,
            "--timeout",
            "15s",
            "--progress",
            "plain",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stderr}");
    // one line per finished action, with the time, the cluster and the stage
    let line = stderr
        .lines()
        .find(|l| l.contains(" cluster1 control-plane: helm release linkerd/linkerd-crds (linkerd-crds 1.8.0) — changed ("))
        .unwrap_or_else(|| panic!("no progress line for linkerd-crds:\n{stderr}"));
    assert!(
        line.as_bytes()[2] == b':' && line.as_bytes()[5] == b':',
        "{line}"
    );
    assert!(
        stderr.contains(" cluster2 control-plane: wait up to 15s for Deployments linkerd-identity, linkerd-destination, linkerd-proxy-injector in linkerd to be Available"),
        "{stderr}"
    );
    assert!(
        !stdout.contains("control-plane: helm release"),
        "progress on stdout:\n{stdout}"
    );
    // the timeout: what was awaited, where each Deployment stood, how to look
    let err = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    assert!(
        err.contains("timed out after 15s waiting for Deployments linkerd-identity"),
        "{err}"
    );
    assert!(
        err.contains("last seen: Deployment linkerd/linkerd-identity: 1/1 updated, 0 available, Available=False (MinimumReplicasUnavailable"),
        "{err}"
    );
    // and why its pod is not Ready: the scheduler's own words
    assert!(
        err.contains("Pending: PodScheduled=False (Unschedulable: "),
        "{err}"
    );
    assert!(err.contains("; look: kubectl --context cluster"), "{err}");
    assert!(
        err.ends_with(
            "-n linkerd describe deploy linkerd-identity linkerd-destination linkerd-proxy-injector"
        ),
        "{err}"
    );

    // schedulable again: converges
    let out = tool.ok("up", &CLUSTERS, &["--only", STAGES, "--progress", "none"]);
    assert!(out.contains("up done on cluster1, cluster2"), "{out}");
    tool.ok("down", &CLUSTERS, &["--only", STAGES]);
}
