//! The DNAT agent script (`agent/dnat-agent.sh`) against real iptables, in network namespaces this test makes and
//! always removes:
//!
//! ```text
//!   pod ns                  node ns (the agent runs here)               peer gateway ns
//!   192.168.77.2 ── veth ── 192.168.77.1 | 203.0.113.1 ── veth ── 203.0.113.10:4143 "gw-a"
//!   default via .1          ip_forward, MASQUERADE, kube-proxy-like      203.0.113.11:4143 "gw-b"
//!                           chains; 172.21.0.0/16 via 203.0.113.10      default via 203.0.113.1
//! ```
//!
//! The gateway's "private" address 172.21.0.5 exists nowhere: only the DNAT makes a connection from the pod (nat
//! PREROUTING) or from the node itself (nat OUTPUT) to 172.21.0.5:4143 reach a listener. Proven: no connection
//! before; the right listener after; a second run adds nothing (`iptables-save` equal); a duplicate made by hand is
//! removed; a changed public address replaces the old rule; an empty mapping and `remove` leave the node's ruleset
//! exactly as before; a bad mapping changes nothing. Run once with the default iptables and once with the legacy
//! backend (when the kernel has it), checking that the agent picks the backend that holds the node's rules, and
//! with BusyBox's ash (Alpine-based images) when busybox is installed.
//! In `run` mode (the DaemonSet's): a rule deleted by hand comes back, a changed mapping file is followed, and TERM
//! stops the agent with the rules left in place.
//!
//! Needs root, `ip` and `iptables`; otherwise it says SKIPPED loudly and passes. All addresses live only inside
//! the namespaces made here (TEST-NET-3 and private ranges); nothing else is contacted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

const PRIVATE: &str = "172.21.0.5";
const GW_A: &str = "203.0.113.10";
const GW_B: &str = "203.0.113.11";
const PORT: u16 = 4143;
const TAG: &str = "kpaas-mesh netfix peer=";

fn skip(why: &str) {
    let msg = format!("SKIPPED: the iptables DNAT agent test needs {why}");
    let bar = "=".repeat(msg.len());
    let _ = writeln!(std::io::stderr().lock(), "\n{bar}\n{msg}\n{bar}");
}

fn have(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Three namespaces, deleted on drop (also when an assertion fails halfway).
struct Lab {
    pod: String,
    node: String,
    gw: String,
    dir: PathBuf,
    listeners: Vec<Listener>,
    /// The shell that runs the agent (`sh`, or `busybox sh` as in Alpine-based images).
    shell: Vec<&'static str>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for l in &mut self.listeners {
            l.stop();
        }
        for ns in [&self.pod, &self.node, &self.gw] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    fn new(tag: &str) -> Lab {
        static N: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "kpmbm-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        let lab = Lab {
            pod: format!("{id}-pod"),
            node: format!("{id}-node"),
            gw: format!("{id}-gw"),
            dir,
            listeners: vec![],
            shell: vec!["sh"],
        };
        for ns in [&lab.pod, &lab.node, &lab.gw] {
            ok("ip", &["netns", "add", ns]);
            ok("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        let (pod, node, gw) = (&lab.pod, &lab.node, &lab.gw);
        // veth pairs made inside the node namespace, their peers moved straight into the others
        ok(
            "ip",
            &[
                "-n", node, "link", "add", "p0", "type", "veth", "peer", "name", "eth0", "netns",
                pod,
            ],
        );
        ok(
            "ip",
            &[
                "-n", node, "link", "add", "g0", "type", "veth", "peer", "name", "eth0", "netns",
                gw,
            ],
        );
        for (ns, dev, addr) in [
            (pod, "eth0", "192.168.77.2/24"),
            (node, "p0", "192.168.77.1/24"),
            (node, "g0", "203.0.113.1/24"),
            (gw, "eth0", "203.0.113.10/24"),
        ] {
            ok("ip", &["-n", ns, "addr", "add", addr, "dev", dev]);
            ok("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
        ok(
            "ip",
            &["-n", gw, "addr", "add", "203.0.113.11/24", "dev", "eth0"],
        );
        ok(
            "ip",
            &["-n", pod, "route", "add", "default", "via", "192.168.77.1"],
        );
        // replies find their way back through the node even without its MASQUERADE rule
        ok(
            "ip",
            &["-n", gw, "route", "add", "default", "via", "203.0.113.1"],
        );
        // the node reaches "private" addresses through the gateway side, which drops them (no forwarding there):
        // without a DNAT rule a connection to 172.21.0.5 cannot succeed
        ok(
            "ip",
            &["-n", node, "route", "add", "172.21.0.0/16", "via", GW_A],
        );
        ok(
            "ip",
            &[
                "netns",
                "exec",
                node,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        );
        lab
    }

    fn in_node(&self, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.node];
        all.extend_from_slice(args);
        ok("ip", &all)
    }

    /// Listener on `addr`:4143 in the gateway namespace answering `reply`.
    fn listen(&mut self, addr: &str, reply: &'static str) {
        self.listeners
            .push(Listener::start(&self.gw, addr.parse().unwrap(), reply));
    }

    /// Runs the real agent script in the node namespace; returns (success, log).
    fn agent(&self, mode: &str, mapping: &str, iptables: Option<&str>) -> (bool, String) {
        let map = self.dir.join("mapping");
        std::fs::write(&map, mapping).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent/dnat-agent.sh");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.node])
            .args(&self.shell)
            .arg(&script)
            .arg(mode)
            .env("KPAAS_MESH_MAPPING", &map)
            .env("KPAAS_MESH_READY_FILE", self.ready_file());
        match iptables {
            Some(i) => cmd.env("KPAAS_MESH_IPTABLES", i),
            None => cmd.env_remove("KPAAS_MESH_IPTABLES"),
        };
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ready_file(&self) -> PathBuf {
        self.dir.join("ready")
    }

    /// The node's nat table as `save` prints it, without comments and packet counters.
    fn nat(&self, save: &str) -> String {
        self.in_node(&[save, "-t", "nat"])
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| match l.find(" [") {
                Some(i) if l.starts_with(':') => l[..i].to_string(),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn tagged(&self, save: &str) -> Vec<String> {
        self.nat(save)
            .lines()
            .filter(|l| l.contains(TAG))
            .map(String::from)
            .collect()
    }
}

/// A TCP listener bound inside a network namespace (the socket stays there), answering one line per connection.
struct Listener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Moves the calling thread into network namespace `ns`.
fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
}

impl Listener {
    fn start(ns: &str, ip: std::net::IpAddr, reply: &'static str) -> Listener {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let ns = ns.to_string();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            enter(&ns);
            let l = TcpListener::bind(SocketAddr::new(ip, PORT)).unwrap();
            l.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            while !flag.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.write_all(format!("{reply}\n").as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("listener did not start");
        Listener {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects from inside `ns` to 172.21.0.5:4143 and returns the listener's line, or the error.
fn connect_from(ns: &str) -> Result<String, String> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        let addr: SocketAddr = format!("{PRIVATE}:{PORT}").parse().unwrap();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(1500))
            .map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut line = String::new();
        s.read_to_string(&mut line).map_err(|e| e.to_string())?;
        Ok(line.trim().to_string())
    })
    .join()
    .unwrap()
}

fn mapping(lines: &[(&str, &str)]) -> String {
    let mut m = String::from("# test mapping\n\n");
    for (chain, public) in lines {
        m.push_str(&format!("{chain} cluster2 {PRIVATE} {public}\n"));
    }
    m
}

/// The whole scenario with one backend: `agent_iptables` is what the agent is told to use (None: detect),
/// `cmd`/`save` what the test seeds and reads the ruleset with.
fn scenario(
    tag: &str,
    shell: &[&'static str],
    agent_iptables: Option<&str>,
    cmd: &str,
    save: &str,
    other_save: &str,
) {
    let mut lab = Lab::new(tag);
    lab.shell = shell.to_vec();
    lab.listen(GW_A, "gw-a");
    lab.listen(GW_B, "gw-b");
    // What kube-proxy and the CNI leave on a node: our rules go next to them, theirs are not touched.
    for rule in [
        "-N KUBE-SERVICES",
        "-A PREROUTING -m comment --comment kubernetes-service-portals -j KUBE-SERVICES",
        "-A OUTPUT -m comment --comment kubernetes-service-portals -j KUBE-SERVICES",
        "-A POSTROUTING -s 192.168.77.0/24 -o g0 -j MASQUERADE",
    ] {
        let mut args = vec![cmd, "-w", "-t", "nat"];
        args.extend(rule.split(' '));
        lab.in_node(&args);
    }
    let before = lab.nat(save);

    // No rule, no connection.
    assert!(
        connect_from(&lab.pod).is_err(),
        "{tag}: reached without DNAT"
    );

    // The guide's PREROUTING rule (pods) and the OUTPUT one (the node itself).
    let v1 = mapping(&[("PREROUTING", GW_A), ("OUTPUT", GW_A)]);
    let (good, log) = lab.agent("once", &v1, agent_iptables);
    assert!(good, "{tag}: agent failed:\n{log}");
    assert!(lab.ready_file().exists(), "{tag}: no ready file");
    assert_eq!(
        connect_from(&lab.pod).as_deref(),
        Ok("gw-a"),
        "{tag}: pod → {PRIVATE}"
    );
    assert_eq!(
        connect_from(&lab.node).as_deref(),
        Ok("gw-a"),
        "{tag}: node → {PRIVATE}"
    );
    let tagged = lab.tagged(save);
    assert_eq!(
        tagged,
        [
            format!(
                "-A PREROUTING -d {PRIVATE}/32 -m comment --comment \"{TAG}cluster2\" -j DNAT --to-destination {GW_A}"
            ),
            format!(
                "-A OUTPUT -d {PRIVATE}/32 -m comment --comment \"{TAG}cluster2\" -j DNAT --to-destination {GW_A}"
            ),
        ],
        "{tag}"
    );
    // Detection did not create a legacy nat table on an nft node (reading one makes the kernel create it).
    if other_save == "iptables-legacy-save" {
        let names = lab.in_node(&["cat", "/proc/net/ip_tables_names"]);
        assert!(
            !names.lines().any(|l| l == "nat"),
            "{tag}: legacy nat table created: {names}"
        );
    }
    // Detection: the rules went to the backend holding the node's rules, not the other one.
    assert!(
        !lab.nat(other_save).contains(TAG),
        "{tag}: rules in the wrong backend"
    );
    // Inserted (-I): ahead of kube-proxy's jump, as the guide's command does.
    let pre: Vec<String> = lab
        .nat(save)
        .lines()
        .filter(|l| l.starts_with("-A PREROUTING"))
        .map(String::from)
        .collect();
    assert!(
        pre[0].contains(TAG) && pre[1].contains("KUBE-SERVICES"),
        "{tag}: {pre:?}"
    );

    // Again: nothing changes.
    let once = lab.nat(save);
    let (good, log) = lab.agent("once", &v1, agent_iptables);
    assert!(good, "{tag}: {log}");
    assert_eq!(
        lab.nat(save),
        once,
        "{tag}: a second run changed the ruleset"
    );
    assert!(!log.contains("added"), "{tag}: {log}");

    // Someone ran the guide's command by hand once more: the duplicate goes, one rule stays.
    let mut dup = vec![cmd, "-w", "-t", "nat", "-I", "PREROUTING", "-d"];
    let private32 = format!("{PRIVATE}/32");
    let comment = format!("{TAG}cluster2");
    dup.extend([
        private32.as_str(),
        "-m",
        "comment",
        "--comment",
        comment.as_str(),
        "-j",
        "DNAT",
        "--to-destination",
        GW_A,
    ]);
    lab.in_node(&dup);
    assert_eq!(lab.tagged(save).len(), 3);
    let (good, log) = lab.agent("once", &v1, agent_iptables);
    assert!(good, "{tag}: {log}");
    assert_eq!(lab.nat(save), once, "{tag}: the duplicate was not removed");

    // The peer's public address changed: the old rule is replaced.
    let v2 = mapping(&[("PREROUTING", GW_B)]);
    let (good, log) = lab.agent("once", &v2, agent_iptables);
    assert!(good, "{tag}: {log}");
    assert_eq!(
        lab.tagged(save),
        [format!(
            "-A PREROUTING -d {PRIVATE}/32 -m comment --comment \"{TAG}cluster2\" -j DNAT --to-destination {GW_B}"
        )],
        "{tag}"
    );
    assert_eq!(connect_from(&lab.pod).as_deref(), Ok("gw-b"), "{tag}");
    assert!(
        connect_from(&lab.node).is_err(),
        "{tag}: OUTPUT rule left over"
    );

    // A bad mapping: refused, nothing changed, not ready.
    let changed = lab.nat(save);
    let (good, log) = lab.agent(
        "once",
        "PREROUTING cluster2 172.21.0.5 203.0.113.x\n",
        agent_iptables,
    );
    assert!(!good, "{tag}: a bad mapping was accepted");
    assert!(log.contains("addresses must be IPv4"), "{tag}: {log}");
    assert_eq!(lab.nat(save), changed, "{tag}");
    assert!(
        !lab.ready_file().exists(),
        "{tag}: ready after a failed pass"
    );

    // The empty mapping (what `down` rolls out): the node's ruleset exactly as before.
    let (good, log) = lab.agent("once", "# empty\n", agent_iptables);
    assert!(good, "{tag}: {log}");
    assert_eq!(lab.nat(save), before, "{tag}: empty mapping left changes");
    assert!(
        connect_from(&lab.pod).is_err(),
        "{tag}: reachable after removal"
    );

    // `remove` clears them whatever the mapping says.
    assert!(lab.agent("once", &v1, agent_iptables).0);
    assert_ne!(lab.nat(save), before);
    let (good, log) = lab.agent("remove", &v1, agent_iptables);
    assert!(good, "{tag}: {log}");
    assert_eq!(lab.nat(save), before, "{tag}: remove left changes");
}

#[test]
fn agent_script_dnats_reconciles_and_cleans_up_with_real_iptables() {
    if unsafe { libc::geteuid() } != 0 {
        return skip("root (ip netns, iptables)");
    }
    if !have("ip", "-V") || !have("iptables", "-V") || !have("iptables-save", "--version") {
        return skip("ip (iproute2) and iptables (apt-get install -y iproute2 iptables)");
    }
    if !Path::new("/bin/sh").exists() {
        return skip("sh");
    }
    // The default backend (iptables-nft on Debian bookworm), detected from the node's rules.
    let nft = have("iptables-nft", "-V");
    let legacy = have("iptables-legacy", "-V");
    if nft && legacy {
        scenario(
            "nft",
            &["sh"],
            None,
            "iptables-nft",
            "iptables-nft-save",
            "iptables-legacy-save",
        );
        // The legacy backend where the node's rules are legacy ones; the agent must find them there.
        let probe = Lab::new("probe");
        let legacy_works = run(
            "ip",
            &[
                "netns",
                "exec",
                &probe.node,
                "iptables-legacy",
                "-t",
                "nat",
                "-S",
            ],
        )
        .status
        .success();
        drop(probe);
        if legacy_works {
            scenario(
                "legacy",
                &["sh"],
                None,
                "iptables-legacy",
                "iptables-legacy-save",
                "iptables-nft-save",
            );
        } else {
            skip(
                "the legacy iptables kernel modules for the legacy-backend half (the nft half ran)",
            );
        }
    } else {
        // One backend only: whatever `iptables` is; the agent is told nothing and uses it.
        scenario(
            "default",
            &["sh"],
            None,
            "iptables",
            "iptables-save",
            "true",
        );
    }
    // BusyBox's ash, as in Alpine-based images (when this machine has busybox; Debian: apt-get install busybox).
    if have("busybox", "true") {
        scenario(
            "ash",
            &["busybox", "sh"],
            None,
            "iptables",
            "iptables-save",
            "true",
        );
    }
}

/// Polls `cond` every 100 ms for up to `secs` seconds.
fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 10 {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

#[test]
fn agent_run_mode_resyncs_follows_the_mapping_and_keeps_rules_when_stopped() {
    if unsafe { libc::geteuid() } != 0 {
        return skip("root (ip netns, iptables)");
    }
    if !have("ip", "-V") || !have("iptables", "-V") || !have("iptables-save", "--version") {
        return skip("ip (iproute2) and iptables (apt-get install -y iproute2 iptables)");
    }
    let mut lab = Lab::new("run");
    lab.listen(GW_A, "gw-a");
    lab.listen(GW_B, "gw-b");
    let map = lab.dir.join("mapping");
    std::fs::write(&map, mapping(&[("PREROUTING", GW_A)])).unwrap();
    // The DaemonSet's command, with a one-second resync.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent/dnat-agent.sh");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.node, "sh"])
        .arg(&script)
        .arg("run")
        .env("KPAAS_MESH_MAPPING", &map)
        .env("KPAAS_MESH_READY_FILE", lab.ready_file())
        .env("KPAAS_MESH_RESYNC", "1")
        .env_remove("KPAAS_MESH_IPTABLES")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id() as libc::pid_t;
    let rule_a = format!(
        "-A PREROUTING -d {PRIVATE}/32 -m comment --comment \"{TAG}cluster2\" -j DNAT --to-destination {GW_A}"
    );
    let rule_b = rule_a.replace(GW_A, GW_B);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(eventually(10, || lab.ready_file().exists()), "never ready");
        assert_eq!(lab.tagged("iptables-save"), std::slice::from_ref(&rule_a));
        assert_eq!(connect_from(&lab.pod).as_deref(), Ok("gw-a"));

        // A rule removed by hand comes back at the next pass.
        let mut del = vec!["iptables", "-w", "-t", "nat"];
        let spec = rule_a.replacen("-A", "-D", 1);
        let words: Vec<String> = split_quoted(&spec);
        del.extend(words.iter().map(String::as_str));
        lab.in_node(&del);
        assert!(lab.tagged("iptables-save").is_empty());
        assert!(
            eventually(10, || lab.tagged("iptables-save") == [rule_a.clone()]),
            "the rule did not come back"
        );

        // A changed mapping file (a ConfigMap update) is followed without a restart.
        std::fs::write(&map, mapping(&[("PREROUTING", GW_B)])).unwrap();
        assert!(
            eventually(10, || lab.tagged("iptables-save") == [rule_b.clone()]),
            "the new mapping was not applied: {:?}",
            lab.tagged("iptables-save")
        );
        assert_eq!(connect_from(&lab.pod).as_deref(), Ok("gw-b"));
    }));
    // TERM (what the kubelet sends): the agent exits 0 promptly and the rules stay.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let stopped = eventually(5, || matches!(child.try_wait(), Ok(Some(_))));
    let status = child.try_wait().ok().flatten();
    let _guard = Kill(child);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert!(stopped, "the agent did not stop on TERM");
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert_eq!(
        lab.tagged("iptables-save"),
        [rule_b],
        "rules must outlive the pod"
    );
}

/// Splits an `iptables -S` line into words, honouring double quotes.
fn split_quoted(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in line.chars() {
        match ch {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}
