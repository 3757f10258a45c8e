package device

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connector-host/connector-host/plugins/astarte/internal/interfaces"
	"github.com/connector-host/connector-host/plugins/astarte/internal/transport"
)

// MaxBatch is the largest batch SendBatch takes.
const MaxBatch = 10000

// BatchItem is one datastream message of a batch: a value on an individual
// interface, or Values (keyed by the last endpoint segment) on an
// object-aggregated one, with the explicit timestamp when the mapping has
// explicit_timestamp.
type BatchItem struct {
	Interface string
	Path      string
	// Value is the value of a message on an individual interface (nil when
	// not given).
	Value any
	// Values is the object of a message on an object-aggregated interface
	// (nil when not given).
	Values    map[string]any
	Timestamp *time.Time
}

// ItemError is one invalid message of a batch.
type ItemError struct {
	// Index is the message's position in the batch (from 0).
	Index int
	// Field is the message field at fault: interface, path, value,
	// values, values.<key> or timestamp.
	Field string
	// Err says why (usually an *interfaces.Error naming the interface, the
	// path and the rule).
	Err error
}

// InvalidBatchError is SendBatch's answer when messages break their
// interface: nothing of the batch was sent or queued.
type InvalidBatchError struct {
	// Total is the batch size.
	Total int
	// Items are the invalid messages, in batch order.
	Items []ItemError
}

// maxListed bounds how many invalid messages Error lists.
const maxListed = 100

// Error lists the invalid messages (the first 100) as
// messages[i].field: reason.
func (e *InvalidBatchError) Error() string { return e.Format("") }

// Format is Error with prefix before each field name (e.g. "request.").
func (e *InvalidBatchError) Format(prefix string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d messages are invalid; nothing was sent", len(e.Items), e.Total)
	for k, it := range e.Items {
		if k == maxListed {
			fmt.Fprintf(&b, "; and %d more", len(e.Items)-maxListed)
			break
		}
		b.WriteString("; ")
		b.WriteString(prefix)
		fmt.Fprintf(&b, "messages[%d]", it.Index)
		if it.Field != "" {
			b.WriteString("." + it.Field)
		}
		b.WriteString(": ")
		b.WriteString(it.Err.Error())
	}
	return b.String()
}

// batchShape checks that a message carries value or values as its
// interface wants (the rest is checked as send and send_aggregate do).
func batchShape(iface *interfaces.Interface, it BatchItem) (string, error) {
	switch {
	case it.Value != nil && it.Values != nil:
		return fieldValues, interfaces.PathError(it.Interface, it.Path, "give value (individual interface) or values (object-aggregated interface), not both")
	case iface == nil || iface.Type != interfaces.Datastream || iface.Ownership != interfaces.DeviceOwned:
		return "", nil
	case iface.IsObject() && it.Values == nil:
		return fieldValues, interfaces.PathError(it.Interface, it.Path, "interface is object-aggregated: give values (an object keyed by the last endpoint segment) instead of value")
	case !iface.IsObject() && it.Values != nil:
		return fieldValue, interfaces.PathError(it.Interface, it.Path, "interface is individual: give value instead of values")
	}
	return "", nil
}

// ErrBatchSize is matched by the error of an empty or too large batch.
var ErrBatchSize = fmt.Errorf("a batch has 1 to %d messages", MaxBatch)

// SendBatch sends many datastream messages in one call. Every message is
// validated first; if any breaks its interface, SendBatch returns an
// *InvalidBatchError listing each invalid one and sends nothing. Otherwise
// it returns one Result per message, in batch order, with the same
// delivery and retention semantics as Send and SendObject: delivered when
// connected (confirmed at the mapping's QoS), else queued by retention
// (durable queue, memory queue) or failed (discard while offline); a
// message the remote end refuses fails alone.
//
// Messages are sent pipelined: messages that share an interface and a
// path form a lane, sent in batch order (Conn.Send keeps its window of
// them in flight); up to Config.BatchLanes lanes are sent at once. Order
// therefore holds per interface and path, as Astarte requires for a
// datastream, not across paths. A lane whose connection is lost mid-way
// queues the rest of its messages by retention, in order.
func (d *Device) SendBatch(ctx context.Context, items []BatchItem) ([]Result, error) {
	if len(items) == 0 || len(items) > MaxBatch {
		return nil, fmt.Errorf("%w, not %d", ErrBatchSize, len(items))
	}
	msgs := make([]*transport.Message, len(items))
	var invalid []ItemError
	for k, it := range items {
		field, err := batchShape(d.Interface(it.Interface), it)
		if err == nil {
			if it.Values != nil {
				msgs[k], field, err = d.prepareObject(it.Interface, it.Path, it.Values, it.Timestamp)
			} else {
				msgs[k], field, err = d.prepareIndividual(it.Interface, it.Path, it.Value, it.Timestamp)
			}
		}
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		if err != nil {
			invalid = append(invalid, ItemError{Index: k, Field: field, Err: err})
		}
	}
	if len(invalid) > 0 {
		return nil, &InvalidBatchError{Total: len(items), Items: invalid}
	}

	// Lanes: the messages of one interface+path, in batch order.
	type lane struct{ idx []int }
	type laneKey struct{ iface, path string }
	var lanes []*lane
	byKey := map[laneKey]*lane{}
	for k, m := range msgs {
		key := laneKey{m.Interface.Name, m.Path}
		l := byKey[key]
		if l == nil {
			l = &lane{}
			byKey[key] = l
			lanes = append(lanes, l)
		}
		l.idx = append(l.idx, k)
	}
	results := make([]Result, len(msgs))
	run := func(l *lane) {
		lm := make([]*transport.Message, len(l.idx))
		for j, k := range l.idx {
			lm[j] = msgs[k]
		}
		lr := make([]Result, len(l.idx))
		d.deliverLane(ctx, lm, lr)
		for j, k := range l.idx {
			results[k] = lr[j]
		}
	}
	workers := min(d.cfg.BatchLanes, len(lanes))
	if workers <= 1 {
		for _, l := range lanes {
			run(l)
		}
		return results, nil
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1)) - 1
				if k >= len(lanes) {
					return
				}
				run(lanes[k])
			}
		}()
	}
	wg.Wait()
	return results, nil
}
