#!/usr/bin/env python3
"""Elasticsearch sink against the test server's own bulk rate, A/B.

Each run starts from emptied `hep-*` indices (osmem-server slows down as
its indices grow) and indexes the same number of documents (N, default
4000): `direct` sends hepflow's documents (from a file-sink run) straight
to `_bulk` in 1000-document requests one at a time; `default` and
`batch2000` send N generated messages through hepflow's Elasticsearch sink
(the second with `batch.max_events = 2000`, so that `concurrency = 2` puts
two 1000-document requests in flight) and time until all are indexed.

Usage (services up, their env sourced, release binaries built):
    python3 benches/es_ab.py direct default batch2000 direct default batch2000
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402

N = int(os.environ.get("N", "4000"))
URL = os.environ["HEPFLOW_TEST_OSMEM_URL"]
VARIANTS = {
    "default": f'[sinks.es]\ntype = "elasticsearch"\nurls = ["{URL}"]\n',
    "batch2000": f'[sinks.es]\ntype = "elasticsearch"\nurls = ["{URL}"]\n'
                 '[sinks.es.batch]\nmax_events = 2000\n',
}


def main():
    lines = None
    for v in sys.argv[1:] or ["direct", "default", "batch2000"]:
        load.reset_es_indices()
        if v == "direct":
            if lines is None:
                lines = load.sample_documents(N)
                load.reset_es_indices()
            print(f"direct {len(lines)} docs: {load.es_direct_rate(URL, lines):.0f} docs/s", flush=True)
            continue
        h = load.Hepflow(VARIANTS[v], "es")
        try:
            t0 = time.time()
            s = load.run_load(["send", "--to", f"127.0.0.1:{h.port}", "--rate", "20000", "--count", str(N)])
            c, _ = load.drain(h, "es", N)
            el = time.time() - t0
            print(f"{v}: sent {s['sent']} indexed {c['sent']:.0f} in {el:.1f} s = {c['sent'] / el:.0f} msg/s",
                  flush=True)
        finally:
            h.stop()


if __name__ == "__main__":
    main()
