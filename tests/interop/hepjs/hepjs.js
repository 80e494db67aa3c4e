#!/usr/bin/env node
// Drives hep-js (the independent HEP3 implementation on npm, pinned in
// package.json / package-lock.json) for hepflow's codec interop test
// plugins/sdk/tests/codec_hepjs.rs.
//
//   node hepjs.js encode   < {"payload": "...", "rcinfo": {...}, "ipv6": {"src": "..", "dst": ".."}, "vendorU32": n}
//       prints the hex of hep-js encapsulate(payload, rcinfo)
//   node hepjs.js decode HEX
//       prints JSON: hep-js decapsulate(buffer), with the IPv6 chunks (if
//       any) rendered as text in rcinfo.srcIp6 / rcinfo.dstIp6
//
// hep-js 1.0.22 has no IPv6 support of its own: encapsulate() parses srcIp /
// dstIp as dotted quads only and decapsulate() ignores chunks 0x05/0x06. Its
// public vendor-extension API (addVendorExtensions) does write and read any
// (vendor, type) chunk, so the IPv6 address chunks (vendor 0, types 5 and 6)
// are registered as 16-byte string extensions. hep-js writes strings as
// UTF-8, so only addresses whose 16 bytes are all below 0x80 survive: the
// script refuses others rather than send something wrong.
//
// One vendor chunk is registered too (vendor 2 = Kamailio, type 0x99, u32,
// key "vendorU32") to check that non-generic chunks cross both ways.

'use strict';

const HEP = require('hep-js');

HEP.addVendorExtensions({
  0: {
    // No `type`: hep-js then writes the value as a string and reads it back
    // with toString() (with type 'string' it writes but never reads it).
    5: { keyName: 'srcIp6' },
    6: { keyName: 'dstIp6' },
  },
  2: {
    153: { keyName: 'vendorU32', type: 'UInt32' },
  },
});

function ipv6ToBytes(text) {
  const halves = text.split('::');
  if (halves.length > 2) throw new Error(`bad IPv6 address ${text}`);
  const parse = (s) => (s === '' ? [] : s.split(':').map((g) => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw new Error(`bad IPv6 group ${g} in ${text}`);
    return parseInt(g, 16);
  }));
  const head = parse(halves[0]);
  const tail = halves.length === 2 ? parse(halves[1]) : [];
  const fill = 8 - head.length - tail.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) throw new Error(`bad IPv6 address ${text}`);
  const groups = head.concat(new Array(fill).fill(0), tail);
  const bytes = [];
  for (const g of groups) bytes.push(g >> 8, g & 0xff);
  return bytes;
}

function ipv6ChunkString(text) {
  const bytes = ipv6ToBytes(text);
  if (bytes.some((b) => b >= 0x80)) {
    throw new Error(`IPv6 address ${text} has a byte >= 0x80, which hep-js's UTF-8 string chunks cannot carry`);
  }
  return String.fromCharCode(...bytes);
}

function chunkStringToIpv6(s) {
  const b = Buffer.from(s, 'latin1');
  if (b.length !== 16) return `invalid(${b.length} bytes)`;
  const groups = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':');
}

function readStdin() {
  return require('fs').readFileSync(0, 'utf8');
}

function main() {
  const mode = process.argv[2];
  if (mode === 'encode') {
    const input = JSON.parse(readStdin());
    const rcinfo = Object.assign({}, input.rcinfo);
    if (input.ipv6) {
      rcinfo.srcIp6 = ipv6ChunkString(input.ipv6.src);
      rcinfo.dstIp6 = ipv6ChunkString(input.ipv6.dst);
    }
    if (typeof input.vendorU32 === 'number') rcinfo.vendorU32 = input.vendorU32;
    const buf = HEP.encapsulate(input.payload, rcinfo);
    process.stdout.write(buf.toString('hex') + '\n');
  } else if (mode === 'decode') {
    const hex = (process.argv[3] || readStdin()).trim();
    const decoded = HEP.decapsulate(Buffer.from(hex, 'hex'));
    if (!decoded) {
      process.stderr.write('hep-js could not decapsulate the message\n');
      process.exit(1);
    }
    const rc = decoded.rcinfo || {};
    if (typeof rc.srcIp6 === 'string') rc.srcIp6 = chunkStringToIpv6(rc.srcIp6);
    if (typeof rc.dstIp6 === 'string') rc.dstIp6 = chunkStringToIpv6(rc.dstIp6);
    process.stdout.write(JSON.stringify(decoded) + '\n');
  } else {
    process.stderr.write('usage: hepjs.js encode < json | hepjs.js decode HEX\n');
    process.exit(2);
  }
}

try {
  main();
} catch (e) {
  process.stderr.write(`hepjs.js: ${e.message}\n`);
  process.exit(1);
}
