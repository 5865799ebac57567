#!/usr/bin/env python3
"""hello.py: a Plugbus plugin in Python, over the stdio protocol.

It answers com.example.greet.requested as plugins/hello does: data
{"name": "Ada"} gets a com.example.greet.sent event with data
{"text": "hello, Ada"}; data without a string name is refused for good.
The protocol is in docs/stdio.md; this file uses the standard library only.
Run it through the coordinator with a plugin spec such as

    - name: hello-py
      exec: python3
      args: [examples/stdio/hello.py]
      stdio: true
"""
import json
import sys


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
    return {"event": {"type": "com.example.greet.sent", "data": {"text": "hello, " + name}}}


def main():
    send({"manifest": {
        "protocol": 1,
        "version": "0.1.0",
        "description": "greets in Python",
        "answers": ["com.example.greet.requested"],
        "emits": ["com.example.greet.sent"],
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
