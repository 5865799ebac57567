package kv_test

import (
	"testing"

	"github.com/plugbus/plugbus/examples/kv"
	pluginkit "github.com/plugbus/plugbus/plugin-kit"
	"github.com/plugbus/plugbus/plugin-kit/kittest"
)

// What go-plugin's example host does (Put, then Get), as invokes.
func TestPutGet(t *testing.T) {
	h := kittest.Start(t, kv.New())
	if _, err := h.Request(pluginkit.NewEvent(kv.TypePut, kv.PutRequest{Key: "hello", Value: []byte("world")})); err != nil {
		t.Fatal(err)
	}
	reply, err := h.Request(pluginkit.NewEvent(kv.TypeGet, kv.GetRequest{Key: "hello"}))
	if err != nil {
		t.Fatal(err)
	}
	var v kv.Value
	if err := reply.DataAs(&v); err != nil || string(v.Value) != "world" {
		t.Fatalf("got %s (%v), want world", reply.Data(), err)
	}
	if _, err := h.Request(pluginkit.NewEvent(kv.TypeGet, kv.GetRequest{Key: "nope"})); err == nil {
		t.Fatal("a missing key answered; want the plugin's error")
	}
}
