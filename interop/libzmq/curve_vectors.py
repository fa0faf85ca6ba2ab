"""Golden vectors for zmesh's CURVE codecs, computed with libsodium itself (the library libzmq
uses for CURVE), through ctypes. Run once; the output is pasted into
crates/zmtp/tests/curve_codec.rs. Every input is fixed, so the output never changes:

    interop/.venv/bin/python interop/libzmq/curve_vectors.py
"""
import ctypes
import struct

import zmq
from zmq.utils import z85

na = ctypes.CDLL("libsodium.so.23")
assert na.sodium_init() >= 0


def box(msg, nonce, pk, sk):
    """crypto_box_easy: MAC(16) || ciphertext, exactly the CURVE wire form."""
    out = ctypes.create_string_buffer(len(msg) + 16)
    assert na.crypto_box_easy(out, msg, ctypes.c_ulonglong(len(msg)), nonce, pk, sk) == 0
    return out.raw


def secretbox(msg, nonce, key):
    out = ctypes.create_string_buffer(len(msg) + 16)
    assert na.crypto_secretbox_easy(out, msg, ctypes.c_ulonglong(len(msg)), nonce, key) == 0
    return out.raw


def pub(sk):
    out = ctypes.create_string_buffer(32)
    assert na.crypto_scalarmult_base(out, sk) == 0
    return out.raw


def meta(props):
    b = b""
    for k, v in props:
        b += bytes([len(k)]) + k + struct.pack(">I", len(v)) + v
    return b


S_sec = z85.decode(b"JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6")
C_sec = z85.decode(b"D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs")
S, C = pub(S_sec), pub(C_sec)
assert zmq.curve_public(b"JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6") == z85.encode(S)
c_sec = bytes([1] * 32)  # client short-term secret C'
s_sec = bytes([2] * 32)  # server short-term secret S'
c, s = pub(c_sec), pub(s_sec)
K = bytes([3] * 32)  # cookie key
cookie_nonce = bytes([4] * 16)
welcome_nonce = bytes([5] * 16)
vouch_nonce = bytes([6] * 16)

hello = (b"\x05HELLO" + b"\x01\x00" + bytes(72) + c + struct.pack(">Q", 1)
         + box(bytes(64), b"CurveZMQHELLO---" + struct.pack(">Q", 1), S, c_sec))
assert len(hello) == 200
cookie = cookie_nonce + secretbox(c + s_sec, b"COOKIE--" + cookie_nonce, K)
welcome = b"\x07WELCOME" + welcome_nonce + box(s + cookie, b"WELCOME-" + welcome_nonce, c, S_sec)
assert len(welcome) == 168
vouch = box(c + S, b"VOUCH---" + vouch_nonce, s, C_sec)
md_client = meta([(b"Socket-Type", b"DEALER"), (b"Identity", b"\x01abc")])
initiate = (b"\x08INITIATE" + cookie + struct.pack(">Q", 2)
            + box(C + vouch_nonce + vouch + md_client, b"CurveZMQINITIATE" + struct.pack(">Q", 2), s, c_sec))
md_server = meta([(b"Socket-Type", b"ROUTER")])
ready = b"\x05READY" + struct.pack(">Q", 1) + box(md_server, b"CurveZMQREADY---" + struct.pack(">Q", 1), c, s_sec)
msg_c = b"\x07MESSAGE" + struct.pack(">Q", 3) + box(b"\x01hello", b"CurveZMQMESSAGEC" + struct.pack(">Q", 3), s, c_sec)
ping = b"\x04PING\x00\x64"
msg_s = b"\x07MESSAGE" + struct.pack(">Q", 2) + box(b"\x02" + ping, b"CurveZMQMESSAGES" + struct.pack(">Q", 2), c, s_sec)

for name, v in [("HELLO", hello), ("COOKIE", cookie), ("WELCOME", welcome), ("INITIATE", initiate),
                ("READY", ready), ("MESSAGE_C3", msg_c), ("MESSAGE_S2", msg_s)]:
    print(f'const {name}: &str = "{v.hex()}";')
print("// C public:", z85.encode(C).decode(), " S public:", z85.encode(S).decode())
