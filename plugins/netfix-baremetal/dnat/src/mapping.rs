//! The DNAT mapping of one source cluster: which rules the agent keeps on its nodes, the text form the agent
//! reads from the ConfigMap (`CHAIN PEER PRIVATE PUBLIC` per line, see `agent/dnat-agent.sh`), its parser (for
//! `status`/`check`, which compare what is deployed with what should be) and the checksum that rolls the
//! DaemonSet when the mapping changes.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The nat chain a rule goes in: PREROUTING for traffic from pods (the guide), OUTPUT for the node's own
/// (host-network) traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Chain {
    Prerouting,
    Output,
}

impl Chain {
    pub fn as_str(self) -> &'static str {
        match self {
            Chain::Prerouting => "PREROUTING",
            Chain::Output => "OUTPUT",
        }
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Chain {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "PREROUTING" => Ok(Chain::Prerouting),
            "OUTPUT" => Ok(Chain::Output),
            other => Err(format!("chain must be PREROUTING or OUTPUT, got {other:?}")),
        }
    }
}

/// How one peer cluster's gateway is reached: its LoadBalancer (private) addresses, as the links use them, and
/// the public address traffic to them is rewritten to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnatTarget {
    pub private: Vec<Ipv4Addr>,
    pub public: Ipv4Addr,
}

/// Every cluster's gateway, by cluster name: what each source cluster DNATs for its peers.
pub type DnatTargets = BTreeMap<String, DnatTarget>;

/// One rule on every node of a source cluster:
/// `iptables -t nat -I <chain> -d <private>/32 -m comment --comment "kpaas-mesh netfix peer=<peer>"
///  -j DNAT --to-destination <public>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DnatRule {
    pub chain: Chain,
    pub peer: String,
    pub private: Ipv4Addr,
    pub public: Ipv4Addr,
}

impl DnatRule {
    /// The `iptables` command the guide has operators type, with the agent's tag.
    pub fn command(&self) -> String {
        format!(
            "iptables -t nat -I {} -d {}/32 -m comment --comment \"{} peer={}\" -j DNAT --to-destination {}",
            self.chain,
            self.private,
            crate::RULE_TAG,
            self.peer,
            self.public
        )
    }
}

/// The rules of `source`'s nodes: for every other cluster of `targets`, each private address to its public one,
/// in PREROUTING (and OUTPUT too when `output_chain`). Sorted by peer, chain, private address.
pub fn rules_for(source: &str, targets: &DnatTargets, output_chain: bool) -> Vec<DnatRule> {
    let mut chains = vec![Chain::Prerouting];
    if output_chain {
        chains.push(Chain::Output);
    }
    let mut rules = Vec::new();
    for (peer, t) in targets.iter().filter(|(name, _)| name.as_str() != source) {
        for chain in &chains {
            for private in &t.private {
                rules.push(DnatRule {
                    chain: *chain,
                    peer: peer.clone(),
                    private: *private,
                    public: t.public,
                });
            }
        }
    }
    rules.sort();
    rules.dedup();
    rules
}

/// The mapping file for `source`'s agents (one line per rule after a header comment). An empty rule list gives
/// the mapping that removes every rule.
pub fn render_mapping(source: &str, rules: &[DnatRule]) -> String {
    let mut out = format!(
        "# kpaas-mesh netfix DNAT mapping for the nodes of {source}: CHAIN PEER PRIVATE PUBLIC\n"
    );
    if rules.is_empty() {
        out.push_str("# (empty: the agents remove every rule they made)\n");
    }
    for r in rules {
        out.push_str(&format!(
            "{} {} {} {}\n",
            r.chain, r.peer, r.private, r.public
        ));
    }
    out
}

/// Reads a mapping as the agent does (blank lines and `#` comments ignored); an error names the line.
pub fn parse_mapping(text: &str) -> Result<Vec<DnatRule>, String> {
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [chain, peer, private, public] = fields[..] else {
            return Err(format!(
                "mapping line {}: want 'CHAIN PEER PRIVATE PUBLIC', got {line:?}",
                i + 1
            ));
        };
        let addr = |s: &str| {
            s.parse::<Ipv4Addr>()
                .map_err(|_| format!("mapping line {}: {s:?} is not an IPv4 address", i + 1))
        };
        rules.push(DnatRule {
            chain: chain
                .parse()
                .map_err(|e| format!("mapping line {}: {e}", i + 1))?,
            peer: peer.to_string(),
            private: addr(private)?,
            public: addr(public)?,
        });
    }
    Ok(rules)
}

/// A stable checksum of `parts` (64-bit FNV-1a over each part and a separator, hex): it detects a changed
/// mapping or agent script, it is not a security measure.
pub fn checksum(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0u8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}
