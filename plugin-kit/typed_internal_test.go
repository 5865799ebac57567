package pluginkit

import (
	"context"
	"testing"
)

type benchOrder struct {
	ID       string   `json:"id"`
	Customer string   `json:"customer"`
	Items    []string `json:"items"`
	Total    float64  `json:"total"`
}

// BenchmarkDataCheck measures what checking an event's data against its
// schema costs a handler, beside decoding the same data without a check
// (DataAs, what an untyped handler does): the handler path alone, no
// NATS, so that the difference is the check.
func BenchmarkDataCheck(b *testing.B) {
	e := NewEvent("com.example.order.placed", benchOrder{ID: "o-1", Customer: "Ada", Items: []string{"tea", "cake"}, Total: 12.5})
	ctx := context.Background()
	b.Run("decode-only", func(b *testing.B) {
		h := HandlerFunc(func(ctx context.Context, e Event) (*Event, error) {
			var o benchOrder
			return nil, e.DataAs(&o)
		})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := h.HandleEvent(ctx, *e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("checked-and-decoded", func(b *testing.B) {
		p := New("bench", "1.0.0")
		r := &route{handler: HandlerFunc(func(ctx context.Context, e Event) (*Event, error) {
			_, err := decode[benchOrder](e.Data())
			return nil, err
		})}
		withSchema(mustSchema[benchOrder](p, "com.example.order.placed"))(r)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.handler.HandleEvent(ctx, *e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
