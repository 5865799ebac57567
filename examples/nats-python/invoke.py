#!/usr/bin/env python3
"""Invoke a Plugbus capability from Python with no library but the standard one.

It speaks the NATS client protocol over a socket (CONNECT, SUB, HPUB, HMSG)
and sends a CloudEvent in binary mode (ce- headers), as docs/protocol.md
describes, then prints the answer's data, or the plugin's error code and
message and exits 1.

    python3 invoke.py nats://127.0.0.1:4222 com.example.greet.requested '{"name": "Ada"}'

A loopback coordinator without secure mode accepts it as is; in secure mode
the client needs an nkey, which takes a NATS client library (nats-py).
"""
import json
import socket
import sys
import time
import uuid
from urllib.parse import urlparse


def invoke(url, typ, data, caller="python", timeout=5.0):
    u = urlparse(url)
    sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 4222), timeout=timeout)
    f = sock.makefile("rb")
    info = f.readline()  # INFO {...}
    if not info.startswith(b"INFO"):
        raise RuntimeError("not a NATS server: %r" % info[:80])
    connect = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True, "lang": "python", "version": "0"}
    inbox = "_INBOX." + uuid.uuid4().hex
    sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nSUB " + inbox.encode() + b" 1\r\n")
    headers = {
        "ce-specversion": "1.0",
        "ce-id": uuid.uuid4().hex,
        "ce-source": "urn:example:" + caller,
        "ce-type": typ,
        "ce-datacontenttype": "application/json",
    }
    hdr = "NATS/1.0\r\n" + "".join("%s: %s\r\n" % kv for kv in headers.items()) + "\r\n"
    body = data.encode()
    subject = "plugbus.invoke.%s.%s" % (caller, typ)
    sock.sendall(("HPUB %s %s %d %d\r\n" % (subject, inbox, len(hdr), len(hdr) + len(body))).encode() + hdr.encode() + body + b"\r\nPING\r\n")
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = f.readline()
        if not line:
            raise RuntimeError("connection closed")
        if line.startswith(b"PING"):
            sock.sendall(b"PONG\r\n")
        elif line.startswith(b"-ERR"):
            raise RuntimeError(line.decode().strip())
        elif line.startswith(b"HMSG") or line.startswith(b"MSG"):
            parts = line.split()
            total = int(parts[-1])
            hdr_len = int(parts[-2]) if line.startswith(b"HMSG") else 0
            payload = f.read(total + 2)[:total]
            head, data = payload[:hdr_len].decode(), payload[hdr_len:]
            status = head.split("\r\n")[0][9:].strip() if head else ""
            fields = {}
            for h in head.split("\r\n")[1:]:
                if ":" in h:
                    k, v = h.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
            if status.startswith("503"):
                return None, "no plugin answers " + typ
            if "nats-service-error-code" in fields:
                return None, "%s %s" % (fields["nats-service-error-code"], fields.get("nats-service-error", ""))
            return data.decode(), None
    raise RuntimeError("no answer within %ss" % timeout)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: invoke.py NATS-URL TYPE JSON-DATA")
    answer, err = invoke(sys.argv[1], sys.argv[2], sys.argv[3])
    if err:
        print(err, file=sys.stderr)
        sys.exit(1)
    print(answer)
