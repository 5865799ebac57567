/*
 * greet.c: a Plugbus plugin in C, built for WebAssembly (WASI) with clang
 * and wasi-libc, run by the coordinator inside its own process (see
 * docs/wasm.md). It speaks the stdio protocol of docs/stdio.md: a manifest
 * line, then one answer line for each event line.
 *
 * It answers com.example.greet.requested as plugins/hello does: data
 * {"name":"Ada"} gets a com.example.greet.sent event {"text":"hello, Ada"}.
 * To stay short it reads JSON by searching for keys, which works because
 * the bridge writes "id" first and compact JSON; a real plugin would use a
 * JSON parser. Build it with `make wasm-c` (which installs Debian's clang,
 * lld and wasi-libc when they are missing).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* copy_string copies the JSON string value that starts after key (such as
 * "\"id\":\"") in line into out (at most size-1 bytes, escapes kept as
 * written); it returns 0 when the key is missing. */
static int copy_string(const char *line, const char *key, char *out, size_t size) {
	const char *p = strstr(line, key);
	if (p == NULL) {
		return 0;
	}
	p += strlen(key);
	size_t n = 0;
	while (*p != '\0' && *p != '"' && n + 1 < size) {
		if (*p == '\\' && p[1] != '\0') {
			out[n++] = *p++; /* keep the escape: the value is written back as JSON */
			if (n + 1 >= size) {
				break;
			}
		}
		out[n++] = *p++;
	}
	out[n] = '\0';
	return *p == '"';
}

int main(void) {
	printf("{\"manifest\":{\"protocol\":1,\"version\":\"0.1.0\","
	       "\"description\":\"greets, in C\","
	       "\"answers\":[\"com.example.greet.requested\"],"
	       "\"emits\":[\"com.example.greet.sent\"]}}\n");
	fflush(stdout);

	char *line = NULL;
	size_t cap = 0;
	static char id[256], name[1024];
	while (getline(&line, &cap, stdin) > 0) {
		if (!copy_string(line, "{\"id\":\"", id, sizeof id)) {
			fprintf(stderr, "greet: skipping a line without an id\n");
			continue;
		}
		const char *data = strstr(line, "\"data\":");
		if (data == NULL || !copy_string(data, "\"name\":\"", name, sizeof name)) {
			printf("{\"id\":\"%s\",\"error\":{\"message\":\"data must be a JSON object with a string \\\"name\\\"\",\"permanent\":true}}\n", id);
		} else {
			printf("{\"id\":\"%s\",\"event\":{\"type\":\"com.example.greet.sent\",\"data\":{\"text\":\"hello, %s\"}}}\n", id, name);
		}
		fflush(stdout);
	}
	free(line);
	return 0;
}
