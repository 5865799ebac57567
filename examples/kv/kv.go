// Package kv is hashicorp/go-plugin's key-value example plugin
// (examples/grpc in its repository) moved to Plugbus; see
// docs/migrating-from-go-plugin.md. Its interface's methods, Put and Get,
// become the answered types com.example.kv.put and com.example.kv.get.
package kv

import (
	"context"
	"errors"
	"sync"

	pluginkit "github.com/plugbus/plugbus/plugin-kit"
)

// The types the plugin answers, one per method of go-plugin's KV interface.
const (
	TypePut = "com.example.kv.put"
	TypeGet = "com.example.kv.get"
)

// PutRequest is Put's arguments; GetRequest is Get's; Value is Get's result.
type (
	PutRequest struct {
		Key   string `json:"key"`
		Value []byte `json:"value"`
	}
	GetRequest struct {
		Key string `json:"key"`
	}
	Value struct {
		Value []byte `json:"value"`
	}
)

func init() { pluginkit.Register("kv", New) }

// New returns the kv plugin, keeping its values in memory.
func New() *pluginkit.Plugin {
	var mu sync.Mutex
	values := map[string][]byte{}
	p := pluginkit.New("kv", "1.0.0", pluginkit.WithDescription("a key-value store, from go-plugin's example"))
	p.HandleFunc(TypePut, func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		var req PutRequest
		if err := e.DataAs(&req); err != nil || req.Key == "" {
			return nil, pluginkit.Permanent(errors.Join(errors.New("want {\"key\": ..., \"value\": ...}"), err))
		}
		mu.Lock()
		values[req.Key] = req.Value
		mu.Unlock()
		return nil, nil // an empty answer: done
	})
	p.HandleFunc(TypeGet, func(ctx context.Context, e pluginkit.Event) (*pluginkit.Event, error) {
		var req GetRequest
		if err := e.DataAs(&req); err != nil {
			return nil, pluginkit.Permanent(err)
		}
		mu.Lock()
		v, ok := values[req.Key]
		mu.Unlock()
		if !ok {
			return nil, pluginkit.Permanent(errors.New("no such key: " + req.Key))
		}
		return pluginkit.NewEvent("com.example.kv.value", Value{Value: v}), nil
	})
	return p
}
