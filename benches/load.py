#!/usr/bin/env python3
"""hepflow's load benchmark: one run, one machine, every figure as a ratio
to the do-nothing receiver's loss-free rate measured in the same run.

For each scenario it steps the offered UDP rate (hepflow-load send, one
sender thread, sendmmsg batches of 64, ~600-byte HEP3 messages) and finds
the highest rate with < 0.1 % loss, counting with hepflow's own counters
(hepflow_decoded_total; for sinks, hepflow_sink_sent_total) and the
kernel's UDP receive-buffer drop counter (/proc/net/snmp RcvbufErrors).
It then measures TCP ingest into the null sink as fast as the generator
can write, and optionally a soak (RSS sampled every 10 s).

Usage (from the repository root, release binaries are built first):
    python3 benches/load.py                      # baseline, null, file
    python3 benches/load.py --scenarios all      # + every sink whose test service is up
    python3 benches/load.py --every-sink         # + every sink at once: peak RSS at full load
    python3 benches/load.py --soak 600           # + a 10-minute soak with the file sink

Sink scenarios read the HEPFLOW_TEST_* variables written by
tests/services/services.sh (source $HEPFLOW_SERVICES_DIR/env first).
Output: a Markdown table on stdout (paste into BENCHMARKS.md) and the raw
results as JSON in target/load-results.json.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
HEPFLOW = os.path.join(TARGET, "release", "hepflow")
LOAD = os.path.join(TARGET, "release", "hepflow-load")
LOSS_LIMIT = 0.001
# A step counts as kept up only if the sink finished its backlog within
# this many seconds of the generator stopping (its batch interval is 1 s).
KEEP_UP_S = 2.0


def free_port():
    for _ in range(100):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        t.close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            u.close()
            return port
        except OSError:
            u.close()
    raise RuntimeError("no free port")


def kernel_rcvbuf_errors():
    with open("/proc/net/snmp") as f:
        lines = [l.split() for l in f if l.startswith("Udp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("RcvbufErrors")])


def metric(text, name, labels=None):
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if not m or m.group(1) != name:
            continue
        if labels and not all(f'{k}="{v}"' in (m.group(2) or "") for k, v in labels.items()):
            continue
        total += float(m.group(3))
    return total


class Hepflow:
    def __init__(self, sinks_toml, sink_names, workers=2):
        self.dir = tempfile.mkdtemp(prefix="hepflow-load-")
        self.port = free_port()
        self.api = free_port()
        self.sinks = [sink_names] if isinstance(sink_names, str) else list(sink_names)
        self.sink = self.sinks[0]
        cfg = f"""
[api]
bind = "127.0.0.1:{self.api}"
[shutdown]
grace_period = "30s"
[listeners.udp]
kind = "udp"
bind = "127.0.0.1:{self.port}"
workers = {workers}
recv_buffer_bytes = 33554432
[listeners.tcp]
kind = "tcp"
bind = "127.0.0.1:{self.port}"
{sinks_toml.replace("@DIR@", self.dir)}
[default_route]
sinks = [{", ".join(f'"{n}"' for n in self.sinks)}]
"""
        path = os.path.join(self.dir, "hepflow.toml")
        with open(path, "w") as f:
            f.write(cfg)
        self.log = open(os.path.join(self.dir, "hepflow.log"), "w")
        self.proc = subprocess.Popen([HEPFLOW, "run", "-c", path], stdout=self.log, stderr=self.log)
        for _ in range(200):
            try:
                self.metrics()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("hepflow did not start: see " + self.log.name)

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api}/metrics", timeout=5) as r:
            return r.read().decode()

    def counts(self, sink=None):
        m = self.metrics()
        sink = sink or self.sink
        return {
            "received": metric(m, "hepflow_received_total"),
            "decoded": metric(m, "hepflow_decoded_total"),
            "sent": metric(m, "hepflow_sink_sent_total", {"sink": sink}),
            "dropped": metric(m, "hepflow_sink_dropped_total", {"sink": sink}),
            "failed": metric(m, "hepflow_sink_failed_total", {"sink": sink}),
            "depth": metric(m, "hepflow_sink_queue_depth", {"sink": sink}),
            "queued": metric(m, "hepflow_sink_queued_total", {"sink": sink}),
        }

    def all_counts(self):
        return {n: self.counts(n) for n in self.sinks}

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            s = f.read()
        return {k: int(re.search(rf"{k}:\s+(\d+)", s).group(1)) for k in ("VmRSS", "VmHWM")}

    def stop_process(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def stop(self):
        self.stop_process()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_load(args_list, timeout=120):
    out = subprocess.run([LOAD] + args_list, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"hepflow-load failed: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def settle(h, key, want, timeout=30):
    """Wait until counter `key` reaches `want` or stops moving for 1 s."""
    last, still = -1, 0
    end = time.time() + timeout
    while time.time() < end:
        v = h.counts()[key]
        if v >= want:
            return v
        still = still + 1 if v == last else 0
        if still >= 10:
            return v
        last = v
        time.sleep(0.1)
    return h.counts()[key]


def drain(h, sink, want, timeout=180):
    """Wait until the sink has dealt with every message it was offered:
    sent + dropped + failed reaches `want`; or everything its queue
    accepted is sent or failed (queue empty, no write in flight: messages
    lost before the queue, at the socket, never reach it); or, as a last
    resort, nothing has moved for 30 s. Returns (counts, seconds waited).

    A slow backend (Elasticsearch, Kafka) still works through its queue
    after the generator stops: counting it then would report delay as
    loss. The seconds spent draining are reported instead: a sink that
    needs long to drain did not keep up with the offered rate."""
    start = time.time()
    last, still = None, 0
    while time.time() - start < timeout:
        c = h.counts(sink)
        if c["sent"] + c["dropped"] + c["failed"] >= want:
            return c, time.time() - start
        settled = c["depth"] == 0 and c["sent"] + c["failed"] >= c["queued"]
        moving = (c["received"], c["sent"], c["dropped"], c["failed"])
        if settled and moving == last:
            return c, time.time() - start
        # A write in flight to a slow backend can take seconds: only a sink
        # stuck for 30 s is given up on.
        still = still + 1 if moving == last else 0
        if still >= 300:
            return c, time.time() - start
        last = moving
        time.sleep(0.1)
    return h.counts(sink), time.time() - start


def step_baseline(rate, seconds):
    port = free_port()
    recv = subprocess.Popen(
        [LOAD, "recv", "--bind", f"127.0.0.1:{port}", "--duration", f"{seconds + 10}s",
         "--idle", "1s", "--recv-buffer", "33554432"],
        stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)  # let it bind and start reading (a loaded machine is slow to start it)
    k0 = kernel_rcvbuf_errors()
    sent = run_load(["send", "--to", f"127.0.0.1:{port}", "--rate", str(rate),
                     "--duration", f"{seconds}s"])
    got = json.loads(recv.communicate(timeout=seconds + 20)[0].strip().splitlines()[-1])
    lost = sent["sent"] - got["unique_ids"]
    return {"offered": rate, "sent": sent["sent"], "send_rate": sent["rate"],
            "received": got["unique_ids"], "loss": max(lost, 0) / max(sent["sent"], 1),
            "kernel_drops": kernel_rcvbuf_errors() - k0}


def step_hepflow(h, rate, seconds, key):
    before = h.counts()
    k0 = kernel_rcvbuf_errors()
    sent = run_load(["send", "--to", f"127.0.0.1:{h.port}", "--rate", str(rate),
                     "--duration", f"{seconds}s"])
    want = before["sent"] + before["dropped"] + before["failed"] + sent["sent"]
    after, drain_s = drain(h, h.sink, want)
    delivered = after[key] - before[key]
    return {"offered": rate, "sent": sent["sent"], "send_rate": sent["rate"],
            "received": delivered, "loss": max(sent["sent"] - delivered, 0) / max(sent["sent"], 1),
            "kernel_drops": kernel_rcvbuf_errors() - k0, "drain_s": drain_s,
            "sustained_rate": delivered / (sent["seconds"] + drain_s),
            "queue_dropped": after["dropped"] - before["dropped"],
            "failed": after["failed"] - before["failed"], "rss": h.rss_kib()}


def find_max(step, rates):
    """Step the offered rate up; return (best loss-free step, all steps).
    Loss-free: < 0.1 % lost and the backlog drained within KEEP_UP_S."""
    steps, best = [], None
    for r in rates:
        s = step(r)
        steps.append(s)
        drain_s = s.get("drain_s", 0.0)
        print(f"    offered {r or 'max':>8}: sent {s['send_rate']:>10.0f}/s  loss {100 * s['loss']:.3f} %"
              f"  kernel drops {s['kernel_drops']}  drained in {drain_s:.1f} s", file=sys.stderr)
        if s["loss"] < LOSS_LIMIT and drain_s <= KEEP_UP_S:
            if best is None or s["send_rate"] > best["send_rate"]:
                best = s
        elif best is not None:
            break
    return best, steps


# Offered rates for scenarios whose backend, not hepflow, is the limit
# (these test servers run on the same 2 cores).
BACKEND_RATES = {
    "elasticsearch (osmem)": [250, 500, 1000, 2000],
    "kafka (tansu)": [5000, 10000, 20000, 50000, 100000],
}

SCENARIOS = {
    "null": ('[sinks.null]\ntype = "null"\n', "null", None),
    "file": ('[sinks.file]\ntype = "file"\npath = "@DIR@/data"\n', "file", None),
    "elasticsearch (osmem)": (
        '[sinks.es]\ntype = "elasticsearch"\nurls = ["{HEPFLOW_TEST_OSMEM_URL}"]\n', "es",
        "HEPFLOW_TEST_OSMEM_URL"),
    "influxdb (v1, 1.6.7)": (
        '[sinks.influx]\ntype = "influxdb"\napi = "v1"\nurl = "{HEPFLOW_TEST_INFLUXDB_URL}"\n'
        'database = "hepflow_load"\ncreate_database = true\n', "influx", "HEPFLOW_TEST_INFLUXDB_URL"),
    "kafka (tansu)": (
        '[sinks.kafka]\ntype = "kafka"\nbrokers = ["{HEPFLOW_TEST_TANSU}"]\n', "kafka",
        "HEPFLOW_TEST_TANSU"),
}


def reset_es_indices():
    """Delete the `hep-*` indices in the test Elasticsearch server, so each
    run starts from empty indices (osmem-server slows down as its
    in-memory indices grow: runs would otherwise depend on earlier ones)."""
    url = os.environ.get("HEPFLOW_TEST_OSMEM_URL")
    if url:
        req = urllib.request.Request(f"{url}/hep-*", method="DELETE")
        try:
            urllib.request.urlopen(req, timeout=60).read()
        except OSError as e:
            print(f"    could not delete the hep-* indices: {e}", file=sys.stderr)


def sample_documents(n):
    """n event documents as hepflow writes them (the file sink's NDJSON
    lines for n generated messages)."""
    h = Hepflow(SCENARIOS["file"][0], "file")
    try:
        run_load(["send", "--to", f"127.0.0.1:{h.port}", "--rate", "20000", "--count", str(n)])
        settle(h, "sent", n)
        h.stop_process()
        lines = []
        data = os.path.join(h.dir, "data")
        for name in sorted(os.listdir(data)):
            with open(os.path.join(data, name)) as f:
                lines.extend(f)
    finally:
        h.stop()
    return lines


def es_direct_rate(url, lines, per_request=1000):
    """Bulk-index `lines` straight into the server, one request at a time
    of `per_request` documents, into the index hepflow would use
    (hep-{proto}-YYYY.MM.DD): the backend's own rate for the same
    documents, the baseline of the Elasticsearch row."""
    start = time.time()
    for i in range(0, len(lines), per_request):
        body = []
        for line in lines[i:i + per_request]:
            doc = json.loads(line)
            index = f"hep-{doc['proto']}-{doc['@timestamp'][:10].replace('-', '.')}"
            body.append(json.dumps({"create": {"_index": index}}) + "\n" + line)
        req = urllib.request.Request(url.rstrip("/") + "/_bulk", data="".join(body).encode(),
                                     headers={"Content-Type": "application/x-ndjson"})
        with urllib.request.urlopen(req, timeout=300) as r:
            reply = json.loads(r.read())
        if reply.get("errors"):
            raise RuntimeError("direct bulk into the test server reported errors")
    return len(lines) / (time.time() - start)


class MemorySampler:
    """Samples hepflow's RSS and each sink queue's bytes every 0.2 s in the
    background; stop() returns the sample with the highest RSS (what the
    memory was made of at the peak)."""

    def __init__(self, h, names):
        self.h, self.names, self.best, self.fullest = h, names, None, None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.wait(0.2):
            try:
                m = self.h.metrics()
                rss = self.h.rss_kib()["VmRSS"] / 1024
            except (OSError, AttributeError):
                continue
            sample = {
                "rss_mib": rss,
                "heap_in_use_mib": metric(m, "hepflow_heap_in_use_bytes") / 2**20,
                "heap_free_mib": metric(m, "hepflow_heap_free_bytes") / 2**20,
                "queue_mib": {n: metric(m, "hepflow_sink_queue_bytes", {"sink": n}) / 2**20
                              for n in self.names},
                "hep_target_depth": metric(m, "hepflow_hep_target_queue_depth"),
            }
            if self.best is None or rss > self.best["rss_mib"]:
                self.best = sample
            queued = sum(sample["queue_mib"].values())
            if self.fullest is None or queued > sum(self.fullest["queue_mib"].values()):
                self.fullest = sample

    def stop(self):
        self.done.set()
        self.thread.join()
        return self.best and dict(self.best, fullest=self.fullest)


def every_sink(rates, seconds):
    """Every sink configured at once, each with its default queue, all fed
    by the default route: the memory bound under full load. Slow backends
    fall behind and drop (drop_newest) at their queue bound; what matters
    here is peak RSS and that the fast sinks keep up beside them."""
    port = free_port()
    recv = subprocess.Popen(
        [LOAD, "recv", "--bind", f"127.0.0.1:{port}", "--duration", f"{len(rates) * (seconds + 130) + 60}s",
         "--idle", f"{len(rates) * (seconds + 130) + 60}s", "--recv-buffer", "33554432"],
        stdout=subprocess.PIPE, text=True)
    toml = ('[sinks.null]\ntype = "null"\n'
            '[sinks.file]\ntype = "file"\npath = "@DIR@/data"\n'
            f'[sinks.hep]\ntype = "hep"\ntargets = ["udp://127.0.0.1:{port}"]\n')
    names = ["null", "file", "hep"]
    for scenario, sink in (("elasticsearch (osmem)", "es"), ("influxdb (v1, 1.6.7)", "influx"),
                           ("kafka (tansu)", "kafka")):
        stoml, _, env = SCENARIOS[scenario]
        if env in os.environ:
            toml += stoml.format(**os.environ)
            names.append(sink)
        else:
            print(f"    every sink: {sink} left out ({env} not set)", file=sys.stderr)
    reset_es_indices()
    h = Hepflow(toml, names)
    steps = []
    try:
        for rate in rates:
            before = h.all_counts()
            sampler = MemorySampler(h, names)
            sent = run_load(["send", "--to", f"127.0.0.1:{h.port}", "--rate", str(rate),
                             "--duration", f"{seconds}s"])
            rss_after_send = h.rss_kib()
            per_sink = {}
            for n in names:
                b = before[n]
                want = b["sent"] + b["dropped"] + b["failed"] + sent["sent"]
                c, drain_s = drain(h, n, want, timeout=20)
                per_sink[n] = {k: c[k] - b[k] for k in ("sent", "dropped", "failed")}
                per_sink[n]["drain_s"] = drain_s
            peak = sampler.stop()
            step = {"offered": rate, "sent": sent["sent"], "send_rate": sent["rate"],
                    "rss_after_send": rss_after_send, "rss": h.rss_kib(), "sinks": per_sink,
                    "at_peak": peak}
            steps.append(step)
            print(f"    offered {rate or 'max':>8}: sent {sent['rate']:>10.0f}/s  RSS peak "
                  f"{step['rss']['VmHWM'] / 1024:.0f} MiB  "
                  + "  ".join(f"{n} {100 * v['sent'] / max(sent['sent'], 1):.1f} %" for n, v in per_sink.items()),
                  file=sys.stderr)
            if peak:
                print(f"      at the highest RSS sampled ({peak['rss_mib']:.0f} MiB): heap in use "
                      f"{peak['heap_in_use_mib']:.0f} MiB, free {peak['heap_free_mib']:.0f} MiB; queue bytes "
                      + "  ".join(f"{n} {v:.1f}" for n, v in peak["queue_mib"].items())
                      + f" MiB (sum {sum(peak['queue_mib'].values()):.1f}); hep target queue "
                      f"{peak['hep_target_depth']:.0f} msgs", file=sys.stderr)
                f = peak["fullest"]
                print(f"      with the queues fullest (RSS {f['rss_mib']:.0f} MiB, heap in use "
                      f"{f['heap_in_use_mib']:.0f}, free {f['heap_free_mib']:.0f}): queue bytes "
                      + "  ".join(f"{n} {v:.1f}" for n, v in f["queue_mib"].items())
                      + f" MiB (sum {sum(f['queue_mib'].values()):.1f})", file=sys.stderr)
    finally:
        h.stop()
        recv.terminate()
        recv.wait(10)
    return {"sinks": names, "steps": steps}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=4, help="length of one rate step")
    ap.add_argument("--rates", default="50000,100000,200000,300000,400000,500000,600000,0",
                    help="offered rates to step through (0 = as fast as one sender thread can)")
    ap.add_argument("--scenarios", default="null,file",
                    help="comma list of scenario names, or 'all'")
    ap.add_argument("--every-sink", action="store_true",
                    help="also run every sink at once (peak RSS at full load)")
    ap.add_argument("--every-sink-rates", default="100000,200000,0",
                    help="offered rates of the every-sink run (0 = as fast as one sender thread can)")
    ap.add_argument("--soak", type=int, default=0, help="seconds of soak with the file sink (0: none)")
    ap.add_argument("--soak-rate", type=int, default=0,
                    help="soak rate in msg/s (default: half the file sink's loss-free rate of this run)")
    ap.add_argument("--baseline-passes", type=int, default=2,
                    help="passes of the do-nothing receiver; the baseline is the best of them")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "hepflow", "--bin", "hepflow-load"],
                       cwd=ROOT, check=True)
    rates = [int(r) for r in args.rates.split(",")]
    names = list(SCENARIOS) if args.scenarios == "all" else [n for n in args.scenarios.split(",") if n]
    results = {"machine": {"nproc": os.cpu_count(), "kernel": platform.release(),
                           "cpu": cpu_model(), "load_before": os.getloadavg()},
               "rates": rates, "seconds_per_step": args.seconds}

    # The do-nothing receiver measures the machine, and a busy moment can
    # only lower what it manages: the baseline is the best of a few passes
    # (hepflow's scenarios get one pass each, so ratios err against hepflow).
    base, base_steps = None, []
    for p in range(args.baseline_passes):
        print(f"baseline: do-nothing receiver (pass {p + 1} of {args.baseline_passes})", file=sys.stderr)
        best, steps = find_max(lambda r: step_baseline(r, args.seconds), rates)
        base_steps += steps
        if best and (base is None or best["send_rate"] > base["send_rate"]):
            base = best
    results["baseline"] = {"best": base, "steps": base_steps, "passes": args.baseline_passes}
    base_rate = base["send_rate"] if base else 0

    rows = [("do-nothing receiver (baseline)", base, None)]
    for name in names:
        toml, sink, env = SCENARIOS[name]
        if env and env not in os.environ:
            print(f"{name}: skipped ({env} not set; start tests/services/services.sh and source its env)",
                  file=sys.stderr)
            continue
        toml = toml.format(**os.environ)
        print(f"hepflow -> {name}", file=sys.stderr)
        if sink == "es":
            reset_es_indices()
        h = Hepflow(toml, sink)
        try:
            key = "sent"
            best, steps = find_max(lambda r: step_hepflow(h, r, args.seconds, key),
                                   BACKEND_RATES.get(name, rates))
            capacity = None
            if name in BACKEND_RATES:
                # The sink's own throughput: offer more than the backend
                # takes (within the queue's bounds), time until all is in.
                # Into empty indices, as the direct baseline below: osmem
                # slows down as its indices grow, so the two are compared
                # from the same start with the same number of documents.
                if sink == "es":
                    reset_es_indices()
                capacity = step_hepflow(h, BACKEND_RATES[name][-1], args.seconds, key)
                print(f"    capacity step: {capacity['received']} of {capacity['sent']} delivered in "
                      f"{args.seconds} s + {capacity['drain_s']:.1f} s drain = "
                      f"{capacity['sustained_rate']:.0f} msg/s", file=sys.stderr)
            rss = h.rss_kib()
        finally:
            h.stop()
        results[name] = {"best": best, "steps": steps, "rss_kib": rss, "capacity": capacity}
        rows.append((f"hepflow UDP -> {name}", best, rss))
        if name == "elasticsearch (osmem)":
            lines = sample_documents(int(capacity["sent"]))
            reset_es_indices()
            direct = es_direct_rate(os.environ["HEPFLOW_TEST_OSMEM_URL"], lines)
            sustained = capacity["sustained_rate"]
            results["es_direct"] = {"docs": len(lines), "rate": direct, "hepflow_sustained": sustained}
            print(f"    osmem's own bulk rate for {len(lines)} of the same documents: {direct:.0f} docs/s; "
                  f"hepflow's sustained rate into it: {sustained:.0f} msg/s", file=sys.stderr)

    print("hepflow TCP -> null (4 connections, as fast as possible)", file=sys.stderr)
    h = Hepflow(SCENARIOS["null"][0], "null")
    try:
        before = h.counts()["sent"]
        t = run_load(["send", "--proto", "tcp", "--threads", "4", "--to", f"127.0.0.1:{h.port}",
                      "--duration", f"{args.seconds * 2}s", "--batch", "256"])
        got = settle(h, "sent", before + t["sent"]) - before
        results["tcp_null"] = {"sent": t["sent"], "delivered": got, "seconds": t["seconds"],
                               "rate": got / t["seconds"], "rss_kib": h.rss_kib()}
    finally:
        h.stop()

    if args.every_sink:
        print("hepflow -> every sink at once", file=sys.stderr)
        results["every_sink"] = every_sink([int(r) for r in args.every_sink_rates.split(",")],
                                           args.seconds)

    if args.soak:
        file_best = (results.get("file") or {}).get("best")
        # Half the file sink's loss-free rate (else half the baseline's).
        rate = file_best["send_rate"] / 2 if file_best else base_rate / 2
        rate = args.soak_rate or rate
        results["soak"] = soak(args.soak, rate)

    os.makedirs(TARGET, exist_ok=True)
    with open(os.path.join(TARGET, "load-results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print_table(results, rows, base_rate)


def soak(seconds, rate):
    rate = int(rate) if rate else 100000
    # Rotation and retention bound the disk the soak uses (~1 GiB): at
    # 100 k msg/s the file sink writes ~60 GB in 10 minutes.
    h = Hepflow(SCENARIOS["file"][0] + "rotate_bytes = 268435456\nmax_files = 4\n", "file")
    series = []
    try:
        sender = subprocess.Popen([LOAD, "send", "--to", f"127.0.0.1:{h.port}", "--rate", str(rate),
                                   "--duration", f"{seconds}s"], stdout=subprocess.PIPE, text=True)
        start = time.time()
        while sender.poll() is None:
            time.sleep(10)
            m = h.metrics()
            series.append({"t": round(time.time() - start), "rss_kib": h.rss_kib()["VmRSS"],
                           "heap_in_use": metric(m, "hepflow_heap_in_use_bytes"),
                           "heap_free": metric(m, "hepflow_heap_free_bytes"),
                           "heap_trims": metric(m, "hepflow_heap_trims_total")})
            p = series[-1]
            print(f"    soak t={p['t']}s rss={p['rss_kib']} KiB heap in use {p['heap_in_use'] / 2**20:.1f} MiB "
                  f"free {p['heap_free'] / 2**20:.1f} MiB trims {p['heap_trims']:.0f}", file=sys.stderr)
        sent = json.loads(sender.stdout.read().strip().splitlines()[-1])
        got = settle(h, "sent", h.counts()["sent"])
    finally:
        h.stop()
    return {"rate": rate, "sent": sent["sent"], "delivered": got, "series": series}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def print_table(results, rows, base_rate):
    print(f"Machine: {results['machine']['nproc']} cores, {results['machine']['cpu']}, "
          f"kernel {results['machine']['kernel']}; load average before: "
          f"{', '.join(f'{x:.2f}' for x in results['machine']['load_before'])}")
    print(f"Each step {results['seconds_per_step']} s, one sender thread (sendmmsg x64), "
          f"loss limit {LOSS_LIMIT * 100} %; the baseline is the best of "
          f"{results['baseline']['passes']} passes.\n")
    print("| scenario | highest loss-free rate (msg/s) | ratio to baseline | loss there | drained in | peak RSS |")
    print("|---|---|---|---|---|---|")
    for name, best, rss in rows:
        if best is None:
            print(f"| {name} | none below the loss limit | - | - | - | - |")
            continue
        ratio = best["send_rate"] / base_rate if base_rate else 0
        peak = f"{rss['VmHWM'] / 1024:.0f} MiB" if rss else "-"
        drained = f"{best['drain_s']:.1f} s" if "drain_s" in best else "-"
        print(f"| {name} | {best['send_rate']:.0f} | {ratio:.2f} | {100 * best['loss']:.3f} % | {drained} | {peak} |")
    for name in BACKEND_RATES:
        c = (results.get(name) or {}).get("capacity")
        if c:
            print(f"\n{name}: capacity step at {c['offered']} msg/s offered for {results['seconds_per_step']} s: "
                  f"{c['received']:.0f} of {c['sent']} delivered, the last {c['drain_s']:.1f} s after the "
                  f"generator stopped: {c['sustained_rate']:.0f} msg/s sustained.")
    d = results.get("es_direct")
    if d:
        print(f"\nElasticsearch backend baseline: osmem-server indexes {d['docs']} of the same documents, "
              f"sent straight to it into emptied indices in 1000-document bulk requests one at a time, "
              f"at {d['rate']:.0f} docs/s; "
              f"hepflow's sustained rate into it (capacity step: delivered / (send + drain time)) was "
              f"{d['hepflow_sustained']:.0f} msg/s = {d['hepflow_sustained'] / d['rate']:.2f} of that.")
    t = results.get("tcp_null")
    if t:
        print(f"\nTCP -> null, 4 connections: {t['delivered']:.0f} messages in {t['seconds']:.1f} s = "
              f"{t['rate']:.0f} msg/s delivered (sent {t['sent']}), peak RSS {t['rss_kib']['VmHWM'] / 1024:.0f} MiB")
    e = results.get("every_sink")
    if e:
        print("\nEvery sink at once (" + ", ".join(e["sinks"]) + "), default queues; share of the "
              "messages sent that each sink delivered, and hepflow's peak RSS:\n")
        print("| offered (msg/s) | sent (msg/s) | " + " | ".join(e["sinks"]) + " | peak RSS |")
        print("|---" * (len(e["sinks"]) + 3) + "|")
        for st in e["steps"]:
            cells = [f"{100 * st['sinks'][n]['sent'] / max(st['sent'], 1):.1f} %" for n in e["sinks"]]
            print(f"| {st['offered'] or 'max'} | {st['send_rate']:.0f} | " + " | ".join(cells)
                  + f" | {st['rss']['VmHWM'] / 1024:.0f} MiB |")
    s = results.get("soak")
    if s:
        rss = [p["rss_kib"] for p in s["series"]]
        lost = s["sent"] - s["delivered"]
        print(f"\nSoak: {s['rate']} msg/s for {len(rss) * 10} s into the file sink; {s['sent']} sent, "
              f"{s['delivered']:.0f} written ({100 * lost / max(s['sent'], 1):.2f} % lost); RSS every 10 s (MiB): "
              + ", ".join(f"{r / 1024:.0f}" for r in rss)
              + "; heap in use (MiB): " + ", ".join(f"{p['heap_in_use'] / 2**20:.0f}" for p in s["series"])
              + "; heap free (MiB): " + ", ".join(f"{p['heap_free'] / 2**20:.0f}" for p in s["series"]))


if __name__ == "__main__":
    main()
