#!/usr/bin/env node
/*
 * zyre.js peer for `zmesh-bench` scenario 7 (WHISPER throughput and round trip in netns).
 *
 *   node interop/bench_zyrejs.js --role a|b --iface eth0 --port P \
 *        --count N --rtt R --window W --ack-every K
 *
 * Same protocol as interop/bench_pyre.py and crates/bench/src/bin/zmesh_bench/netns.rs: role b
 * counts `T...` and whispers `A<count>` every K, answers `F` with `D<count>`, echoes `R...`, exits
 * on `Q`; role a prints one line `RESULT {json}`. zyre.js content is single-frame, which is all
 * this protocol uses. Exits with process.exit (no zyre.stop(): see zyrejs_agent.js for the libzmq
 * teardown abort that avoids).
 */

'use strict';

const path = require('path');
// eslint-disable-next-line import/no-dynamic-require
const Zyre = require(path.join(__dirname, 'node_modules', 'zyre.js'));

const WARMUP = 200;

function parseArgs(argv) {
  const o = {
    iface: 'eth0', count: 20000, rtt: 2000, window: 2000, ackEvery: 200,
  };
  for (let i = 0; i < argv.length; i += 2) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--role': o.role = v; break;
      case '--iface': o.iface = v; break;
      case '--port': o.port = Number(v); break;
      case '--count': o.count = Number(v); break;
      case '--rtt': o.rtt = Number(v); break;
      case '--window': o.window = Number(v); break;
      case '--ack-every': o.ackEvery = Number(v); break;
      default: throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  return o;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const zyre = new Zyre({ name: `bench-${o.role}`, iface: o.iface, bport: o.port });
  zyre.setEncoding('raw');

  // Incoming whispers go to a queue; `next()` resolves with the next one.
  const queue = [];
  let waiter = null;
  let peer = null;
  let onEnter = null;
  zyre.on('connect', (id) => {
    if (peer === null) {
      peer = id;
      if (onEnter) onEnter();
    }
  });
  zyre.on('disconnect', () => { process.stderr.write('bench_zyrejs: peer left\n'); process.exit(1); });
  const next = () => new Promise((resolve) => {
    if (queue.length) resolve(queue.shift()); else waiter = resolve;
  });
  const send = (b) => zyre.whisper(peer, b);

  if (o.role === 'b') {
    let n = 0;
    zyre.on('whisper', (id, name, m) => {
      const k = m[0];
      if (k === 0x52) send(m); // R
      else if (k === 0x54) { // T
        n += 1;
        if (n % o.ackEvery === 0) send(Buffer.from(`A${n}`));
      } else if (k === 0x46) { // F
        send(Buffer.from(`D${n}`));
        n = 0;
      } else if (k === 0x51) process.exit(0); // Q
    });
    await zyre.start();
    return;
  }

  zyre.on('whisper', (id, name, m) => {
    if (waiter) { const w = waiter; waiter = null; w(m); } else queue.push(m);
  });
  await zyre.start();
  if (peer === null) await new Promise((r) => { onEnter = r; });

  const ping = Buffer.alloc(64, 'x'); ping[0] = 0x52;
  for (let i = 0; i < WARMUP; i += 1) { send(ping); await next(); }
  const rates = [];
  for (const size of [64, 4096]) {
    const msg = Buffer.alloc(size, 'x'); msg[0] = 0x54;
    const t0 = process.hrtime.bigint();
    let sent = 0; let acked = 0; let flushed = false;
    for (;;) {
      while (sent < o.count && sent - acked < o.window) { send(msg); sent += 1; }
      if (sent === o.count && !flushed) { send(Buffer.from('F')); flushed = true; }
      const m = await next();
      const v = Number(m.toString('utf8', 1));
      if (m[0] === 0x41) acked = v;
      else if (m[0] === 0x44) {
        if (v !== o.count) throw new Error(`peer counted ${v}`);
        break;
      }
    }
    rates.push(o.count / (Number(process.hrtime.bigint() - t0) / 1e9));
  }
  const rtts = [];
  for (let i = 0; i < o.rtt; i += 1) {
    const t0 = process.hrtime.bigint();
    send(ping);
    await next();
    rtts.push(Number(process.hrtime.bigint() - t0) / 1e3);
  }
  rtts.sort((x, y) => x - y);
  const pct = (q) => rtts[Math.round((rtts.length - 1) * q)];
  send(Buffer.from('Q'));
  process.stdout.write(`RESULT ${JSON.stringify({
    impl: 'zyre.js', tput64: rates[0], tput4k: rates[1], rtt_p50: pct(0.5), rtt_p99: pct(0.99), rtt_p999: pct(0.999), rtt_n: rtts.length, count: o.count,
  })}\n`);
  setTimeout(() => process.exit(0), 500);
}

main().catch((e) => { process.stderr.write(`bench_zyrejs: ${e.stack || e}\n`); process.exit(1); });
