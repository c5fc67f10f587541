//! A failed API discovery is not "the cluster does not serve this kind": against an API
//! server stand-in on 127.0.0.1 that answers 404 for one group (not served) and 500 for the
//! core group (a transient failure), the host must report the 500 as an error everywhere —
//! facts, deletes and waits for deletion — and only the 404 as "no such objects".

use kpaas_mesh_plugin_api::{Action, FactAnswer, FactQuery, WaitCondition};
use kubectl_kpaas_mesh::cli::ClusterSpec;
use kubectl_kpaas_mesh::clusters::{ApiError, Clusters};
use kubectl_kpaas_mesh::executor::Executor;
use kubectl_kpaas_mesh::facts::{FactSource, LiveFacts};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Serves HTTP on 127.0.0.1: `/api/v1` → 500 (kube retries 503s itself, with a long backoff), everything else → 404. Counts requests.
fn api_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let head = String::from_utf8_lossy(&buf);
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (code, text) = if path.starts_with("/api/v1") {
                (500, "Internal Server Error")
            } else {
                (404, "Not Found")
            };
            let body = format!(
                r#"{{"kind":"Status","apiVersion":"v1","status":"Failure","message":"{text}","reason":"{text}","code":{code}}}"#
            );
            let _ = write!(
                s,
                "HTTP/1.1 {code} {text}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (format!("http://{addr}"), hits)
}

fn clusters(server: &str, dir: &std::path::Path) -> Clusters {
    let kc = dir.join("kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c1\n  cluster: {{server: \"{server}\"}}\n\
             users:\n- name: u1\n  user: {{token: abc}}\ncontexts:\n- name: cluster1\n  context: {{cluster: c1, user: u1}}\n\
             current-context: cluster1\n"
        ),
    )
    .unwrap();
    let spec: ClusterSpec = "cluster1".parse().unwrap();
    Clusters::load(Some(kc.to_str().unwrap()), &[spec]).unwrap()
}

#[tokio::test]
async fn a_failed_discovery_never_reads_as_a_kind_that_is_not_served() {
    let (server, hits) = api_server();
    let tmp = tempfile::tempdir().unwrap();
    let cl = clusters(&server, tmp.path());

    // 404 for the group: not served, so no such object
    let r = cl
        .api_if_served(
            "cluster1",
            "split.smi-spec.io/v1alpha2",
            "TrafficSplit",
            None,
        )
        .await;
    assert!(matches!(r, Ok(None)), "{r:?}");

    // 500 for the core group: an error, not "absent"
    let r = cl
        .api_if_served("cluster1", "v1", "ConfigMap", Some("linkerd"))
        .await;
    let Err(e) = r else {
        panic!("a 500 read as served or not served: {r:?}")
    };
    assert!(matches!(e, ApiError::Discovery { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("cluster cluster1: cannot look up kind v1/ConfigMap: "),
        "{e}"
    );

    // facts: the stage is told the host could not find out
    let facts = LiveFacts { clusters: &cl };
    let q = FactQuery::Object {
        cluster: "cluster1".into(),
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some("linkerd".into()),
        name: "linkerd-config".into(),
    };
    assert!(
        matches!(facts.answer(&q).await, FactAnswer::Error { .. }),
        "a failed lookup must not answer 'no object'"
    );
    let q = FactQuery::Objects {
        cluster: "cluster1".into(),
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: None,
        label_selector: None,
    };
    assert!(matches!(facts.answer(&q).await, FactAnswer::Error { .. }));

    // down's delete fails instead of skipping
    let exec = Executor {
        clusters: Some(&cl),
        plugin: None,
    };
    let delete = Action::Delete {
        cluster: "cluster1".into(),
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some("linkerd".into()),
        name: "linkerd-config".into(),
    };
    let err = exec.run(&[delete]).await.unwrap_err();
    assert!(err.contains("cannot look up kind v1/ConfigMap"), "{err}");

    // a wait for deletion is not satisfied: it keeps trying, then times out
    let before = hits.load(Ordering::SeqCst);
    let wait = Action::Wait {
        cluster: "cluster1".into(),
        condition: WaitCondition::Deleted {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: "linkerd".into(),
        },
        timeout_secs: 3,
    };
    let err = exec.run(&[wait]).await.unwrap_err();
    assert!(err.contains("timed out after 3s waiting for"), "{err}");
    assert!(
        hits.load(Ordering::SeqCst) >= before + 2,
        "the wait retried the lookup"
    );

    // while a kind that is not served is deleted at once
    let wait = Action::Wait {
        cluster: "cluster1".into(),
        condition: WaitCondition::Deleted {
            api_version: "split.smi-spec.io/v1alpha2".into(),
            kind: "TrafficSplit".into(),
            namespace: Some("sample".into()),
            name: "helloworld".into(),
        },
        timeout_secs: 3,
    };
    exec.run(&[wait]).await.unwrap();
}
