//! `[[routes]]` and `[default_route]`: which sinks get which messages.

use ipnet::IpNet;
use serde::Deserialize;

/// What a route matches on; every listed condition must hold (an empty
/// list matches anything), and within one list any value may match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteMatch {
    /// Protocol types by name (`sip`, `rtcp`, `log`) or number.
    pub proto: Vec<String>,
    /// Capture agent ids.
    pub capture_id: Vec<u32>,
    /// Capture node names (chunk 0x13).
    pub node: Vec<String>,
    /// Source networks (CIDR).
    pub src_net: Vec<IpNet>,
    /// Destination networks (CIDR).
    pub dst_net: Vec<IpNet>,
    /// SIP request methods (case-insensitive); responses match on their
    /// CSeq method.
    pub sip_method: Vec<String>,
}

/// `[[routes]]`: evaluated in order; the first route that matches decides
/// which sinks get the message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name, for metrics and logs.
    pub name: String,
    /// Conditions.
    #[serde(default, rename = "match")]
    pub matches: RouteMatch,
    /// Sinks that get matching messages (may be empty: drop, counted).
    pub sinks: Vec<String>,
}

/// `[default_route]`: where messages no route matched go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultRoute {
    /// Sinks.
    pub sinks: Vec<String>,
}
