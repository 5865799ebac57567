// Command ingestpeer is the baseline of the HTTP ingest benchmark: a minimal
// net/http handler that publishes each request's body with nats.go, as the
// coordinator's POST /v1/events does without its CloudEvents work. Like the
// coordinator, it embeds a NATS server and publishes over an in-process
// connection, and answers 202 once the server has confirmed the publish (a
// flush), which is what the coordinator's 202 promises.
//
//	ingestpeer -http-listen 127.0.0.1:8080
//
// It prints "ready" on standard output once it accepts requests.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

func main() {
	listen := flag.String("http-listen", "127.0.0.1:0", "HTTP address")
	subject := flag.String("subject", "bench.ingest", "subject every body is published to")
	flag.Parse()
	log.SetPrefix("ingestpeer: ")

	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true})
	if err != nil {
		log.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(30 * time.Second) {
		log.Fatal("the embedded NATS server did not start within 30s")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /events", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err == nil {
			err = nc.Publish(*subject, body)
		}
		if err == nil {
			err = nc.FlushTimeout(5 * time.Second)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	fmt.Println("ready")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	srv.Close()
}
