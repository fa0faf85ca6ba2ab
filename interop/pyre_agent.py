#!/usr/bin/env python3
"""pyre-gevent interop agent: one real Pyre node driven by JSON lines.

Protocol: interop/README.md. Commands arrive as JSON objects, one per
line, on stdin; events leave as JSON objects, one per line, on stdout (flushed
at once). Everything else (logging, errors) goes to stderr.

    interop/.venv/bin/python interop/pyre_agent.py --name N --iface eth0 \
        --port 5670 [--header K=V]... [--evasive MS] [--expired MS]

Design
------
pyre-gevent is written for gevent: its node and beacon actors are
`threading.Thread`s talking over `zmq.green` sockets, so we monkey-patch the
standard library first (threads become greenlets, everything runs on one gevent
hub). Two greenlets then share the process:

* the *event* greenlet blocks (cooperatively) in `Pyre.recv()` and prints each
  node event as JSON;
* the main greenlet reads stdin through a gevent `FileObject` (cooperative
  readline) and turns commands into Pyre API calls.

Only the main greenlet talks to the node's actor pipe (whisper/shout/peers/...),
only the event greenlet reads the node's inbox, so no socket is shared.

Facts about pyre-gevent 1.0.0 this relies on (read from its source):

* `Pyre.whisper(uuid.UUID, list_of_bytes)` / `Pyre.shout(group, list)` send a
  *multi-frame* WHISPER/SHOUT (the list becomes the ZRE content frames); events
  carry all content frames after the fixed ones.
* ENTER's headers frame is JSON (pyre's own format, not zhash_pack).
* `set_port` takes bytes; `set_interval` is a no-op.
* Evasive/expired timeouts are the class attributes `PyrePeer.PEER_EVASIVE` /
  `PEER_EXPIRED` (seconds, default 10/30); we set them process-wide, which is
  per-node since the agent runs one node. pyre also refreshes a peer on every
  beacon, and it never emits EVASIVE/SILENT events (it only PINGs).
* A failed start (no usable interface) shows up as a `$TERM` frame on the
  inbox and an empty endpoint.
"""

import warnings

from gevent import monkey

monkey.patch_all()
# pyre sets SNDTIMEO on zmq.green sockets, which warns on every peer.
warnings.filterwarnings("ignore", message="TIMEO socket options")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
from gevent.fileobject import FileObjectPosix  # noqa: E402

from pyre_gevent import Pyre  # noqa: E402
from pyre_gevent.pyre_peer import PyrePeer  # noqa: E402

log = logging.getLogger("pyre_agent")


class _Seconds(float):
    """A float of seconds whose product with a number is an int.

    pyre uses `PyrePeer.PEER_EXPIRED * 100` as a socket high-water mark, which
    libzmq needs as an integer; every other use is float arithmetic.
    """

    def __mul__(self, other):
        return int(float(self) * other)

    __rmul__ = __mul__


def emit(obj):
    """Print one event as a JSON line and flush immediately."""
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def hexid(raw):
    """32 upper-case hex digits for a raw 16-byte UUID."""
    return uuid.UUID(bytes=raw).hex.upper()


def text(frame):
    """Lossy UTF-8 rendering of a content frame."""
    return frame.decode("utf-8", "replace")


def event_to_json(frames):
    """Map one pyre event (multipart) to the protocol's JSON object, or None."""
    kind = frames[0].decode("utf-8", "replace")
    if kind == "$TERM":
        return {"event": "$TERM"}
    if len(frames) < 3:
        log.warning("short event %r", frames)
        return None
    ev = {"event": kind, "peer": hexid(frames[1]), "name": text(frames[2])}
    rest = frames[3:]
    if kind == "ENTER":
        try:
            ev["headers"] = json.loads(rest[0].decode("utf-8")) if rest else {}
        except ValueError:
            ev["headers"] = {}
        ev["endpoint"] = text(rest[1]) if len(rest) > 1 else ""
    elif kind in ("JOIN", "LEAVE"):
        ev["group"] = text(rest[0]) if rest else ""
    elif kind == "WHISPER":
        ev["frames"] = [text(f) for f in rest]
    elif kind == "SHOUT":
        ev["group"] = text(rest[0]) if rest else ""
        ev["frames"] = [text(f) for f in rest[1:]]
    return ev


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True)
    p.add_argument("--iface", default="eth0")
    p.add_argument("--port", type=int, default=5670, help="UDP beacon port")
    p.add_argument("--header", action="append", default=[], metavar="K=V")
    p.add_argument("--evasive", type=int, metavar="MS")
    p.add_argument("--expired", type=int, metavar="MS")
    args = p.parse_args(argv)
    headers = []
    for h in args.header:
        if "=" not in h:
            p.error("--header expects K=V, got %r" % h)
        headers.append(tuple(h.split("=", 1)))
    args.headers = headers
    return args


def frames_of(cmd):
    """Content frames of a whisper/shout command as a non-empty list of bytes."""
    frames = cmd.get("frames")
    if frames is None and "text" in cmd:
        frames = [cmd["text"]]
    if not isinstance(frames, list) or not frames:
        raise ValueError("'frames' must be a non-empty list of strings")
    return [str(f).encode("utf-8") for f in frames]


def main(argv):
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if os.environ.get("PYRE_AGENT_DEBUG") else logging.INFO,
        format="%(asctime)s pyre_agent %(levelname)s %(name)s: %(message)s",
    )
    args = parse_args(argv)

    if args.evasive is not None:
        PyrePeer.PEER_EVASIVE = _Seconds(args.evasive / 1000.0)
    if args.expired is not None:
        PyrePeer.PEER_EXPIRED = _Seconds(args.expired / 1000.0)

    node = Pyre(args.name)
    for k, v in args.headers:
        node.set_header(k, v)
    node.set_port(str(args.port).encode())
    node.set_interface(args.iface)
    node.start()
    endpoint = node.endpoint()
    if not endpoint:
        log.error("pyre failed to start on interface %r (see log above)", args.iface)
        os._exit(1)
    my_uuid = node.uuid()
    emit({"event": "READY", "uuid": my_uuid.hex.upper(), "name": args.name,
          "endpoint": endpoint})

    stopped = gevent.event.Event()

    def events():
        while True:
            frames = node.recv()
            ev = event_to_json(frames)
            if ev is None:
                continue
            if ev["event"] == "$TERM":
                log.error("pyre node terminated (beacon failure)")
                sys.stdout.flush()
                os._exit(1)
            emit(ev)
            if ev["event"] == "STOP":
                stopped.set()
                return

    gevent.spawn(events)

    def stop_and_exit():
        try:
            node.stop()
        except Exception:  # the node may already be half gone
            log.exception("stop failed")
        # The STOP event is produced by node.stop(); let the event greenlet print it.
        stopped.wait(2.0)
        sys.stdout.flush()
        # Skip interpreter teardown: zmq context termination can block on
        # sockets pyre never closes.
        os._exit(0)

    stdin = FileObjectPosix(sys.stdin.fileno(), "rb", close=False)
    while True:
        line = stdin.readline()
        if not line:
            log.info("stdin closed: stopping")
            stop_and_exit()
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
            op = cmd["cmd"]
            if op == "join":
                node.join(cmd["group"])
            elif op == "leave":
                node.leave(cmd["group"])
            elif op == "whisper":
                node.whisper(uuid.UUID(hex=cmd["peer"]), frames_of(cmd))
            elif op == "whispers":
                # A numbered run, in order: "<prefix><from>", ... (long interop runs).
                peer = uuid.UUID(hex=cmd["peer"])
                prefix = str(cmd.get("prefix", ""))
                start = int(cmd.get("from", 0))
                for i in range(start, start + int(cmd["count"])):
                    node.whisper(peer, [("%s%d" % (prefix, i)).encode("utf-8")])
            elif op == "shout":
                node.shout(cmd["group"], frames_of(cmd))
            elif op == "peers":
                emit({"event": "PEERS",
                      "peers": sorted(p.hex.upper() for p in node.peers())})
            elif op == "stop":
                stop_and_exit()
            else:
                raise ValueError("unknown command %r" % op)
        except Exception as e:  # bad user input: report, keep running
            log.error("bad command %r: %s", line, e)


if __name__ == "__main__":
    main(sys.argv[1:])
