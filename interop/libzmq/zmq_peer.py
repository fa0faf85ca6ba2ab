#!/usr/bin/env python3
"""A configurable libzmq (pyzmq) peer for zmesh's ZMTP conformance tests.

The Rust tests in crates/zmtp/tests/libzmq_conformance.rs start this script, talk to it over stdin/stdout
and kill it by pid to simulate a restart.  Everything is on 127.0.0.1 only.

Sockets are declared with repeated ``--sock`` options, each a comma-separated list of key=value pairs:

    name=r,type=ROUTER,bind=tcp://127.0.0.1:*          a bound ROUTER called "r"
    name=d,type=DEALER,connect=tcp://127.0.0.1:5555,identity=01ab..   a DEALER with a routing id (hex)
    mech=plain-server | plain-client | curve-server | curve-client     security mechanism (default NULL)
    curve_secret=<hex>,curve_serverkey=<hex>                           CURVE keys (default: random)
    zap_dir=<dir>                                                      libzmq's ZAP allow-list: start
                                                                       pyzmq's ThreadAuthenticator with
                                                                       the public certificates in <dir>
    hb_ivl=100,hb_ttl=1000,hb_timeout=500                              ZMQ_HEARTBEAT_* in milliseconds

``--echo r=d`` forwards every message received on socket r (a ROUTER: the identity frame is stripped) out
of socket d unchanged: with a DEALER connected to a zmesh Inbox this is the "Harmony" reply path.

Output: one JSON object per line on stdout, flushed at once:

    {"event": "ready", "socks": {"r": "tcp://127.0.0.1:40000", "d": "tcp://127.0.0.1:5555"}, "pid": 123}
    {"event": "recv", "sock": "r", "frames": ["<hex>", ...]}       (a ROUTER's first frame is the identity)
    {"event": "monitor", "sock": "r", "type": "HANDSHAKE_SUCCEEDED", "value": 0, "addr": "tcp://..."}
    {"event": "sent", "sock": "d", "count": 1}
    {"event": "error", "message": "..."}

Input: one JSON command per line on stdin:

    {"cmd": "send", "sock": "d", "frames": ["<hex>", ...]}           frames may also be {"len": N, "byte": B}
    {"cmd": "send", "sock": "d", "frames": [...], "repeat": 100}
    {"cmd": "quit"}

End of stdin also quits.

Certificate helpers (print one JSON line and exit):

    --create-cert DIR,NAME    zmq.auth.create_certificates(DIR, NAME) -> {"public", "secret", "public_file", "secret_file"}
    --show-cert PATH          zmq.auth.load_certificate(PATH) -> {"public", "secret"} (Z85, secret may be null)
"""

import argparse
import json
import os
import sys

import zmq
import zmq.auth
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

SOCKET_TYPES = {
    "ROUTER": zmq.ROUTER,
    "DEALER": zmq.DEALER,
    "REQ": zmq.REQ,
    "REP": zmq.REP,
    "PUB": zmq.PUB,
    "SUB": zmq.SUB,
    "PUSH": zmq.PUSH,
    "PULL": zmq.PULL,
    "PAIR": zmq.PAIR,
}

# Monitor event numbers -> names (ZMQ_EVENT_*), computed from pyzmq's constants.
EVENT_NAMES = {
    value: name[len("EVENT_"):]
    for name, value in vars(zmq).items()
    if name.startswith("EVENT_") and isinstance(value, int) and name not in ("EVENT_ALL",)
}


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def parse_sock_spec(spec):
    out = {}
    for part in spec.split(","):
        if not part:
            continue
        key, _, value = part.partition("=")
        out[key.strip()] = value.strip()
    if "name" not in out or "type" not in out:
        raise SystemExit(f"--sock needs name= and type=: {spec!r}")
    if ("bind" in out) == ("connect" in out):
        raise SystemExit(f"--sock needs exactly one of bind= / connect=: {spec!r}")
    return out


def check_loopback(endpoint):
    # THE NETWORK RULE: loopback only.
    if not (endpoint.startswith("tcp://127.") or endpoint.startswith("tcp://[::1]")
            or endpoint.startswith("ipc://")):
        raise SystemExit(f"refusing non-loopback endpoint {endpoint!r}")


def make_socket(ctx, spec):
    sock = ctx.socket(SOCKET_TYPES[spec["type"].upper()])
    sock.setsockopt(zmq.LINGER, 0)
    if "identity" in spec:
        sock.setsockopt(zmq.ROUTING_ID, bytes.fromhex(spec["identity"]))
    if "hb_ivl" in spec:
        sock.setsockopt(zmq.HEARTBEAT_IVL, int(spec["hb_ivl"]))
    if "hb_ttl" in spec:
        sock.setsockopt(zmq.HEARTBEAT_TTL, int(spec["hb_ttl"]))
    if "hb_timeout" in spec:
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(spec["hb_timeout"]))
    if spec["type"].upper() == "SUB":
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    mech = spec.get("mech", "null")
    if mech == "plain-server":
        sock.setsockopt(zmq.PLAIN_SERVER, 1)
    elif mech == "plain-client":
        sock.setsockopt(zmq.PLAIN_USERNAME, b"user")
        sock.setsockopt(zmq.PLAIN_PASSWORD, b"secret")
    elif mech == "curve-server":
        _public, secret = zmq.curve_keypair()
        if "curve_secret" in spec:
            secret = z85.encode(bytes.fromhex(spec["curve_secret"]))
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    elif mech == "curve-client":
        server_public, _ = zmq.curve_keypair()
        public, secret = zmq.curve_keypair()
        if "curve_serverkey" in spec:
            server_public = z85.encode(bytes.fromhex(spec["curve_serverkey"]))
        if "curve_secret" in spec:
            secret = z85.encode(bytes.fromhex(spec["curve_secret"]))
            public = zmq.curve_public(secret)
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    elif mech != "null":
        raise SystemExit(f"unknown mech {mech!r}")
    monitor = sock.get_monitor_socket()
    if "bind" in spec:
        check_loopback(spec["bind"])
        sock.bind(spec["bind"])
        endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    else:
        check_loopback(spec["connect"])
        sock.connect(spec["connect"])
        endpoint = spec["connect"]
    return sock, monitor, endpoint


def decode_frame(f):
    if isinstance(f, str):
        return bytes.fromhex(f)
    return bytes([int(f.get("byte", 0))]) * int(f["len"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sock", action="append", default=[], help="socket spec, repeatable")
    ap.add_argument("--echo", action="append", default=[], help="FROM=TO: forward messages")
    ap.add_argument("--create-cert", help="DIR,NAME: zmq.auth.create_certificates, print, exit")
    ap.add_argument("--show-cert", help="PATH: zmq.auth.load_certificate, print, exit")
    args = ap.parse_args()

    if args.create_cert or args.show_cert:
        def text(k):
            return k.decode("ascii") if k else None

        if args.create_cert:
            directory, _, name = args.create_cert.partition(",")
            public_file, secret_file = zmq.auth.create_certificates(directory, name)
            public, secret = zmq.auth.load_certificate(secret_file)
            emit({"public": text(public), "secret": text(secret),
                  "public_file": public_file, "secret_file": secret_file})
        else:
            public, secret = zmq.auth.load_certificate(args.show_cert)
            emit({"public": text(public), "secret": text(secret)})
        return

    ctx = zmq.Context()
    auth = None
    zap_dirs = [parse_sock_spec(raw).get("zap_dir") for raw in args.sock]
    zap_dirs = [d for d in zap_dirs if d]
    if zap_dirs:
        from zmq.auth.thread import ThreadAuthenticator

        auth = ThreadAuthenticator(ctx)
        auth.start()
        auth.configure_curve(domain="*", location=zap_dirs[0])
    socks, monitors, endpoints = {}, {}, {}
    for raw in args.sock:
        spec = parse_sock_spec(raw)
        sock, monitor, endpoint = make_socket(ctx, spec)
        socks[spec["name"]] = (sock, spec["type"].upper())
        monitors[spec["name"]] = monitor
        endpoints[spec["name"]] = endpoint
    echo = {}
    for raw in args.echo:
        src, _, dst = raw.partition("=")
        echo[src] = dst

    poller = zmq.Poller()
    by_socket = {}
    for name, (sock, _) in socks.items():
        if SOCKET_TYPES[socks[name][1]] not in (zmq.PUB, zmq.PUSH):
            poller.register(sock, zmq.POLLIN)
        by_socket[sock] = ("sock", name)
    for name, mon in monitors.items():
        poller.register(mon, zmq.POLLIN)
        by_socket[mon] = ("mon", name)
    stdin_fd = sys.stdin.fileno()
    poller.register(stdin_fd, zmq.POLLIN)

    emit({"event": "ready", "socks": endpoints, "pid": os.getpid()})

    pending = b""
    running = True
    while running:
        for item, _ in poller.poll():
            if item == stdin_fd:
                chunk = os.read(stdin_fd, 1 << 20)
                if not chunk:
                    running = False
                    break
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if not line.strip():
                        continue
                    try:
                        cmd = json.loads(line)
                        if cmd["cmd"] == "quit":
                            running = False
                            break
                        if cmd["cmd"] == "send":
                            sock, _ = socks[cmd["sock"]]
                            frames = [decode_frame(f) for f in cmd["frames"]]
                            repeat = int(cmd.get("repeat", 1))
                            for _ in range(repeat):
                                sock.send_multipart(frames)
                            emit({"event": "sent", "sock": cmd["sock"], "count": repeat})
                        else:
                            emit({"event": "error", "message": f"unknown command {cmd['cmd']!r}"})
                    except Exception as exc:  # report, keep serving
                        emit({"event": "error", "message": repr(exc)})
                continue
            kind, name = by_socket[item]
            if kind == "mon":
                msg = recv_monitor_message(item)
                ev = msg["event"]
                emit({
                    "event": "monitor",
                    "sock": name,
                    "type": EVENT_NAMES.get(ev, str(ev)),
                    "value": msg["value"],
                    "addr": msg["endpoint"].decode("utf-8", "replace")
                    if isinstance(msg["endpoint"], bytes) else str(msg["endpoint"]),
                })
                continue
            frames = item.recv_multipart()
            emit({"event": "recv", "sock": name, "frames": [f.hex() for f in frames]})
            if name in echo:
                body = frames[1:] if socks[name][1] == "ROUTER" else frames
                socks[echo[name]][0].send_multipart(body)

    for mon in monitors.values():
        mon.close(0)
    for sock, _ in socks.values():
        sock.close(0)
    if auth is not None:
        auth.stop()
    ctx.term()


if __name__ == "__main__":
    main()
