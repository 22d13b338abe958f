//! Masquerade for pod traffic leaving the cluster: one nat chain in orc's own nftables
//! table (`ip orc-nat` by default). Other tables are never read or touched.

use std::borrow::Cow;

use ipnet::Ipv4Net;
use nftables::batch::Batch;
use nftables::expr::{Expression, NamedExpression, Payload, PayloadField, Prefix};
use nftables::helper::{self, NftablesError};
use nftables::schema::{Chain, FlushObject, NfCmd, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::{Error, Result};

const POSTROUTING_CHAIN: &str = "postrouting";
/// `srcnat`, the priority of iptables' nat POSTROUTING.
const SRCNAT_PRIORITY: i32 = 100;
const RULE_COMMENT: &str = "orc: masquerade pod traffic leaving the cluster";

/// The desired masquerade rules. Blocking (`nft` runs as a child process): call it on a
/// thread that may block, in the network namespace that should hold the table.
#[derive(Debug, Clone)]
pub(crate) struct Masquerade {
    pub table: String,
    pub pod_cidr: Ipv4Net,
    pub cluster_cidr: Ipv4Net,
}

impl Masquerade {
    /// Creates or replaces the table's chain in one nft transaction: idempotent, and
    /// existing connections are not disturbed.
    pub fn apply(&self) -> Result<()> {
        let mut batch = Batch::new();
        batch.add(NfListObject::Table(self.table_obj()));
        batch.add(NfListObject::Chain(Chain {
            family: NfFamily::IP,
            table: self.table.as_str().into(),
            name: POSTROUTING_CHAIN.into(),
            _type: Some(NfChainType::NAT),
            hook: Some(NfHook::Postrouting),
            prio: Some(SRCNAT_PRIORITY),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        }));
        batch.add_cmd(NfCmd::Flush(FlushObject::Chain(Chain {
            family: NfFamily::IP,
            table: self.table.as_str().into(),
            name: POSTROUTING_CHAIN.into(),
            ..Chain::default()
        })));
        batch.add(NfListObject::Rule(self.masquerade_rule()));
        run_nft(&batch.to_nftables(), "install masquerade rules")
    }

    /// Deletes the whole table; a missing table is not an error.
    pub fn remove(&self) -> Result<()> {
        // "add" then "delete" in one transaction: succeeds whether or not it existed.
        let mut batch = Batch::new();
        batch.add(NfListObject::Table(self.table_obj()));
        batch.delete(NfListObject::Table(self.table_obj()));
        run_nft(&batch.to_nftables(), "delete the masquerade table")
    }

    fn table_obj(&self) -> Table<'_> {
        Table {
            family: NfFamily::IP,
            name: self.table.as_str().into(),
            handle: None,
        }
    }

    /// `ip saddr <pod cidr> ip daddr != <cluster cidr> masquerade`
    fn masquerade_rule(&self) -> Rule<'_> {
        let expr = vec![
            Statement::Match(Match {
                left: ip_field("saddr"),
                right: prefix(self.pod_cidr),
                op: Operator::EQ,
            }),
            Statement::Match(Match {
                left: ip_field("daddr"),
                right: prefix(self.cluster_cidr),
                op: Operator::NEQ,
            }),
            Statement::Masquerade(None),
        ];
        Rule {
            family: NfFamily::IP,
            table: self.table.as_str().into(),
            chain: POSTROUTING_CHAIN.into(),
            expr: Cow::Owned(expr),
            comment: Some(RULE_COMMENT.into()),
            ..Rule::default()
        }
    }
}

fn ip_field(field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: "ip".into(),
            field: field.into(),
        },
    )))
}

fn prefix(net: Ipv4Net) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(Expression::String(net.network().to_string().into())),
        len: u32::from(net.prefix_len()),
    }))
}

fn run_nft(ruleset: &Nftables<'_>, step: &'static str) -> Result<()> {
    helper::apply_ruleset(ruleset).map_err(|source| nft_error(step, source))
}

fn nft_error(step: &'static str, source: NftablesError) -> Error {
    let detail = match &source {
        NftablesError::NftFailed { stderr, .. } => stderr.trim().to_string(),
        _ => String::new(),
    };
    Error::Nft {
        step,
        detail,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_masquerades_pod_traffic_leaving_the_cluster_cidr() {
        let masq = Masquerade {
            table: "orc-nat".into(),
            pod_cidr: "10.42.1.0/24".parse().unwrap(),
            cluster_cidr: "10.42.0.0/16".parse().unwrap(),
        };
        let json = serde_json::to_value(masq.masquerade_rule()).unwrap();
        let expr = &json["expr"];
        assert_eq!(expr[0]["match"]["left"]["payload"]["field"], "saddr");
        assert_eq!(expr[0]["match"]["right"]["prefix"]["addr"], "10.42.1.0");
        assert_eq!(expr[0]["match"]["right"]["prefix"]["len"], 24);
        assert_eq!(expr[1]["match"]["op"], "!=");
        assert_eq!(expr[1]["match"]["right"]["prefix"]["len"], 16);
        assert!(expr[2].get("masquerade").is_some(), "{expr}");
        assert_eq!(json["table"], "orc-nat");
        assert_eq!(json["family"], "ip");
    }
}
