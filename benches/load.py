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
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
HEPFLOW = os.path.join(TARGET, "release", "hepflow")
LOAD = os.path.join(TARGET, "release", "hepflow-load")
LOSS_LIMIT = 0.001


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
    def __init__(self, sinks_toml, sink_name, workers=2):
        self.dir = tempfile.mkdtemp(prefix="hepflow-load-")
        self.port = free_port()
        self.api = free_port()
        self.sink = sink_name
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
sinks = ["{sink_name}"]
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

    def counts(self):
        m = self.metrics()
        return {
            "received": metric(m, "hepflow_received_total"),
            "decoded": metric(m, "hepflow_decoded_total"),
            "sent": metric(m, "hepflow_sink_sent_total", {"sink": self.sink}),
            "dropped": metric(m, "hepflow_sink_dropped_total", {"sink": self.sink}),
        }

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            s = f.read()
        return {k: int(re.search(rf"{k}:\s+(\d+)", s).group(1)) for k in ("VmRSS", "VmHWM")}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_load(args_list, timeout=120):
    out = subprocess.run([LOAD] + args_list, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"hepflow-load failed: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def settle(h, key, want, timeout=30):
    """Wait until counter `key` stops moving (or reaches want)."""
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


def step_baseline(rate, seconds):
    port = free_port()
    recv = subprocess.Popen(
        [LOAD, "recv", "--bind", f"127.0.0.1:{port}", "--duration", f"{seconds + 10}s",
         "--idle", "1s", "--recv-buffer", "33554432"],
        stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
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
    want = before[key] + sent["sent"]
    got = settle(h, key, want)
    delivered = got - before[key]
    return {"offered": rate, "sent": sent["sent"], "send_rate": sent["rate"],
            "received": delivered, "loss": max(sent["sent"] - delivered, 0) / max(sent["sent"], 1),
            "kernel_drops": kernel_rcvbuf_errors() - k0,
            "queue_dropped": h.counts()["dropped"] - before["dropped"], "rss": h.rss_kib()}


def find_max(step, rates):
    """Step the offered rate up; return (best loss-free step, all steps)."""
    steps, best = [], None
    for r in rates:
        s = step(r)
        steps.append(s)
        print(f"    offered {r or 'max':>8}: sent {s['send_rate']:>10.0f}/s  loss {100 * s['loss']:.3f} %"
              f"  kernel drops {s['kernel_drops']}", file=sys.stderr)
        if s["loss"] < LOSS_LIMIT:
            if best is None or s["send_rate"] > best["send_rate"]:
                best = s
        elif best is not None:
            break
    return best, steps


# Offered rates for scenarios whose backend, not hepflow, is the limit
# (these test servers run on the same 2 cores).
BACKEND_RATES = {
    "elasticsearch (osmem)": [1000, 2000, 5000, 10000, 20000],
    "kafka (tansu)": [5000, 10000, 20000, 50000, 100000],
}

SCENARIOS = {
    "null": ('[sinks.null]\ntype = "null"\n', "null", None),
    "file": ('[sinks.file]\ntype = "file"\npath = "@DIR@/data"\n'
             '[sinks.file.queue]\ncapacity = 262144\n', "file", None),
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=4, help="length of one rate step")
    ap.add_argument("--rates", default="50000,100000,200000,300000,400000,500000,600000,0",
                    help="offered rates to step through (0 = as fast as one sender thread can)")
    ap.add_argument("--scenarios", default="null,file",
                    help="comma list of scenario names, or 'all'")
    ap.add_argument("--soak", type=int, default=0, help="seconds of soak with the file sink (0: none)")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "hepflow", "--bin", "hepflow-load"],
                       cwd=ROOT, check=True)
    rates = [int(r) for r in args.rates.split(",")]
    names = list(SCENARIOS) if args.scenarios == "all" else args.scenarios.split(",")
    results = {"machine": {"nproc": os.cpu_count(), "kernel": platform.release(),
                           "cpu": cpu_model(), "load_before": os.getloadavg()},
               "rates": rates, "seconds_per_step": args.seconds}

    print("baseline: do-nothing receiver", file=sys.stderr)
    base, base_steps = find_max(lambda r: step_baseline(r, args.seconds), rates)
    results["baseline"] = {"best": base, "steps": base_steps}
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
        h = Hepflow(toml, sink)
        try:
            key = "sent"
            best, steps = find_max(lambda r: step_hepflow(h, r, args.seconds, key),
                                   BACKEND_RATES.get(name, rates))
            rss = h.rss_kib()
        finally:
            h.stop()
        results[name] = {"best": best, "steps": steps, "rss_kib": rss}
        rows.append((f"hepflow UDP -> {name}", best, rss))

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

    if args.soak:
        file_best = (results.get("file") or {}).get("best")
        # Half the file sink's loss-free rate (else half the baseline's).
        rate = file_best["send_rate"] / 2 if file_best else base_rate / 2
        results["soak"] = soak(args.soak, rate)

    os.makedirs(TARGET, exist_ok=True)
    with open(os.path.join(TARGET, "load-results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print_table(results, rows, base_rate)


def soak(seconds, rate):
    rate = int(rate) if rate else 100000
    h = Hepflow(SCENARIOS["file"][0], "file")
    series = []
    try:
        sender = subprocess.Popen([LOAD, "send", "--to", f"127.0.0.1:{h.port}", "--rate", str(rate),
                                   "--duration", f"{seconds}s"], stdout=subprocess.PIPE, text=True)
        start = time.time()
        while sender.poll() is None:
            time.sleep(10)
            series.append({"t": round(time.time() - start), "rss_kib": h.rss_kib()["VmRSS"]})
            print(f"    soak t={series[-1]['t']}s rss={series[-1]['rss_kib']} KiB", file=sys.stderr)
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
          f"loss limit {LOSS_LIMIT * 100} %.\n")
    print("| scenario | highest loss-free rate (msg/s) | ratio to baseline | loss there | peak RSS |")
    print("|---|---|---|---|---|")
    for name, best, rss in rows:
        if best is None:
            print(f"| {name} | none below the loss limit | - | - | - |")
            continue
        ratio = best["send_rate"] / base_rate if base_rate else 0
        peak = f"{rss['VmHWM'] / 1024:.0f} MiB" if rss else "-"
        print(f"| {name} | {best['send_rate']:.0f} | {ratio:.2f} | {100 * best['loss']:.3f} % | {peak} |")
    t = results.get("tcp_null")
    if t:
        print(f"\nTCP -> null, 4 connections: {t['delivered']:.0f} messages in {t['seconds']:.1f} s = "
              f"{t['rate']:.0f} msg/s delivered (sent {t['sent']}), peak RSS {t['rss_kib']['VmHWM'] / 1024:.0f} MiB")
    s = results.get("soak")
    if s:
        rss = [p["rss_kib"] for p in s["series"]]
        print(f"\nSoak: {s['rate']} msg/s for {len(rss) * 10} s into the file sink; RSS every 10 s (MiB): "
              + ", ".join(f"{r / 1024:.0f}" for r in rss))


if __name__ == "__main__":
    main()
