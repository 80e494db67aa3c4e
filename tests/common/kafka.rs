//! Kafka helpers shared by the end-to-end tests: a Tansu broker a test
//! owns (to freeze, kill and restart), reading a topic back with an
//! assigned consumer, and numbered SIP messages keyed by Call-ID.
#![allow(dead_code)]

use super::{env, unique, OwnedServer};
use hepflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use hepflow_kafka::rdkafka::message::{Headers, Message};
use hepflow_kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use hepflow_sdk::hep::{encode_v3, HepMessage};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// One record read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    pub timestamp: Option<i64>,
}

/// Read `topic` from offset 0 of every partition with an assigned
/// consumer, until `want` records arrived (then 500 ms more, to catch
/// extra ones) or `timeout` passed.
pub fn read_topic(brokers: &str, topic: &str, want: usize, timeout: Duration) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("create reader");
    let end = Instant::now() + timeout;
    let partitions = loop {
        let n = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()
            .and_then(|md| {
                md.topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                    .map(|t| t.partitions().len())
            })
            .unwrap_or(0);
        if n > 0 {
            break n;
        }
        assert!(
            Instant::now() < end,
            "topic {topic} never appeared on {brokers}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut extra_until = None;
    while Instant::now() < end && extra_until.is_none_or(|t| Instant::now() < t) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let mut headers = BTreeMap::new();
            if let Some(hs) = m.headers() {
                for i in 0..hs.count() {
                    let h = hs.get(i);
                    headers.insert(
                        h.key.to_string(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    );
                }
            }
            out.push(Record {
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                headers,
                timestamp: m.timestamp().to_millis(),
            });
            if out.len() >= want && extra_until.is_none() {
                extra_until = Some(Instant::now() + Duration::from_millis(500));
            }
        }
    }
    out
}

/// A HEP3 SIP message with Call-ID `call-{tag}-{i}@hepflow.test`.
pub fn sip_message(tag: &str, i: usize, auth_key: Option<&[u8]>) -> Vec<u8> {
    let sip = format!(
        "INVITE sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{i}\r\n\
         From: <sip:alice@example.com>;tag={i}\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: call-{tag}-{i}@hepflow.test\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let mut m = HepMessage::new_v3(bytes::Bytes::from(sip));
    m.src_ip = "10.0.0.1".parse().unwrap();
    m.dst_ip = "10.0.0.2".parse().unwrap();
    m.src_port = 5060;
    m.dst_port = 5060;
    m.ts_sec = 1_700_000_000 + i as u32;
    m.capture_id = 2001;
    m.auth_key = auth_key.map(bytes::Bytes::copy_from_slice);
    let mut out = bytes::BytesMut::new();
    encode_v3(&m, &mut out).unwrap();
    out.to_vec()
}

pub fn call_ids_in(recs: &[Record]) -> Vec<String> {
    recs.iter()
        .filter_map(|r| r.key.as_ref())
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect()
}

/// The command that runs a Tansu broker on `port` with in-memory storage
/// (from `HEPFLOW_TEST_TANSU_BIN`; Tansu's own environment variables,
/// which override its flags, removed).
pub fn tansu_command(port: u16) -> Command {
    let url = format!("tcp://127.0.0.1:{port}");
    let mut cmd = Command::new(env("HEPFLOW_TEST_TANSU_BIN"));
    cmd.args([
        "broker",
        "--listener-url",
        &url,
        "--advertised-listener-url",
        &url,
    ])
    .args(["--storage-engine", "memory://tansu/"])
    .env_remove("LISTENER_URL")
    .env_remove("ADVERTISED_LISTENER_URL")
    .env_remove("STORAGE_ENGINE")
    .env_remove("CLUSTER_ID")
    .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    cmd
}

/// A Tansu broker a test owns on `port` (in memory: a restart loses its
/// topics), its log in `log`.
pub fn own_tansu(port: u16, log: &std::path::Path) -> OwnedServer {
    OwnedServer::spawn("tansu", &mut tansu_command(port), port, log)
}
