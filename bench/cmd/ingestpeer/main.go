// Command ingestpeer is the baseline of the HTTP ingest benchmark: a minimal
// net/http handler that publishes each request's body with nats.go, as the
// coordinator's POST /v1/events does without its CloudEvents work. Like the
// coordinator, it embeds a NATS server and publishes over an in-process
// connection, and answers 202 once the server has confirmed the publish (a
// flush), which is what the coordinator's 202 promises.
//
// It is also the baseline of the HTTP invoke benchmark: POST /invoke/{type}
// sends the body to the plugin answering type as a request with nats.go,
// its CloudEvents attributes written as fixed ce- headers, and answers 200
// with the reply's data, as the coordinator's POST /v1/invoke/{type} does
// without reading, checking and encoding events. Plugins connect to the
// embedded server at -nats-listen.
//
//	ingestpeer -http-listen 127.0.0.1:8080 [-nats-listen 127.0.0.1:4222]
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
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

func main() {
	listen := flag.String("http-listen", "127.0.0.1:0", "HTTP address")
	subject := flag.String("subject", "bench.ingest", "subject every body is published to")
	natsListen := flag.String("nats-listen", "127.0.0.1:0", "address of the embedded NATS server, for plugins")
	flag.Parse()
	log.SetPrefix("ingestpeer: ")

	host, portText, err := net.SplitHostPort(*natsListen)
	if err != nil {
		log.Fatal(err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		log.Fatal(err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{Host: host, Port: port, NoSigs: true})
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
	var seq atomic.Int64
	mux.HandleFunc("POST /invoke/{type}", func(w http.ResponseWriter, r *http.Request) {
		typ := r.PathValue("type")
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		deadline := time.Now().Add(5 * time.Second)
		msg := &nats.Msg{Subject: "plugbus.invoke.ingestpeer." + typ, Data: body, Header: nats.Header{
			"ce-specversion":     {"1.0"},
			"ce-id":              {strconv.FormatInt(seq.Add(1), 10)},
			"ce-source":          {"urn:plugbus:ingestpeer"},
			"ce-type":            {typ},
			"ce-datacontenttype": {"application/json"},
			"ce-deadline":        {deadline.UTC().Format(time.RFC3339Nano)},
		}}
		reply, err := nc.RequestMsg(msg, time.Until(deadline))
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if code := reply.Header.Get("Nats-Service-Error-Code"); code != "" {
			http.Error(w, reply.Header.Get("Nats-Service-Error"), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(reply.Data)
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
