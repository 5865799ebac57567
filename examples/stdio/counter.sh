#!/bin/sh
# counter.sh: a Plugbus plugin in plain POSIX shell, over the stdio protocol
# (docs/stdio.md). It answers com.example.counter.requested with the number
# of requests it has answered so far and who asked:
#   {"count": 3, "producer": "cli"}
# The bridge writes "id" first and "producer" second on every line, so sed
# can pull them out without a JSON parser (both are plain tokens, with no
# quotes or backslashes).
# Run it with a plugin spec such as
#   - name: counter
#     exec: sh
#     args: [examples/stdio/counter.sh]
#     stdio: true

printf '%s\n' '{"manifest":{"protocol":1,"version":"0.1.0","description":"counts requests, in shell","answers":["com.example.counter.requested"],"emits":["com.example.counter.counted"]}}'

count=0
while IFS= read -r line; do
	id=$(printf '%s\n' "$line" | sed -n 's/^{"id":"\([^"]*\)".*/\1/p')
	if [ -z "$id" ]; then
		echo "counter: skipping a line without an id" >&2
		continue
	fi
	producer=$(printf '%s\n' "$line" | sed -n 's/^{"id":"[^"]*","producer":"\([^"]*\)".*/\1/p')
	count=$((count + 1))
	echo "counter: request $count from ${producer:-nobody}" >&2
	printf '{"id":"%s","event":{"type":"com.example.counter.counted","data":{"count":%d,"producer":"%s"}}}\n' "$id" "$count" "$producer"
done
