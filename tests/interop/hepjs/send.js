#!/usr/bin/env node
// A live hep-js sender for hepflow's interop test tests/interop_hepjs.rs:
// encodes messages with hep-js (npm, pinned in package.json /
// package-lock.json) encapsulate() and sends them to a HEP collector over
// UDP (one datagram each) or TCP (back to back on one connection).
//
//   node send.js < {"transport": "udp"|"tcp", "host": "127.0.0.1", "port": 9060,
//                   "messages": [{"payload": "...", "rcinfo": {...},
//                                 "ipv6": {"src": "..", "dst": ".."}, "vendorU32": n}]}
//
// prints one JSON line: {"sent": N, "bytes": [len, ...], "hex": ["...", ...]}
//
// hep-js 1.0.22 has no IPv6 support of its own; as in hepjs.js, the IPv6
// address chunks (vendor 0, types 5 and 6) are registered as 16-byte
// string extensions (only addresses whose bytes are all below 0x80), and
// one Kamailio vendor chunk (vendor 2, type 0x99, u32) is registered too.

'use strict';

const dgram = require('dgram');
const net = require('net');
const HEP = require('hep-js');

HEP.addVendorExtensions({
  0: {
    5: { keyName: 'srcIp6' },
    6: { keyName: 'dstIp6' },
  },
  2: {
    153: { keyName: 'vendorU32', type: 'UInt32' },
  },
});

function ipv6ChunkString(text) {
  const halves = text.split('::');
  const parse = (s) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const head = parse(halves[0]);
  const tail = halves.length === 2 ? parse(halves[1]) : [];
  const groups = head.concat(new Array(8 - head.length - tail.length).fill(0), tail);
  const bytes = [];
  for (const g of groups) bytes.push(g >> 8, g & 0xff);
  if (bytes.length !== 16 || bytes.some((b) => Number.isNaN(b) || b >= 0x80)) {
    throw new Error(`IPv6 address ${text} cannot be carried by hep-js string chunks`);
  }
  return String.fromCharCode(...bytes);
}

function encode(m) {
  const rcinfo = Object.assign({}, m.rcinfo);
  if (m.ipv6) {
    rcinfo.srcIp6 = ipv6ChunkString(m.ipv6.src);
    rcinfo.dstIp6 = ipv6ChunkString(m.ipv6.dst);
  }
  if (typeof m.vendorU32 === 'number') rcinfo.vendorU32 = m.vendorU32;
  return HEP.encapsulate(m.payload, rcinfo);
}

function done(bufs) {
  process.stdout.write(JSON.stringify({
    sent: bufs.length,
    bytes: bufs.map((b) => b.length),
    hex: bufs.map((b) => b.toString('hex')),
  }) + '\n');
}

function fail(e) {
  process.stderr.write(`send.js: ${e.message || e}\n`);
  process.exit(1);
}

function main() {
  const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const bufs = input.messages.map(encode);
  if (input.transport === 'udp') {
    const family = net.isIPv6(input.host) ? 'udp6' : 'udp4';
    const sock = dgram.createSocket(family);
    sock.on('error', fail);
    let i = 0;
    const next = () => {
      if (i === bufs.length) {
        sock.close();
        done(bufs);
        return;
      }
      sock.send(bufs[i++], input.port, input.host, (err) => (err ? fail(err) : next()));
    };
    next();
  } else if (input.transport === 'tcp') {
    const sock = net.createConnection({ host: input.host, port: input.port }, () => {
      for (const b of bufs) sock.write(b);
      sock.end();
    });
    sock.on('error', fail);
    sock.on('close', (hadError) => (hadError ? fail('connection closed with an error') : done(bufs)));
  } else {
    fail(`unknown transport ${input.transport}`);
  }
}

try {
  main();
} catch (e) {
  fail(e);
}
