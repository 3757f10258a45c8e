package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func BenchmarkEnqueue(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "b.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	payload := make([]byte, 64)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Enqueue(ctx, QueuedMessage{Device: "d", Interface: "com.ex.D", Path: "/v", Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEnqueueParallel(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "b.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	payload := make([]byte, 64)
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Enqueue(ctx, QueuedMessage{Device: "d", Interface: "com.ex.D", Path: "/v", Payload: payload}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkDrain measures Peek+Ack in batches of 256, the device's drain
// loop without the network.
func BenchmarkDrain(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "b.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	payload := make([]byte, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < b.N; i++ {
			_, _ = s.Enqueue(ctx, QueuedMessage{Device: "d", Interface: "com.ex.D", Path: "/v", Payload: payload})
		}
	}()
	<-done
	b.ResetTimer()
	n := 0
	for n < b.N {
		msgs, _, err := s.Peek(ctx, "d", 256, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		ids := make([]int64, len(msgs))
		for k, m := range msgs {
			ids[k] = m.ID
		}
		if err := s.Ack(ctx, "d", ids...); err != nil {
			b.Fatal(err)
		}
		n += len(msgs)
	}
}
