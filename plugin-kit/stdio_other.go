//go:build !wasip1

package pluginkit

// stdioOnly: a program for any other system connects to NATS unless
// PLUGBUS_STDIO=1 says otherwise.
const stdioOnly = false
