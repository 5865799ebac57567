#!/usr/bin/env python3
"""hello.py: a Plugbus plugin in Python, over the stdio protocol.

It answers com.example.greet.requested as plugins/hello does: data
{"name": "Ada"} gets a com.example.greet.sent event with data
{"text": "hello, Ada"}; data without a string name is refused for good.
Two more members of the data show the rest of the protocol (the
conformance suite, internal/conformance, uses them):

- "fail_once": true answers the first delivery of the event with a
  retryable error; in durable mode the bus delivers it again, and the
  redelivery is greeted.
- "wait": seconds first emits a com.example.greet.waiting event, then
  waits that long before answering.

The protocol is in docs/stdio.md; this file uses the standard library only.
Run it through the coordinator with a plugin spec such as

    - name: hello-py
      exec: python3
      args: [examples/stdio/hello.py]
      stdio: true
"""
import json
import sys
import time

failed = set()  # ids of the events answered with a retryable error (fail_once)


def send(line):
    """Writes one line to the bridge: compact JSON, a newline, flushed."""
    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def log(message):
    """Logs go to standard error, which the coordinator logs as the plugin's."""
    print(message, file=sys.stderr, flush=True)


def greet(event):
    """Returns the answer to one greeting request (without its id)."""
    data = event.get("data")
    name = None
    if isinstance(data, dict):
        # Like Go's encoding/json in plugins/hello: "name" in any case.
        name = next((v for k, v in data.items() if k.lower() == "name"), None)
    if not isinstance(name, str):
        return {"error": {"message": 'data must be a JSON object with a string "name"', "permanent": True}}
    if data.get("fail_once") is True and event["id"] not in failed:
        failed.add(event["id"])
        return {"error": {"message": "failing once on purpose (fail_once); a redelivery will be greeted", "permanent": False}}
    wait = data.get("wait")
    if isinstance(wait, (int, float)) and wait > 0:
        # An event of our own, sent before the answer (docs/stdio.md, "emit").
        send({"emit": {"type": "com.example.greet.waiting", "data": data}})
        time.sleep(wait)
    return {"event": {"type": "com.example.greet.sent", "data": {"text": "hello, " + name}}}


def main():
    send({"manifest": {
        "protocol": 1,
        "version": "0.1.0",
        "description": "greets in Python",
        "answers": ["com.example.greet.requested"],
        "emits": ["com.example.greet.sent", "com.example.greet.waiting"],
    }})
    for raw in sys.stdin:
        try:
            line = json.loads(raw)
            answer = greet(line["event"])
        except (ValueError, KeyError, TypeError) as e:
            log("skipping a line I cannot read: %r" % e)
            continue
        send({"id": line["id"], **answer})
    # Standard input closed: the coordinator asks us to stop.


if __name__ == "__main__":
    main()
