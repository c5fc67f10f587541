//! `link --rotate-credentials`: a new token for the remote-access ServiceAccount on every
//! target cluster, carried into every peer's link credentials, with no moment in which a link
//! holds no valid token and with the mirrors left in place.
//!
//! Per target, observed from the clusters on every run (so an interrupted rotation resumes):
//! 1. a new `kubernetes.io/service-account-token` Secret `<sa>-token-<generation>` (labelled
//!    with its generation) next to the one in use; the token controller fills it;
//! 2. the link step writes every source's `cluster-credentials-<target>` with the newest token
//!    (links always use the newest generation, see [`in_use`]);
//! 3. every service mirror of a link to the target whose pod started before its credentials
//!    changed is restarted by the host (Linkerd's service mirror reads the credentials when it
//!    starts and when its Link changes, never when the Secret does);
//! 4. then the older token Secrets go, which revokes their tokens (a legacy token is valid only
//!    while its Secret exists and holds it).
//!
//! The chart's own token Secret is one of the older ones. Its token is the same whenever a
//! Secret of that name is made again for the same ServiceAccount (the legacy claims carry no
//! time), so `up` deletes it again where a later helm upgrade brought it back.

use crate::link::{Layout, REMOTE_SA};
use kpaas_mesh_kit::anchors::last_written;
use kpaas_mesh_kit::linkerd::MULTICLUSTER_NS;
use kpaas_mesh_kit::{CredentialRotation, WorkloadRef};
use kpaas_mesh_plugin_api::{Action, FactQuery, StageRequest, WaitCondition};
use serde_json::{Value, json};

/// The label carrying a token Secret's generation (the unix time of the rotation that made it).
pub const GENERATION_LABEL: &str = "kpaas-mesh.io/link-token-generation";

/// The chart's token Secret (`linkerd multicluster link` and `link-gen` use the first token
/// Secret of the ServiceAccount they find).
pub fn chart_token_secret() -> String {
    format!("{REMOTE_SA}-token")
}

/// A `kubernetes.io/service-account-token` Secret of the remote-access ServiceAccount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSecret {
    pub name: String,
    pub generation: Option<u64>,
    /// The decoded token, once the token controller issued it.
    pub token: Option<String>,
}

fn decode(b64: &str) -> Option<String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|t| !t.is_empty())
}

/// The remote-access ServiceAccount's token Secrets among `secrets`, in list order.
pub fn remote_tokens(secrets: &[Value]) -> Vec<TokenSecret> {
    secrets
        .iter()
        .filter(|s| s["type"] == "kubernetes.io/service-account-token")
        .filter(|s| s["metadata"]["annotations"]["kubernetes.io/service-account.name"] == REMOTE_SA)
        .map(|s| TokenSecret {
            name: s["metadata"]["name"].as_str().unwrap_or_default().into(),
            generation: s["metadata"]["labels"][GENERATION_LABEL]
                .as_str()
                .and_then(|g| g.parse().ok()),
            token: s["data"]["token"].as_str().and_then(decode),
        })
        .collect()
}

/// The token links carry: the one of the newest generation that has been issued, else (no
/// rotation ever) the first issued one, as Linkerd's CLI picks it.
pub fn in_use(tokens: &[TokenSecret]) -> Option<&TokenSecret> {
    let mut best: Option<&TokenSecret> = None;
    for t in tokens.iter().filter(|t| t.token.is_some()) {
        if best.is_none_or(|b| t.generation > b.generation) {
            best = Some(t);
        }
    }
    best
}

/// The newest token Secret, issued or not (a rotation's new one).
fn newest(tokens: &[TokenSecret]) -> Option<&TokenSecret> {
    let mut best: Option<&TokenSecret> = None;
    for t in tokens {
        if best.is_none_or(|b| t.generation > b.generation) {
            best = Some(t);
        }
    }
    best
}

/// The token in a link's credentials Secret (its kubeconfig's first user).
pub fn credentials_token(creds: &Value) -> Option<String> {
    let text = creds["data"]["kubeconfig"].as_str().and_then(decode)?;
    let kc: Value = serde_yaml_ng::from_str(&text).ok()?;
    kc["users"][0]["user"]["token"].as_str().map(String::from)
}

/// The service-mirror pods on `cluster` (every link's: they carry the target's name).
pub fn mirror_pods_query(cluster: &str) -> FactQuery {
    FactQuery::Objects {
        cluster: cluster.into(),
        api_version: "v1".into(),
        kind: "Pod".into(),
        namespace: Some(MULTICLUSTER_NS.into()),
        label_selector: Some("mirror.linkerd.io/cluster-name".into()),
    }
}

/// The new token Secret of `generation`.
pub fn token_secret(generation: u64) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": format!("{REMOTE_SA}-token-{generation}"),
            "namespace": MULTICLUSTER_NS,
            "labels": {
                GENERATION_LABEL: generation.to_string(),
                "app.kubernetes.io/managed-by": "kpaas-mesh",
            },
            "annotations": {"kubernetes.io/service-account.name": REMOTE_SA},
        },
        "type": "kubernetes.io/service-account-token",
    })
}

/// What the rotation reads besides the link step's facts.
pub fn queries(req: &StageRequest) -> Vec<FactQuery> {
    req.clusters
        .iter()
        .map(|c| mirror_pods_query(&c.name))
        .collect()
}

/// Everything the rotation sees of the clusters.
pub struct Observed<'a> {
    /// Each cluster's Secrets in the multicluster namespace.
    pub secrets: &'a dyn Fn(&str) -> Vec<Value>,
    /// Each cluster's service-mirror pods.
    pub pods: &'a dyn Fn(&str) -> Vec<Value>,
}

/// This run's part of the rotation: actions before the link step's (new token Secrets, waits),
/// after it (restarts are the host's; old token Secrets), and where it stands.
/// `generation > 0` starts a rotation on targets where none is under way.
pub fn plan(
    clusters: &[String],
    layout: Layout,
    generation: u64,
    seen: &Observed,
) -> (Vec<Action>, Vec<Action>, CredentialRotation) {
    let mut before = Vec::new();
    let mut after = Vec::new();
    let mut out = CredentialRotation {
        complete: true,
        ..CredentialRotation::default()
    };
    for t in clusters {
        let tokens = remote_tokens(&(seen.secrets)(t));
        let Some(new) = newest(&tokens) else {
            out.complete = false;
            out.progress
                .push(format!("{t}: no token Secret of {REMOTE_SA} yet"));
            continue;
        };
        let older: Vec<&TokenSecret> = tokens.iter().filter(|s| s.name != new.name).collect();
        let wait_issued = |name: &str| Action::Wait {
            cluster: t.clone(),
            condition: WaitCondition::SecretHasKey {
                namespace: MULTICLUSTER_NS.into(),
                name: name.into(),
                key: "token".into(),
            },
            timeout_secs: 120,
        };
        if older.is_empty() {
            if generation > 0 && new.generation != Some(generation) {
                let secret = token_secret(generation);
                let name = secret["metadata"]["name"].as_str().unwrap_or_default();
                before.push(Action::Apply {
                    cluster: t.clone(),
                    manifest: secret.clone(),
                    secret: true,
                });
                before.push(wait_issued(name));
                out.complete = false;
                out.progress.push(format!(
                    "{t}: new token Secret {name} (replacing {})",
                    new.name
                ));
            } else {
                out.progress
                    .push(format!("{t}: every link uses token Secret {}", new.name));
            }
            continue;
        }
        out.complete = false;
        let Some(token) = &new.token else {
            before.push(wait_issued(&new.name));
            out.progress
                .push(format!("{t}: waiting for the token of {}", new.name));
            continue;
        };
        let mut pending = Vec::new();
        for s in clusters.iter().filter(|s| *s != t) {
            let creds_name = format!("cluster-credentials-{t}");
            let secrets = (seen.secrets)(s);
            let creds = secrets.iter().find(|c| c["metadata"]["name"] == creds_name);
            match creds.and_then(credentials_token) {
                Some(held) if &held == token => {}
                _ => {
                    pending.push(format!("{s}'s credentials"));
                    continue;
                }
            }
            let written = creds.and_then(last_written).unwrap_or_default();
            let pods = (seen.pods)(s);
            let stale: Vec<&Value> = pods
                .iter()
                .filter(|p| p["metadata"]["labels"]["mirror.linkerd.io/cluster-name"] == **t)
                .filter(|p| {
                    p["metadata"]["creationTimestamp"].as_str().unwrap_or("") <= written.as_str()
                })
                .collect();
            if stale.is_empty() {
                continue;
            }
            pending.push(format!("{s}'s service mirror"));
            if stale
                .iter()
                .any(|p| p["metadata"]["deletionTimestamp"].is_null())
            {
                out.restart.push(WorkloadRef {
                    cluster: s.clone(),
                    namespace: MULTICLUSTER_NS.into(),
                    kind: "Deployment".into(),
                    name: layout.deployment(t),
                });
            } else {
                for p in stale {
                    after.push(Action::Wait {
                        cluster: s.clone(),
                        condition: WaitCondition::Deleted {
                            api_version: "v1".into(),
                            kind: "Pod".into(),
                            namespace: Some(MULTICLUSTER_NS.into()),
                            name: p["metadata"]["name"].as_str().unwrap_or_default().into(),
                        },
                        timeout_secs: 120,
                    });
                }
            }
        }
        if pending.is_empty() {
            let names: Vec<&str> = older.iter().map(|s| s.name.as_str()).collect();
            for name in &names {
                after.push(Action::Delete {
                    cluster: t.clone(),
                    api_version: "v1".into(),
                    kind: "Secret".into(),
                    namespace: Some(MULTICLUSTER_NS.into()),
                    name: (*name).into(),
                });
            }
            out.progress.push(format!(
                "{t}: every link uses {}; removing {}",
                new.name,
                names.join(", ")
            ));
        } else {
            out.progress.push(format!(
                "{t}: moving to {}: {} still on the old token",
                new.name,
                pending.join(", ")
            ));
        }
    }
    (before, after, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpaas_mesh_kit::linkerd::LinkStyle;
    use std::collections::BTreeMap;

    fn b64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn token(name: &str, generation: Option<u64>, token: Option<&str>) -> Value {
        let mut s = json!({
            "type": "kubernetes.io/service-account-token",
            "metadata": {"name": name,
                         "annotations": {"kubernetes.io/service-account.name": REMOTE_SA}},
        });
        if let Some(g) = generation {
            s["metadata"]["labels"] = json!({GENERATION_LABEL: g.to_string()});
        }
        if let Some(t) = token {
            s["data"] = json!({"token": b64(t)});
        }
        s
    }

    fn creds(target: &str, token: &str, written: &str) -> Value {
        let kc = format!(
            "apiVersion: v1\nkind: Config\nusers:\n- name: {REMOTE_SA}\n  user:\n    token: {token}\n"
        );
        json!({
            "type": "mirror.linkerd.io/remote-kubeconfig",
            "metadata": {"name": format!("cluster-credentials-{target}"),
                         "managedFields": [{"manager": "kpaas-mesh", "time": written}]},
            "data": {"kubeconfig": b64(&kc)},
        })
    }

    fn pod(name: &str, target: &str, created: &str, deleting: bool) -> Value {
        let mut p = json!({"metadata": {"name": name, "creationTimestamp": created,
            "labels": {"mirror.linkerd.io/cluster-name": target}}});
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2026-12-03T10:00:09Z");
        }
        p
    }

    struct Bed {
        secrets: BTreeMap<String, Vec<Value>>,
        pods: BTreeMap<String, Vec<Value>>,
    }

    impl Bed {
        fn plan(
            &self,
            style: LinkStyle,
            generation: u64,
        ) -> (Vec<Action>, Vec<Action>, CredentialRotation) {
            let secrets = |c: &str| self.secrets.get(c).cloned().unwrap_or_default();
            let pods = |c: &str| self.pods.get(c).cloned().unwrap_or_default();
            let seen = Observed {
                secrets: &secrets,
                pods: &pods,
            };
            plan(
                &["c1".to_string(), "c2".to_string()],
                Layout { style },
                generation,
                &seen,
            )
        }
    }

    /// Two clusters linked both ways with the chart's token; `extra` on c2.
    fn bed(c2_tokens: Vec<Value>, c1_creds_token: &str, c1_pods: Vec<Value>) -> Bed {
        let mut secrets = BTreeMap::new();
        secrets.insert(
            "c1".to_string(),
            vec![
                token(&chart_token_secret(), None, Some("t1-old")),
                creds("c2", c1_creds_token, "2026-12-03T10:00:05Z"),
            ],
        );
        let mut on_c2 = c2_tokens;
        on_c2.push(creds("c1", "t1-old", "2026-12-03T09:00:00Z"));
        secrets.insert("c2".to_string(), on_c2);
        let mut pods = BTreeMap::new();
        pods.insert("c1".to_string(), c1_pods);
        Bed { secrets, pods }
    }

    #[test]
    fn links_use_the_newest_issued_generation_else_the_first_token() {
        let chart = token(&chart_token_secret(), None, Some("a"));
        let t = remote_tokens(&[
            chart.clone(),
            token("x-7", Some(7), Some("b")),
            token("x-9", Some(9), None),
        ]);
        assert_eq!(in_use(&t).unwrap().name, "x-7");
        assert_eq!(newest(&t).unwrap().name, "x-9");
        let t = remote_tokens(&[chart, token("other", None, Some("c"))]);
        assert_eq!(in_use(&t).unwrap().token.as_deref(), Some("a"));
        let opaque = json!({"type": "Opaque", "metadata": {"name": "o", "annotations": {"kubernetes.io/service-account.name": REMOTE_SA}}});
        assert!(remote_tokens(&[opaque]).is_empty());
        assert_eq!(
            credentials_token(&creds("c2", "tok", "t")).as_deref(),
            Some("tok")
        );
    }

    #[test]
    fn a_rotation_starts_with_a_new_token_secret_per_target() {
        let b = bed(
            vec![token(&chart_token_secret(), None, Some("t2-old"))],
            "t2-old",
            vec![],
        );
        let (before, after, out) = b.plan(LinkStyle::Link, 1_764_000_000);
        assert!(!out.complete);
        assert!(after.is_empty() && out.restart.is_empty());
        // c1 and c2 each: the Secret, then the wait for its token
        assert_eq!(before.len(), 4, "{before:?}");
        let Action::Apply {
            cluster,
            manifest,
            secret,
        } = &before[2]
        else {
            panic!("{before:?}")
        };
        assert_eq!(cluster, "c2");
        assert!(*secret);
        assert_eq!(
            manifest["metadata"]["name"],
            format!("{REMOTE_SA}-token-1764000000")
        );
        assert_eq!(
            manifest["metadata"]["labels"][GENERATION_LABEL],
            "1764000000"
        );
        assert_eq!(manifest["type"], "kubernetes.io/service-account-token");
        assert!(manifest.get("data").is_none());
        assert!(
            matches!(&before[3], Action::Wait { condition: WaitCondition::SecretHasKey { name, key, .. }, .. }
            if name == &format!("{REMOTE_SA}-token-1764000000") && key == "token")
        );
        // a later round starts nothing
        let (before, after, out) = b.plan(LinkStyle::Link, 0);
        assert!(
            out.complete && before.is_empty() && after.is_empty(),
            "{out:?}"
        );
    }

    #[test]
    fn the_old_token_stays_until_every_peer_holds_the_new_one() {
        let tokens = || {
            vec![
                token(&chart_token_secret(), None, Some("t2-old")),
                token("new", Some(5), Some("t2-new")),
            ]
        };
        // c1's credentials still carry the old token: the link step writes them; nothing goes
        let (_, after, out) = bed(tokens(), "t2-old", vec![]).plan(LinkStyle::Link, 0);
        assert!(
            !out.complete && after.is_empty() && out.restart.is_empty(),
            "{out:?}"
        );
        assert!(
            out.progress.iter().any(|p| p.contains("c1's credentials")),
            "{:?}",
            out.progress
        );
        // not issued yet: wait for it
        let b = bed(
            vec![
                token(&chart_token_secret(), None, Some("t2-old")),
                token("new", Some(5), None),
            ],
            "t2-old",
            vec![],
        );
        let (before, _, out) = b.plan(LinkStyle::Link, 0);
        assert!(!out.complete);
        assert!(before.iter().any(|a| matches!(a, Action::Wait { cluster, condition: WaitCondition::SecretHasKey { name, .. }, .. } if cluster == "c2" && name == "new")));
    }

    #[test]
    fn a_mirror_started_before_its_credentials_changed_is_restarted_first() {
        let tokens = || {
            vec![
                token(&chart_token_secret(), None, Some("t2-old")),
                token("new", Some(5), Some("t2-new")),
            ]
        };
        for (style, deployment) in [
            (LinkStyle::Link, "linkerd-service-mirror-c2"),
            (LinkStyle::LinkGen, "controller-c2"),
        ] {
            let old_pod = pod("sm-1", "c2", "2026-12-03T10:00:00Z", false);
            let (_, after, out) = bed(tokens(), "t2-new", vec![old_pod]).plan(style, 0);
            assert!(!out.complete && after.is_empty(), "{after:?}");
            assert_eq!(
                out.restart,
                vec![WorkloadRef {
                    cluster: "c1".into(),
                    namespace: MULTICLUSTER_NS.into(),
                    kind: "Deployment".into(),
                    name: deployment.into()
                }]
            );
        }
        // one written in the same second counts as before (timestamps are whole seconds)
        let same = pod("sm-1", "c2", "2026-12-03T10:00:05Z", false);
        let (_, _, out) = bed(tokens(), "t2-new", vec![same]).plan(LinkStyle::Link, 0);
        assert_eq!(out.restart.len(), 1);
        // an old pod on its way out is waited for, not restarted again
        let going = pod("sm-1", "c2", "2026-12-03T10:00:00Z", true);
        let newer = pod("sm-2", "c2", "2026-12-03T10:00:07Z", false);
        let (_, after, out) = bed(tokens(), "t2-new", vec![going, newer]).plan(LinkStyle::Link, 0);
        assert!(out.restart.is_empty() && !out.complete);
        assert!(
            matches!(&after[..], [Action::Wait { cluster, condition: WaitCondition::Deleted { kind, name, .. }, .. }]
            if cluster == "c1" && kind == "Pod" && name == "sm-1"),
            "{after:?}"
        );
        // another link's mirror does not count
        let other = pod("sm-x", "c3", "2026-12-03T10:00:00Z", false);
        let (_, after, _) = bed(tokens(), "t2-new", vec![other]).plan(LinkStyle::Link, 0);
        assert!(after.iter().all(|a| matches!(a, Action::Delete { .. })) && !after.is_empty());
    }

    #[test]
    fn then_every_older_token_secret_goes_and_the_next_round_is_complete() {
        let tokens = vec![
            token(&chart_token_secret(), None, Some("t2-old")),
            token("gen-3", Some(3), Some("t2-3")),
            token("gen-5", Some(5), Some("t2-new")),
        ];
        let fresh = pod("sm-2", "c2", "2026-12-03T10:00:07Z", false);
        let (before, after, out) = bed(tokens, "t2-new", vec![fresh]).plan(LinkStyle::Link, 0);
        assert!(before.is_empty() && !out.complete);
        let deleted: Vec<&str> = after
            .iter()
            .map(|a| match a {
                Action::Delete {
                    cluster,
                    kind,
                    name,
                    ..
                } if cluster == "c2" && kind == "Secret" => name.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(deleted, [chart_token_secret().as_str(), "gen-3"]);
        let b = bed(
            vec![token("gen-5", Some(5), Some("t2-new"))],
            "t2-new",
            vec![],
        );
        let (before, after, out) = b.plan(LinkStyle::Link, 0);
        assert!(
            out.complete && before.is_empty() && after.is_empty(),
            "{out:?}"
        );
        // a run after that is a further rotation, from generation 5 on
        let (before, _, _) = b.plan(LinkStyle::Link, 9);
        assert!(before.iter().any(|a| matches!(a, Action::Apply { cluster, manifest, .. } if cluster == "c2" && manifest["metadata"]["name"] == format!("{REMOTE_SA}-token-9"))));
    }
}
