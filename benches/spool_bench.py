#!/usr/bin/env python3
"""The cost and the worth of the disk spool, measured side by side in one
run on one machine (load.py's machinery: hepflow-load over UDP, hepflow's
own counters).

1. Throughput: for the file and Kafka sinks, the highest loss-free UDP
   rate with `spool.mode` off, overflow and always (a healthy backend),
   and each mode's ratio to off.
2. Outage: a HEP forward sink (overflow spool) to a second hepflow over
   TCP at a steady rate; the receiver is frozen (SIGSTOP) for
   `--outage` seconds, then resumed. Reports the backlog at the resume,
   how fast it drained (delivered per second while new traffic kept
   flowing, as a multiple of the ingest rate), messages lost, and the
   sender's peak RSS during the outage (the backlog is on disk, not in
   memory).

Usage (repository root; release binaries are built first):
    python3 benches/spool_bench.py                       # both parts
    python3 benches/spool_bench.py --part throughput
    python3 benches/spool_bench.py --part outage --outage 600 --rate 20000

The Kafka rows read HEPFLOW_TEST_TANSU (source the test services' env
file first); without it they are skipped.
"""

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402

MODES = ["off", "overflow", "always"]
SPOOL_EXTRA = ""


def spool_toml(section, mode):
    if mode == "off":
        return ""
    return (f'[sinks.{section}.spool]\nmode = "{mode}"\ndir = "@DIR@/spool-{section}"\n'
            'max_bytes = "16GiB"\n' + SPOOL_EXTRA)


def throughput(rates_file, rates_kafka, seconds, rounds, only):
    rows = []
    sinks = [("file", '[sinks.file]\ntype = "file"\npath = "@DIR@/data"\n', rates_file)]
    if os.environ.get("HEPFLOW_TEST_TANSU") and "kafka" in only:
        sinks.append(("kafka", f'[sinks.kafka]\ntype = "kafka"\nbrokers = ["{os.environ["HEPFLOW_TEST_TANSU"]}"]\n'
                               f'topic = "spool-bench"\n', rates_kafka))
    for name, toml, rates in sinks:
        if name not in only:
            continue
        best = {m: [] for m in MODES}
        for r in range(rounds):
            # Alternate the order each round so drift hits every mode alike.
            order = MODES if r % 2 == 0 else list(reversed(MODES))
            for mode in order:
                print(f"  {name} spool={mode} round {r + 1}", file=sys.stderr)
                h = load.Hepflow(toml + spool_toml(name, mode), name)
                try:
                    b, _ = load.find_max(lambda rate: load.step_hepflow(h, rate, seconds, "sent"), rates)
                finally:
                    h.stop()
                best[mode].append(b["send_rate"] if b else 0.0)
        med = {m: sorted(v)[len(v) // 2] for m, v in best.items()}
        for m in MODES:
            base = med.get("off", 0.0)
            rows.append((name, m, med[m], med[m] / base if base else 0.0, best[m]))
    print("\n| sink | spool | best loss-free rate (msg/s, median) | ratio to off | each round |")
    print("|---|---|---|---|---|")
    for name, m, rate, ratio, each in rows:
        print(f"| {name} | {m} | {rate:,.0f} | {ratio:.2f} | {', '.join(f'{x:,.0f}' for x in each)} |")


def outage(rate, outage_s, before_s, after_s):
    receiver = load.Hepflow('[sinks.null]\ntype = "null"\n', "null")
    sender = load.Hepflow(
        f'[sinks.relay]\ntype = "hep"\ntargets = ["tcp://127.0.0.1:{receiver.port}"]\n'
        'when_full = "block"\nwrite_timeout = "1h"\n' + spool_toml("relay", "overflow"), "relay")
    total_s = before_s + outage_s + after_s
    try:
        gen = threading.Thread(target=lambda: load.run_load(
            ["send", "--to", f"127.0.0.1:{sender.port}", "--rate", str(rate), "--duration", f"{total_s}s"],
            timeout=total_s + 60))
        gen.start()
        time.sleep(before_s)
        receiver.proc.send_signal(signal.SIGSTOP)
        peak_rss = 0
        t_end = time.time() + outage_s
        while time.time() < t_end:
            peak_rss = max(peak_rss, sender.rss_kib()["VmRSS"])
            time.sleep(1)
        m = sender.metrics()
        backlog = load.metric(m, "hepflow_spool_records", {"sink": "relay"})
        sent_at_resume = load.metric(m, "hepflow_hep_target_sent_total", {"sink": "relay"})
        spool_bytes = load.metric(m, "hepflow_spool_bytes", {"sink": "relay"})
        receiver.proc.send_signal(signal.SIGCONT)
        resumed = time.time()
        drained_at = None
        while time.time() - resumed < max(after_s, 1) + 600:
            m = sender.metrics()
            peak_rss = max(peak_rss, sender.rss_kib()["VmRSS"])
            if load.metric(m, "hepflow_spool_records", {"sink": "relay"}) == 0 and drained_at is None:
                drained_at = time.time()
                delivered_during_drain = load.metric(m, "hepflow_hep_target_sent_total", {"sink": "relay"}) - sent_at_resume
                break
            time.sleep(0.2)
        gen.join()
        time.sleep(2)
        c = sender.counts("relay")
        r = receiver.counts("null")
        decoded = c["decoded"]
        lost = decoded - r["sent"]
        drain_s = (drained_at - resumed) if drained_at else float("nan")
        drain_rate = delivered_during_drain / drain_s if drained_at else float("nan")
        print("\n| figure | value |")
        print("|---|---|")
        print(f"| ingest rate | {rate:,} msg/s over UDP, {total_s} s |")
        print(f"| receiver frozen | {outage_s} s |")
        print(f"| backlog on disk at resume | {backlog:,.0f} messages, {spool_bytes / 2**20:,.0f} MiB |")
        print(f"| drained in | {drain_s:.1f} s (new traffic flowing) |")
        print(f"| delivery rate while draining | {drain_rate:,.0f} msg/s = {drain_rate / rate:.1f} x ingest |")
        print(f"| sender peak RSS (outage and drain) | {peak_rss / 1024:.0f} MiB |")
        print(f"| read by the sender / delivered to the receiver | {decoded:,.0f} / {r['sent']:,.0f} (lost {lost:,.0f}) |")
    finally:
        for h in (sender, receiver):
            try:
                h.proc.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
            h.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["all", "throughput", "outage"], default="all")
    ap.add_argument("--seconds", type=int, default=3, help="length of one rate step")
    ap.add_argument("--rounds", type=int, default=3, help="rate searches per sink and mode")
    ap.add_argument("--rates-file", default="50000,100000,150000,200000,250000,300000")
    ap.add_argument("--rates-kafka", default="10000,20000,30000,40000,50000,60000")
    ap.add_argument("--rate", type=int, default=20000, help="outage: ingest rate")
    ap.add_argument("--outage", type=int, default=60, help="outage: seconds frozen")
    ap.add_argument("--sinks", default="file,kafka", help="throughput: which sinks")
    ap.add_argument("--modes", default="off,overflow,always", help="throughput: which spool modes")
    ap.add_argument("--spool-extra", default="", help="TOML lines added to every spool section")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    global SPOOL_EXTRA, MODES
    SPOOL_EXTRA = args.spool_extra.replace("\\n", "\n") + ("\n" if args.spool_extra else "")
    MODES = args.modes.split(",")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "hepflow", "--bin", "hepflow-load"],
                       cwd=load.ROOT, check=True)
    print(f"machine: {load.platform.node()} {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if args.part in ("all", "throughput"):
        throughput([int(x) for x in args.rates_file.split(",")], [int(x) for x in args.rates_kafka.split(",")],
                   args.seconds, args.rounds, args.sinks.split(","))
    if args.part in ("all", "outage"):
        outage(args.rate, args.outage, 10, 10)


if __name__ == "__main__":
    main()
