#!/bin/sh
# Seed the `decode` fuzz corpus (fuzz/corpus/decode, git-ignored) with every
# HEP message of the real captures in tests/fixtures/hep, one file each.
# Needs tshark (apt-get install -y tshark) and xxd.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/corpus/decode"
mkdir -p "$out"
n=0
for f in "$here"/../tests/fixtures/hep/*; do
    base=$(basename "$f")
    # UDP datagrams to 9060; for the TCP capture, each segment (Kamailio
    # writes one HEP3 message per segment).
    tshark -r "$f" -Y 'udp.dstport==9060 || (tcp.dstport==9060 && tcp.len>0)' \
        -T fields -e udp.payload -e tcp.payload 2>/dev/null |
    while read -r hex; do
        [ -n "$hex" ] || continue
        n=$((n + 1))
        printf '%s' "$hex" | xxd -r -p > "$out/$base-$n"
    done
done
# A few shapes the captures lack: a zlib payload (0x10), IPv6 HEP3 and v2,
# a vendor chunk.
python3 - "$out" <<'PY'
import struct, sys, zlib
out = sys.argv[1]
def chunk(t, v, vendor=0):
    return struct.pack(">HHH", vendor, t, len(v) + 6) + v
def hep3(*chunks):
    body = b"".join(chunks)
    return b"HEP3" + struct.pack(">H", len(body) + 6) + body
sip = b"INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: x@y\r\n\r\n"
core4 = [chunk(1, b"\x02"), chunk(2, b"\x11"), chunk(3, bytes(4)), chunk(4, bytes(4)),
         chunk(7, b"\x13\xc4"), chunk(8, b"\x13\xc4"), chunk(9, bytes(4)), chunk(10, bytes(4)),
         chunk(11, b"\x01"), chunk(12, b"\x00\x00\x07\xd1")]
seeds = {
    "zlib": hep3(*core4, chunk(0x10, zlib.compress(sip * 20))),
    "ipv6": hep3(chunk(1, b"\x0a"), chunk(5, bytes(15) + b"\x01"), chunk(6, bytes(15) + b"\x02"),
                 chunk(0x13, b"node"), chunk(0x0f, sip)),
    "vendor": hep3(*core4, chunk(0x99, b"\x00\x00\x00\x2a", vendor=2), chunk(0x0f, sip)),
    "v2-ipv6": bytes([2, 40, 10, 17, 0x13, 0xc4, 0x13, 0xc4]) + bytes(32)
               + struct.pack("<IIH", 1, 2, 2001) + b"\xde\xad" + sip,
}
for name, data in seeds.items():
    open(f"{out}/crafted-{name}", "wb").write(data)
PY
echo "seeded $(ls "$out" | wc -l) files into $out"
