package wire

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
)

func TestIncomingDeadline(t *testing.T) {
	t.Parallel()
	d := time.UnixMilli(time.Now().Add(time.Minute).UnixMilli())
	in := func(v ...string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(append([]string{}, v...)...))
	}
	// What withDeadline sends, the plugin reads back.
	out, _ := metadata.FromOutgoingContext(withDeadline(context.Background(), d))
	got, ok := incomingDeadline(metadata.NewIncomingContext(context.Background(), out)).Deadline()
	if !ok || !got.Equal(d) {
		t.Fatalf("deadline %v %v, want %v", got, ok, d)
	}
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{
		{"no metadata", context.Background()},
		{"no key", in("other", "1")},
		{"not a number", in(MetadataDeadline, "soon")},
		{"zero", in(MetadataDeadline, "0")},
		{"twice", in(MetadataDeadline, "1", MetadataDeadline, "2")},
	} {
		if _, ok := incomingDeadline(c.ctx).Deadline(); ok {
			t.Errorf("%s: a deadline", c.name)
		}
	}
	// A grpc-timeout deadline (another host) wins.
	own, cancel := context.WithTimeout(in(MetadataDeadline, "1"), time.Hour)
	defer cancel()
	if got, _ := incomingDeadline(own).Deadline(); got.Before(time.Now()) {
		t.Fatalf("the metadata replaced the call's own deadline: %v", got)
	}
}

func TestDeadlinedErr(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	past := &deadlined{Context: ctx, deadline: time.Now().Add(-time.Second)}
	if past.Err() != nil {
		t.Fatal("done before its context was cancelled")
	}
	future := &deadlined{Context: ctx, deadline: time.Now().Add(time.Hour)}
	cancel()
	if !errors.Is(past.Err(), context.DeadlineExceeded) {
		t.Fatalf("cancelled past the deadline: %v", past.Err())
	}
	if !errors.Is(future.Err(), context.Canceled) {
		t.Fatalf("cancelled before the deadline: %v", future.Err())
	}
}
