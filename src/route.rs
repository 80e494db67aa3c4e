//! Routing: compiled `[[routes]]` that decide, per message, which sinks get
//! it. Routes are tried in order and the first match wins; messages no route
//! matches go to `[default_route]`. A route's sinks are a bit set over the
//! sink indices, so routing allocates nothing.

use crate::config::{Config, RouteConfig};
use hepflow_sdk::hep::proto_type_from_name;
use hepflow_sdk::metrics::{Counter, Registry};
use hepflow_sdk::Event;
use ipnet::IpNet;

/// Most sinks one process can have (the width of [`SinkSet`]).
pub use crate::config::MAX_SINKS;

/// A set of sink indices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkSet(pub u64);

impl SinkSet {
    /// Whether sink `i` is in the set.
    pub fn contains(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }
    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

struct CompiledRoute {
    protos: Option<[bool; 256]>,
    capture_ids: Vec<u32>,
    nodes: Vec<String>,
    src_nets: Vec<IpNet>,
    dst_nets: Vec<IpNet>,
    sip_methods: Vec<String>,
    sinks: SinkSet,
    matched: Counter,
}

impl CompiledRoute {
    fn matches(&self, ev: &Event) -> bool {
        let m = ev.hep();
        if let Some(p) = &self.protos {
            if !p[m.proto_type as usize] {
                return false;
            }
        }
        if !self.capture_ids.is_empty() && !self.capture_ids.contains(&m.capture_id) {
            return false;
        }
        if !self.nodes.is_empty() {
            let Some(node) = m.node_name.as_deref() else {
                return false;
            };
            if !self.nodes.iter().any(|n| n.as_bytes() == node) {
                return false;
            }
        }
        if !self.src_nets.is_empty() && !self.src_nets.iter().any(|n| n.contains(&m.src_ip)) {
            return false;
        }
        if !self.dst_nets.is_empty() && !self.dst_nets.iter().any(|n| n.contains(&m.dst_ip)) {
            return false;
        }
        if !self.sip_methods.is_empty() {
            let Some(sip) = ev.sip() else {
                return false;
            };
            let method = sip
                .method()
                .or_else(|| sip.cseq_method.as_ref().map(|m| m.as_str()));
            let Some(method) = method else {
                return false;
            };
            if !self
                .sip_methods
                .iter()
                .any(|x| x.eq_ignore_ascii_case(method))
            {
                return false;
            }
        }
        true
    }
}

/// The compiled routing table.
pub struct Router {
    routes: Vec<CompiledRoute>,
    default: SinkSet,
    default_matched: Counter,
    unrouted: Counter,
}

fn sink_set(names: &[String], sink_names: &[String]) -> SinkSet {
    let mut set = 0u64;
    for n in names {
        if let Some(i) = sink_names.iter().position(|s| s == n) {
            set |= 1 << i;
        }
    }
    SinkSet(set)
}

fn compile(r: &RouteConfig, sink_names: &[String], registry: &Registry) -> CompiledRoute {
    let protos = (!r.matches.proto.is_empty()).then(|| {
        let mut p = [false; 256];
        for name in &r.matches.proto {
            if let Some(n) = proto_type_from_name(name) {
                p[n as usize] = true;
            }
        }
        p
    });
    CompiledRoute {
        protos,
        capture_ids: r.matches.capture_id.clone(),
        nodes: r.matches.node.clone(),
        src_nets: r.matches.src_net.clone(),
        dst_nets: r.matches.dst_net.clone(),
        sip_methods: r.matches.sip_method.clone(),
        sinks: sink_set(&r.sinks, sink_names),
        matched: registry.counter(
            "hepflow_route_matched_total",
            "Messages each route matched",
            &[("route", &r.name)],
        ),
    }
}

impl Router {
    /// Compile the routes of `cfg`; `sink_names[i]` is the sink with index `i`.
    pub fn new(cfg: &Config, sink_names: &[String], registry: &Registry) -> Self {
        Router {
            routes: cfg
                .routes
                .iter()
                .map(|r| compile(r, sink_names, registry))
                .collect(),
            default: sink_set(&cfg.default_route.sinks, sink_names),
            default_matched: registry.counter(
                "hepflow_route_matched_total",
                "Messages each route matched",
                &[("route", "default")],
            ),
            unrouted: registry.counter(
                "hepflow_unrouted_total",
                "Messages whose route named no sink (dropped)",
                &[],
            ),
        }
    }

    /// The sinks that get `ev`.
    pub fn route(&self, ev: &Event) -> SinkSet {
        let set = match self.routes.iter().find(|r| r.matches(ev)) {
            Some(r) => {
                r.matched.inc();
                r.sinks
            }
            None => {
                self.default_matched.inc();
                self.default
            }
        };
        if set.is_empty() {
            self.unrouted.inc();
        }
        set
    }
}
