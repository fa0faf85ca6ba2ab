#!/usr/bin/env node
/*
 * zyre.js interop agent: one real zyre.js 1.3.0 node driven by JSON lines.
 *
 * Protocol: interop/README.md. Commands arrive as JSON objects, one per
 * line, on stdin; events leave as JSON objects, one per line, on stdout.
 * Logs go to stderr only.
 *
 *   node interop/zyrejs_agent.js --name N --iface eth0 --port 5670 \
 *        [--header K=V]... [--evasive MS] [--expired MS]
 *
 * `--port` is the UDP *beacon* port (zyre.js option `bport`); the TCP mailbox
 * port is zyre.js's default (49152, incremented while in use).
 *
 * Facts about zyre.js 1.3.0 this agent relies on / works around (from its
 * source in node_modules/zyre.js/lib):
 *
 *  - Content is single-frame only. `whisper(id, msg)` / `shout(group, msg)` send
 *    the ZRE header frame plus exactly one content frame, and the receive path
 *    (`_messageHandler(id, msg, frame)`) keeps only the first content frame and
 *    silently drops the rest. So: a multi-frame whisper/shout command sends only
 *    its first frame (with a warning on stderr), and WHISPER/SHOUT events always
 *    carry exactly one frame.
 *  - Identities are lower-case hex strings; we upper-case them on output and
 *    lower-case them on input.
 *  - Events: connect (-> ENTER), disconnect (-> EXIT), expired (-> EXIT with
 *    "reason":"expired"; zyre.js follows it with a 'disconnect' for the same
 *    peer, which we swallow so there is one EXIT), join, leave, whisper, shout. No EVASIVE/SILENT/STOP
 *    events. A peer's JOINs for the groups in its HELLO are emitted *before* its
 *    ENTER. `stop()` removes all listeners first, so no EXITs come out of stop.
 *  - SHOUTs are only delivered for groups this node has joined.
 *  - The ENTER endpoint is the one the peer declared in its HELLO.
 *  - zyre.stop() can abort the process inside libzmq 4.3.4 (pipe.cpp:382
 *    assertion) while closing sockets; the agent's stop therefore sends the
 *    port-0 beacon through zyre.js's ZBeacon and exits (see `stop` below).
 */

'use strict';

const readline = require('readline');
const path = require('path');

// Resolve zyre.js from interop/node_modules regardless of the cwd.
// eslint-disable-next-line import/no-dynamic-require
const Zyre = require(path.join(__dirname, 'node_modules', 'zyre.js'));

function log(...args) {
  process.stderr.write(`${new Date().toISOString()} zyrejs_agent: ${args.join(' ')}\n`);
}

/** Print one event as a JSON line (stdout is synchronous for pipes on Linux). */
function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function usage(msg) {
  process.stderr.write(`zyrejs_agent: ${msg}\nusage: zyrejs_agent.js --name N --iface IF --port BEACON_PORT [--header K=V]... [--evasive MS] [--expired MS]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { iface: 'eth0', port: 5670, headers: {} };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      i += 1;
      return argv[i];
    };
    const num = () => {
      const v = Number(val());
      if (!Number.isInteger(v) || v < 0) usage(`${a} expects a non-negative integer`);
      return v;
    };
    switch (a) {
      case '--name': opts.name = val(); break;
      case '--iface': opts.iface = val(); break;
      case '--port': opts.port = num(); break;
      case '--evasive': opts.evasive = num(); break;
      case '--expired': opts.expired = num(); break;
      case '--header': {
        const kv = val();
        const eq = kv.indexOf('=');
        if (eq < 0) usage(`--header expects K=V, got ${kv}`);
        opts.headers[kv.slice(0, eq)] = kv.slice(eq + 1);
        break;
      }
      default: usage(`unknown argument ${a}`);
    }
  }
  if (typeof opts.name !== 'string') usage('--name is required');
  return opts;
}

const up = (id) => String(id).toUpperCase();

/** Lossy UTF-8 rendering of received content (zyre.js gives a Buffer in raw mode). */
const text = (buf) => (Buffer.isBuffer(buf) ? buf.toString('utf8') : String(buf));

/** First frame of a whisper/shout command as a Buffer; warns when frames are dropped. */
function firstFrame(cmd) {
  let { frames } = cmd;
  if (frames === undefined && cmd.text !== undefined) frames = [cmd.text];
  if (!Array.isArray(frames) || frames.length === 0) {
    throw new Error("'frames' must be a non-empty list of strings");
  }
  if (frames.length > 1) {
    log(`WARNING: zyre.js supports single-frame content only; sending only the first of ${frames.length} frames`);
  }
  return Buffer.from(String(frames[0]), 'utf8');
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const zyreOpts = {
    name: opts.name,
    iface: opts.iface,
    headers: opts.headers,
    bport: opts.port,
  };
  if (opts.evasive !== undefined) zyreOpts.evasive = opts.evasive;
  if (opts.expired !== undefined) zyreOpts.expired = opts.expired;

  let zyre;
  try {
    zyre = new Zyre(zyreOpts);
  } catch (e) {
    log(`cannot create node: ${e.message}`);
    process.exit(1);
  }
  zyre.setEncoding('raw');

  zyre.on('connect', (id, name, headers) => {
    const peer = zyre.getPeer(id);
    emit({
      event: 'ENTER',
      peer: up(id),
      name,
      headers: headers || {},
      endpoint: peer ? peer.endpoint : '',
    });
  });
  // zyre.js emits 'expired' and then, synchronously, 'disconnect' for the same
  // peer: report one EXIT (with the reason), not two.
  let justExpired = null;
  zyre.on('disconnect', (id, name) => {
    if (id === justExpired) return;
    emit({ event: 'EXIT', peer: up(id), name });
  });
  zyre.on('expired', (id, name) => {
    emit({
      event: 'EXIT', peer: up(id), name, reason: 'expired',
    });
    justExpired = id;
    setImmediate(() => { justExpired = null; });
  });
  zyre.on('join', (id, name, group) => emit({
    event: 'JOIN', peer: up(id), name, group,
  }));
  zyre.on('leave', (id, name, group) => emit({
    event: 'LEAVE', peer: up(id), name, group,
  }));
  zyre.on('whisper', (id, name, msg) => emit({
    event: 'WHISPER', peer: up(id), name, frames: [text(msg)],
  }));
  zyre.on('shout', (id, name, msg, group) => emit({
    event: 'SHOUT', peer: up(id), name, group, frames: [text(msg)],
  }));

  await zyre.start();
  // eslint-disable-next-line no-underscore-dangle
  const endpoint = zyre._zyreNode ? zyre._zyreNode._endpoint : '';
  emit({
    event: 'READY', uuid: up(zyre.getIdentity()), name: opts.name, endpoint,
  });

  // Polite stop. zyre.stop() closes every peer DEALER (linger 0), then sends the
  // port-0 beacon, then unbinds the ROUTER. With the system libzmq 4.3.4 that
  // socket teardown aborts the process now and then ("Assertion failed: _state ==
  // term_ack_sent || _state == term_req_sent2 (src/pipe.cpp:382)", seen in about
  // 1 of 5 stops right after WHISPER/SHOUT traffic) -- sometimes *before* the
  // port-0 beacon is out. So we do what matters on the wire ourselves: stop
  // zyre.js's event listeners, send the port-0 beacon with zyre.js's own
  // ZBeacon.stop(), and exit; the kernel then closes the TCP connections. Peers
  // see exactly a polite ZRE leave (port-0 beacon, then connections closed).
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    try {
      /* eslint-disable no-underscore-dangle */
      if (zyre._zBeacon && zyre._zyreNode && zyre._zyrePeers) {
        zyre._zyreNode.removeAllListeners();
        zyre._zyrePeers.removeAllListeners();
        await zyre._zBeacon.stop(); // port-0 beacon, beacon sockets closed
      } else {
        await zyre.stop();
      }
      /* eslint-enable no-underscore-dangle */
    } catch (e) {
      log(`stop failed: ${e.message}`);
    }
    process.exit(0);
  };

  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  rl.on('line', (line) => {
    const l = line.trim();
    if (!l) return;
    try {
      const cmd = JSON.parse(l);
      switch (cmd.cmd) {
        case 'join': zyre.join(String(cmd.group)); break;
        case 'leave': zyre.leave(String(cmd.group)); break;
        case 'whisper': zyre.whisper(String(cmd.peer).toLowerCase(), firstFrame(cmd)); break;
        case 'whispers': {
          // A numbered run, in order: `${prefix}${from}`, ... (long interop runs).
          const peer = String(cmd.peer).toLowerCase();
          const prefix = String(cmd.prefix || '');
          const from = Number(cmd.from || 0);
          for (let i = from; i < from + Number(cmd.count); i += 1) {
            zyre.whisper(peer, Buffer.from(`${prefix}${i}`, 'utf8'));
          }
          break;
        }
        case 'shout': zyre.shout(String(cmd.group), firstFrame(cmd)); break;
        case 'peers':
          emit({ event: 'PEERS', peers: Object.keys(zyre.getPeers()).map(up).sort() });
          break;
        case 'stop': stop(); break;
        default: throw new Error(`unknown command ${JSON.stringify(cmd.cmd)}`);
      }
    } catch (e) {
      log(`bad command ${l}: ${e.message}`);
    }
  });
  rl.on('close', () => {
    log('stdin closed: stopping');
    stop();
  });
}

main().catch((e) => {
  log(`fatal: ${e.stack || e}`);
  process.exit(1);
});
