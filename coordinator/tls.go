package coordinator

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLSSettings turn on TLS for a listener: the server's certificate and key,
// and optionally the CA whose client certificates it requires.
type TLSSettings struct {
	// Cert and Key are the server's certificate chain and private key (PEM).
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	// CA is a PEM file of certificate authorities. For NATS it is also
	// handed to supervised plugins (PLUGBUS_TLS_CA) so they trust the
	// server when its certificate comes from a private CA.
	CA string `json:"ca,omitempty"`
	// Verify requires every client to present a certificate signed by CA
	// (mutual TLS).
	Verify bool `json:"verify,omitempty"`
}

// On reports whether TLS is configured.
func (t TLSSettings) On() bool { return t.Cert != "" || t.Key != "" }

// validate reports missing halves; what names the setting.
func (t TLSSettings) validate(what string, bad func(string, ...any)) {
	if (t.Cert == "") != (t.Key == "") {
		bad("%s: cert and key go together: set both, or neither for no TLS", what)
	}
	if t.Verify && t.CA == "" {
		bad("%s.verify needs %s.ca: the CA that signs the client certificates", what, what)
	}
	if !t.On() && (t.CA != "" || t.Verify) {
		bad("%s: ca and verify need a server certificate (cert and key)", what)
	}
}

// serverConfig is the listener's TLS configuration.
func (t TLSSettings) serverConfig(what string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("%s: certificate %s and key %s: %w", what, t.Cert, t.Key, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("%s: CA: %w", what, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: CA %s holds no PEM certificate", what, t.CA)
		}
		cfg.ClientCAs = pool
	}
	if t.Verify {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
