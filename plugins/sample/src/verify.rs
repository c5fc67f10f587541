//! `verify`: the guide's section 4.3 (curl from the sleep pod until both versions answer),
//! made into a verdict: the requests run in one exec of a shell loop, every answer is
//! parsed, and each backend's share is tested against its weight with a binomial confidence
//! interval. Pure: the host runs the exec; this module builds the command and judges.

use serde::Serialize;
use std::collections::BTreeMap;

/// Marks the end of one request's output: `@@kpaas-mesh <curl exit code>`.
pub const MARK: &str = "@@kpaas-mesh";

/// z for a two-sided 99.9 % interval.
pub const Z_999: f64 = 3.2905;

/// The shell loop run in the sleep pod: `requests` curls of `url`, each followed by the
/// HTTP status and a marker line with curl's exit code.
pub fn command(url: &str, requests: u32) -> Vec<String> {
    let script = format!(
        "i=0; while [ $i -lt {requests} ]; do i=$((i+1)); \
         out=$(curl -sS -m 5 -w '\\n%{{http_code}}' '{url}' 2>&1); rc=$?; \
         printf '%s\\n{MARK} %s\\n' \"$out\" \"$rc\"; done"
    );
    vec!["sh".into(), "-c".into(), script]
}

/// One answer of helloworld.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `Hello version: v1, instance: helloworld-v1-...` with HTTP 2xx.
    Hello { version: String, instance: String },
    /// An HTTP status outside 2xx.
    Status(u16),
    /// curl failed: 28 is a timeout, others connection errors.
    CurlError(i32),
    /// A 2xx answer that is not helloworld's, or output that cannot be read.
    Unparsable(String),
}

/// Splits the loop's output into answers.
pub fn parse(output: &str) -> Vec<Answer> {
    let mut answers = Vec::new();
    let mut block: Vec<&str> = Vec::new();
    for line in output.lines() {
        if let Some(rc) = line.strip_prefix(MARK) {
            answers.push(parse_one(&block, rc.trim()));
            block.clear();
        } else {
            block.push(line);
        }
    }
    if block.iter().any(|l| !l.trim().is_empty()) {
        answers.push(Answer::Unparsable(block.join(" ")));
    }
    answers
}

fn parse_one(block: &[&str], rc: &str) -> Answer {
    let rc: i32 = match rc.parse() {
        Ok(rc) => rc,
        Err(_) => return Answer::Unparsable(format!("bad exit code '{rc}'")),
    };
    if rc != 0 {
        return Answer::CurlError(rc);
    }
    let Some((code_line, body)) = block.split_last() else {
        return Answer::Unparsable("empty answer".into());
    };
    let Ok(code) = code_line.trim().parse::<u16>() else {
        return Answer::Unparsable(block.join(" "));
    };
    if !(200..300).contains(&code) {
        return Answer::Status(code);
    }
    let body = body.join("\n");
    parse_hello(body.trim()).unwrap_or(Answer::Unparsable(body))
}

/// `Hello version: v2, instance: helloworld-v2-f58d4c8cb-mzpsb`.
pub fn parse_hello(body: &str) -> Option<Answer> {
    let rest = body.strip_prefix("Hello version: ")?;
    let (version, rest) = rest.split_once(", instance: ")?;
    let instance = rest.trim();
    if version.is_empty() || instance.is_empty() || version.contains(char::is_whitespace) {
        return None;
    }
    Some(Answer::Hello {
        version: version.to_string(),
        instance: instance.to_string(),
    })
}

/// What one backend (a version, i.e. a cluster) was expected to get and got.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendResult {
    pub version: String,
    pub cluster: String,
    pub instances: Vec<String>,
    pub count: u32,
    pub share: f64,
    pub expected: f64,
    /// The interval the share had to fall in.
    pub low: f64,
    pub high: f64,
    pub ok: bool,
}

/// The whole verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub requests: u32,
    pub answered: u32,
    pub backends: Vec<BackendResult>,
    pub non_2xx: u32,
    pub timeouts: u32,
    pub curl_errors: u32,
    pub unparsable: u32,
    /// Versions that answered but no backend expected (e.g. a stale deployment).
    pub unexpected: BTreeMap<String, u32>,
    pub passed: bool,
    /// Why it failed, one reason per line, with the likely cause.
    pub reasons: Vec<String>,
}

/// A backend the traffic split is expected to reach.
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    pub version: String,
    pub cluster: String,
    /// The name the client cluster reaches it by (`helloworld` or `helloworld-<cluster>`).
    pub service: String,
    pub weight: u32,
}

/// Judges `answers` against `expected` weights. A share passes when it lies within the
/// 99.9 % normal-approximation interval of a binomial with the weight's probability (with a
/// continuity correction); any error answer beyond `max_errors` fails the run.
pub fn judge(answers: &[Answer], expected: &[Expected], requests: u32, max_errors: u32) -> Verdict {
    let mut counts: BTreeMap<&str, (u32, Vec<String>)> = BTreeMap::new();
    let (mut non_2xx, mut timeouts, mut curl_errors, mut unparsable) = (0, 0, 0, 0);
    for a in answers {
        match a {
            Answer::Hello { version, instance } => {
                let e = counts.entry(version.as_str()).or_default();
                e.0 += 1;
                if !e.1.contains(instance) {
                    e.1.push(instance.clone());
                }
            }
            Answer::Status(_) => non_2xx += 1,
            Answer::CurlError(28) => timeouts += 1,
            Answer::CurlError(_) => curl_errors += 1,
            Answer::Unparsable(_) => unparsable += 1,
        }
    }
    let answered: u32 = counts.values().map(|c| c.0).sum();
    let total_weight: u32 = expected.iter().map(|e| e.weight).sum::<u32>().max(1);
    let n = f64::from(answered.max(1));
    let mut reasons = Vec::new();
    let mut backends = Vec::new();
    for e in expected {
        let (count, instances) = counts.get(e.version.as_str()).cloned().unwrap_or_default();
        let p = f64::from(e.weight) / f64::from(total_weight);
        let share = f64::from(count) / n;
        let half = Z_999 * (p * (1.0 - p) / n).sqrt() + 0.5 / n;
        let (low, high) = ((p - half).max(0.0), (p + half).min(1.0));
        let ok = if e.weight == 0 {
            count == 0
        } else {
            count > 0 && share >= low && share <= high
        };
        if e.weight > 0 && count == 0 && e.service == "helloworld" {
            reasons.push(format!(
                "no answer from {} ({}), the client's own helloworld: is Deployment helloworld-{} available there?",
                e.cluster, e.version, e.version
            ));
        } else if e.weight > 0 && count == 0 {
            reasons.push(format!(
                "no answer from {} ({}): is the mirror service {} present? run `kubectl kpaas-mesh check`",
                e.cluster, e.version, e.service
            ));
        } else if !ok {
            reasons.push(format!(
                "{} ({}) got {:.1}% of the answers, expected {:.1}% (allowed {:.1}%–{:.1}% at 99.9%): \
                 is the TrafficSplit applied and the smi-adaptor running?",
                e.cluster,
                e.version,
                share * 100.0,
                p * 100.0,
                low * 100.0,
                high * 100.0
            ));
        }
        backends.push(BackendResult {
            version: e.version.clone(),
            cluster: e.cluster.clone(),
            instances,
            count,
            share,
            expected: p,
            low,
            high,
            ok,
        });
    }
    let unexpected: BTreeMap<String, u32> = counts
        .iter()
        .filter(|(v, _)| !expected.iter().any(|e| e.version == **v))
        .map(|(v, c)| (v.to_string(), c.0))
        .collect();
    for (v, c) in &unexpected {
        reasons.push(format!(
            "{c} answer(s) from version {v}, which no cluster should serve"
        ));
    }
    let errors = non_2xx + timeouts + curl_errors + unparsable;
    if errors > max_errors {
        reasons.push(format!(
            "{errors} of {requests} requests failed ({non_2xx} non-2xx, {timeouts} timeouts, \
             {curl_errors} connection errors, {unparsable} unreadable answers); allowed: {max_errors}"
        ));
    }
    if answered == 0 && errors == 0 {
        reasons.push("no answers at all: did the requests run? (is the sleep pod Running?)".into());
    }
    Verdict {
        requests,
        answered,
        backends,
        non_2xx,
        timeouts,
        curl_errors,
        unparsable,
        unexpected,
        passed: reasons.is_empty(),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected() -> Vec<Expected> {
        vec![
            Expected {
                version: "v1".into(),
                cluster: "cluster1".into(),
                service: "helloworld-cluster1".into(),
                weight: 50,
            },
            Expected {
                version: "v2".into(),
                cluster: "cluster2".into(),
                service: "helloworld".into(),
                weight: 50,
            },
        ]
    }

    fn out(lines: &[(&str, &str)]) -> String {
        lines
            .iter()
            .map(|(body, rc)| format!("{body}\n{MARK} {rc}\n"))
            .collect()
    }

    fn hello(v: &str) -> String {
        format!("Hello version: {v}, instance: helloworld-{v}-abc\n200")
    }

    #[test]
    fn answers_are_parsed_including_failures() {
        let text = out(&[
            (&hello("v1"), "0"),
            ("<html>oops</html>\n503", "0"),
            ("curl: (28) Operation timed out", "28"),
            ("curl: (7) Failed to connect", "7"),
            ("something else\n200", "0"),
            ("", "x"),
        ]) + "trailing garbage";
        let a = parse(&text);
        assert_eq!(
            a,
            vec![
                Answer::Hello {
                    version: "v1".into(),
                    instance: "helloworld-v1-abc".into()
                },
                Answer::Status(503),
                Answer::CurlError(28),
                Answer::CurlError(7),
                Answer::Unparsable("something else".into()),
                Answer::Unparsable("bad exit code 'x'".into()),
                Answer::Unparsable("trailing garbage".into()),
            ]
        );
    }

    fn run(v1: usize, v2: usize) -> Verdict {
        let mut lines = vec![];
        for _ in 0..v1 {
            lines.push((hello("v1"), "0"));
        }
        for _ in 0..v2 {
            lines.push((hello("v2"), "0"));
        }
        let lines: Vec<(&str, &str)> = lines.iter().map(|(a, b)| (a.as_str(), *b)).collect();
        judge(&parse(&out(&lines)), &expected(), (v1 + v2) as u32, 0)
    }

    #[test]
    fn an_even_split_passes_and_a_skewed_one_fails() {
        let v = run(50, 50);
        assert!(v.passed, "{:?}", v.reasons);
        assert_eq!(v.backends[0].count, 50);
        assert!((v.backends[0].share - 0.5).abs() < 1e-9);
        // 100 requests at 50 %: the 99.9 % interval is about ±17 points.
        assert!(run(34, 66).passed);
        let v = run(25, 75);
        assert!(!v.passed);
        assert!(
            v.reasons[0].contains("cluster1 (v1) got 25.0% of the answers, expected 50.0%"),
            "{:?}",
            v.reasons
        );
    }

    #[test]
    fn all_traffic_to_one_side_names_the_missing_backend() {
        let v = run(0, 100);
        assert!(!v.passed);
        assert_eq!(
            v.reasons[0],
            "no answer from cluster1 (v1): is the mirror service helloworld-cluster1 present? run `kubectl kpaas-mesh check`"
        );
    }

    #[test]
    fn a_silent_local_backend_points_at_its_deployment() {
        let v = run(100, 0);
        assert!(!v.passed);
        assert!(v.reasons.contains(
            &"no answer from cluster2 (v2), the client's own helloworld: is Deployment helloworld-v2 available there?".to_string()
        ), "{:?}", v.reasons);
    }

    #[test]
    fn errors_are_counted_and_fail_the_run() {
        let text = out(&[
            (&hello("v1"), "0"),
            (&hello("v2"), "0"),
            ("x\n500", "0"),
            ("", "28"),
            ("junk\n200", "0"),
        ]);
        let v = judge(&parse(&text), &expected(), 5, 0);
        assert_eq!(
            (v.non_2xx, v.timeouts, v.unparsable, v.answered),
            (1, 1, 1, 2)
        );
        assert!(!v.passed);
        assert!(
            v.reasons
                .iter()
                .any(|r| r.starts_with("3 of 5 requests failed (1 non-2xx, 1 timeouts")),
            "{:?}",
            v.reasons
        );
        let v = judge(&parse(&text), &expected(), 5, 3);
        assert!(v.reasons.iter().all(|r| !r.contains("requests failed")));
    }

    #[test]
    fn unexpected_versions_and_silence_are_reported() {
        let text = out(&[
            (&hello("v1"), "0"),
            (&hello("v2"), "0"),
            (&hello("v9"), "0"),
        ]);
        let v = judge(&parse(&text), &expected(), 3, 0);
        assert_eq!(v.unexpected.get("v9"), Some(&1));
        assert!(!v.passed);
        let v = judge(&[], &expected(), 0, 0);
        assert!(v.reasons.iter().any(|r| r.contains("no answers at all")));
    }

    #[test]
    fn the_command_is_one_shell_loop() {
        let c = command("http://helloworld.sample.svc:5000/hello", 100);
        assert_eq!(&c[..2], &["sh", "-c"]);
        assert!(c[2].contains("-lt 100"), "{}", c[2]);
        assert!(c[2].contains("%{http_code}"), "{}", c[2]);
        assert!(c[2].contains(MARK));
    }
}
