#!/usr/bin/env python3
"""Self-check of the interop harness against the real peers (no Rust involved).

Runs a pyre-gevent agent in zmesh-h1 and a zyre.js agent in zmesh-h2 on their
own beacon port and checks, with timeouts (no sleeps), that each sees the
other's ENTER with headers, JOIN, WHISPER, SHOUT and, when the other stops,
EXIT. Run as root after `interop/netns.sh up` (interop/selfcheck.sh does both).
Prints every event it sees; exits non-zero on the first failed expectation.

Uses only the standard library so it runs with the system python.
"""

import json
import os
import queue
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = int(os.environ.get("SELFCHECK_PORT", "5790"))
TIMEOUT = 15.0


class Agent:
    """One agent process in a namespace; events are queued by a reader thread."""

    def __init__(self, label, ns, argv):
        self.label = label
        self.buffer = []
        self.events = queue.Queue()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns] + argv,
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(os.path.join("/tmp", "selfcheck-%s.log" % label), "wb"),
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                print("[%s] non-JSON stdout: %r" % (self.label, line), file=sys.stderr)
                continue
            print("[%s] %s" % (self.label, json.dumps(ev)))
            self.events.put(ev)
        self.events.put(None)

    def send(self, **cmd):
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()

    def wait_for(self, what, pred, timeout=TIMEOUT):
        for i, ev in enumerate(self.buffer):
            if pred(ev):
                return self.buffer.pop(i)
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                break
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                break
            if ev is None:
                raise SystemExit("FAIL [%s] agent exited while waiting for %s" % (self.label, what))
            if pred(ev):
                return ev
            self.buffer.append(ev)
        raise SystemExit("FAIL [%s] no %s within %.0fs" % (self.label, what, timeout))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def main():
    pyre = Agent("pyre@h1", "zmesh-h1", [
        "interop/.venv/bin/python", "interop/pyre_agent.py", "--name", "pyre1",
        "--iface", "eth0", "--port", str(PORT), "--header", "X-Impl=pyre"])
    zjs = Agent("zyrejs@h2", "zmesh-h2", [
        "node", "interop/zyrejs_agent.js", "--name", "zjs2",
        "--iface", "eth0", "--port", str(PORT), "--header", "X-Impl=zyre.js"])
    try:
        p = pyre.wait_for("READY", lambda e: e["event"] == "READY")
        z = zjs.wait_for("READY", lambda e: e["event"] == "READY")
        pu, zu = p["uuid"], z["uuid"]

        e = pyre.wait_for("ENTER zjs2", lambda e: e["event"] == "ENTER" and e["peer"] == zu)
        assert e["headers"].get("X-Impl") == "zyre.js", e
        assert e["name"] == "zjs2", e
        e = zjs.wait_for("ENTER pyre1", lambda e: e["event"] == "ENTER" and e["peer"] == pu)
        assert e["headers"].get("X-Impl") == "pyre", e
        assert e["name"] == "pyre1", e

        pyre.send(cmd="join", group="CHAT")
        zjs.send(cmd="join", group="CHAT")
        pyre.wait_for("JOIN CHAT from zjs2", lambda e: e["event"] == "JOIN" and e["peer"] == zu and e["group"] == "CHAT")
        zjs.wait_for("JOIN CHAT from pyre1", lambda e: e["event"] == "JOIN" and e["peer"] == pu and e["group"] == "CHAT")

        pyre.send(cmd="whisper", peer=zu, frames=["hello zyre.js"])
        zjs.send(cmd="whisper", peer=pu, frames=["hello pyre"])
        e = zjs.wait_for("WHISPER from pyre1", lambda e: e["event"] == "WHISPER" and e["peer"] == pu)
        assert e["frames"] == ["hello zyre.js"], e
        e = pyre.wait_for("WHISPER from zjs2", lambda e: e["event"] == "WHISPER" and e["peer"] == zu)
        assert e["frames"] == ["hello pyre"], e

        pyre.send(cmd="shout", group="CHAT", frames=["pyre shouts"])
        zjs.send(cmd="shout", group="CHAT", frames=["zyre.js shouts"])
        e = zjs.wait_for("SHOUT from pyre1", lambda e: e["event"] == "SHOUT" and e["peer"] == pu)
        assert e["group"] == "CHAT" and e["frames"] == ["pyre shouts"], e
        e = pyre.wait_for("SHOUT from zjs2", lambda e: e["event"] == "SHOUT" and e["peer"] == zu)
        assert e["group"] == "CHAT" and e["frames"] == ["zyre.js shouts"], e

        pyre.send(cmd="leave", group="CHAT")
        zjs.wait_for("LEAVE from pyre1", lambda e: e["event"] == "LEAVE" and e["peer"] == pu and e["group"] == "CHAT")

        zjs.send(cmd="peers")
        e = zjs.wait_for("PEERS", lambda e: e["event"] == "PEERS")
        assert e["peers"] == [pu], e

        # Polite stop of zyre.js: port-0 beacon -> pyre emits EXIT.
        zjs.send(cmd="stop")
        pyre.wait_for("EXIT zjs2", lambda e: e["event"] == "EXIT" and e["peer"] == zu)
        assert zjs.proc.wait(timeout=TIMEOUT) == 0
        pyre.send(cmd="stop")
        pyre.wait_for("STOP", lambda e: e["event"] == "STOP" and e["peer"] == pu)
        assert pyre.proc.wait(timeout=TIMEOUT) == 0
    except AssertionError as e:
        raise SystemExit("FAIL: unexpected event %s" % e)
    finally:
        pyre.kill()
        zjs.kill()
    print("selfcheck OK: pyre-gevent <-> zyre.js ENTER/JOIN/WHISPER/SHOUT/LEAVE/EXIT")


if __name__ == "__main__":
    main()
