#!/usr/bin/env python3
"""The file sink at one UDP rate, A/B: hepflow binaries (or configs) in
turn, one 3-s step each (load.py's `step_hepflow`), repeated. Tells a
regression from the machine's run-to-run spread.

Each variant is NAME=BINARY, optionally followed by `@` and TOML appended
to the file sink's section (`\\n` for newlines). Examples:

    # two builds (copy each release binary aside first)
    python3 benches/file_ab.py --rate 150000 --runs 5 \\
        old=/tmp/hepflow-old new=target/release/hepflow
    # one build, two queue sizes
    python3 benches/file_ab.py --rate 150000 --runs 6 \\
        q32=target/release/hepflow \\
        'q64=target/release/hepflow@[sinks.file.queue]\\nmax_bytes = 67108864\\n'

Prints one line per step: loss, messages sent and written, the kernel's
socket drops and the sink queue's drops during the step.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=150000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("variants", nargs="+", metavar="NAME=BINARY[@TOML]")
    args = ap.parse_args()
    variants = []
    for v in args.variants:
        name, rest = v.split("=", 1)
        binary, _, extra = rest.partition("@")
        variants.append((name, binary, extra.replace("\\n", "\n")))
    for _ in range(args.runs):
        for name, binary, extra in variants:
            load.HEPFLOW = binary
            h = load.Hepflow(load.SCENARIOS["file"][0] + extra, "file")
            try:
                r = load.step_hepflow(h, args.rate, args.seconds, "sent")
                print(f"{name}: loss {100 * r['loss']:.3f} %  sent {r['sent']}  written {r['received']:.0f}  "
                      f"kernel drops {r['kernel_drops']}  queue drops {r['queue_dropped']:.0f}", flush=True)
            finally:
                h.stop()


if __name__ == "__main__":
    main()
