#!/usr/bin/env python3
"""pyre-gevent peer for `zmesh-bench` scenario 7 (WHISPER throughput and round trip in netns).

    interop/.venv/bin/python interop/bench_pyre.py --role a|b --iface eth0 --port P \
        --count N --rtt R --window W --ack-every K

Runs one pyre-gevent node and speaks the bench protocol in WHISPER content (see
crates/bench/src/bin/zmesh_bench/netns.rs): role b counts `T...` messages and whispers
`A<count>` every K of them, answers `F` with `D<count>`, echoes `R...`, exits on `Q`; role a
runs 200 warm-up round trips, windowed throughput for 64 B and 4 KiB, then R timed round trips,
and prints one line `RESULT {json}` on stdout. Logs go to stderr. Only the main greenlet touches
the node (whisper and recv), so no zmq socket is shared between greenlets.
"""

import warnings

from gevent import monkey

monkey.patch_all()
warnings.filterwarnings("ignore", message="TIMEO socket options")

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

from pyre_gevent import Pyre  # noqa: E402

WARMUP = 200


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--role", choices=["a", "b"], required=True)
    p.add_argument("--iface", default="eth0")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--rtt", type=int, default=2000)
    p.add_argument("--window", type=int, default=2000)
    p.add_argument("--ack-every", type=int, default=200)
    a = p.parse_args(argv)

    node = Pyre("bench-" + a.role)
    node.set_port(str(a.port).encode())
    node.set_interface(a.iface)
    node.start()
    if not node.endpoint():
        sys.stderr.write("bench_pyre: node did not start\n")
        os._exit(1)

    peer = None
    while peer is None:
        f = node.recv()
        if f[0] == b"ENTER":
            peer = uuid.UUID(bytes=f[1])

    def next_whisper():
        while True:
            f = node.recv()
            if f[0] == b"WHISPER":
                return f[3]
            if f[0] == b"EXIT":
                sys.stderr.write("bench_pyre: peer left\n")
                os._exit(1)

    def send(b):
        node.whisper(peer, b)

    if a.role == "b":
        n = 0
        while True:
            m = next_whisper()
            k = m[:1]
            if k == b"R":
                send(m)
            elif k == b"T":
                n += 1
                if n % a.ack_every == 0:
                    send(b"A%d" % n)
            elif k == b"F":
                send(b"D%d" % n)
                n = 0
            elif k == b"Q":
                os._exit(0)

    ping = b"R" + b"x" * 63
    for _ in range(WARMUP):
        send(ping)
        next_whisper()
    rates = []
    for size in (64, 4096):
        msg = b"T" + b"x" * (size - 1)
        t0 = time.perf_counter()
        sent = acked = 0
        flushed = False
        while True:
            while sent < a.count and sent - acked < a.window:
                send(msg)
                sent += 1
            if sent == a.count and not flushed:
                send(b"F")
                flushed = True
            m = next_whisper()
            if m[:1] == b"A":
                acked = int(m[1:])
            elif m[:1] == b"D":
                assert int(m[1:]) == a.count, "peer counted %s" % m
                break
        rates.append(a.count / (time.perf_counter() - t0))
    rtts = []
    for _ in range(a.rtt):
        t0 = time.perf_counter()
        send(ping)
        next_whisper()
        rtts.append((time.perf_counter() - t0) * 1e6)
    rtts.sort()

    def pct(q):
        return rtts[int(round((len(rtts) - 1) * q))]

    send(b"Q")
    res = {"impl": "pyre-gevent", "tput64": rates[0], "tput4k": rates[1],
           "rtt_p50": pct(0.5), "rtt_p99": pct(0.99), "rtt_p999": pct(0.999),
           "rtt_n": len(rtts), "count": a.count}
    sys.stdout.write("RESULT " + json.dumps(res) + "\n")
    sys.stdout.flush()
    time.sleep(0.5)  # let Q leave before the process (and its sockets) go away
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
