package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"

	"golang.org/x/net/http/httpguts"

	"github.com/connector-host/connector-host/sdk"
)

// Kind is the kind of a realtime operation.
type Kind string

// The realtime operations.
const (
	OpCreate Kind = "create"
	OpUpdate Kind = "update"
	OpDelete Kind = "delete"
)

// Op is one realtime operation.
type Op struct {
	// Op is create, update or delete.
	Op Kind `json:"op"`
	// EntityToken is the entity's token from the data layout.
	EntityToken string `json:"entity_token"`
	// Data is the record (create, update): a JSON object.
	Data json.RawMessage `json:"data,omitempty"`
	// EntityID is the record's primary key: required for delete; for create
	// and update it only orders a batch (see Config.IDFunc).
	EntityID string `json:"entity_id,omitempty"`
}

// OpResult is the outcome of the operation at Index of a batch.
type OpResult struct {
	Index  int
	Result Result
	// Err is nil on success, else an *sdk.Error.
	Err error
}

// DefaultConcurrency is Batch's concurrency when none is given.
const DefaultConcurrency = 8

// MaxConcurrency caps Batch's concurrency.
const MaxConcurrency = 256

// Check validates the operation as Do does before sending it: a known op,
// an entity token (and entity id for a delete) that can be sent in a
// header, a JSON object as data for create and update. The error is a
// bad_request *sdk.Error whose message starts with the field at fault
// ("entity_id: is required for delete").
func (op Op) Check() error {
	_, err := op.check()
	return err
}

// check validates the operation and returns its HTTP method.
func (op Op) check() (string, error) {
	var method string
	switch op.Op {
	case OpCreate:
		method = http.MethodPost
	case OpUpdate:
		method = http.MethodPut
	case OpDelete:
		method = http.MethodDelete
	default:
		return "", sdk.Errorf(sdk.BadRequest, "op: %q is not one of create, update, delete", string(op.Op))
	}
	if op.EntityToken == "" {
		return "", sdk.Errorf(sdk.BadRequest, "entity_token: is required")
	}
	if !httpguts.ValidHeaderFieldValue(op.EntityToken) {
		return "", sdk.Errorf(sdk.BadRequest, "entity_token: contains characters not allowed in a header")
	}
	if op.Op == OpDelete {
		if op.EntityID == "" {
			return "", sdk.Errorf(sdk.BadRequest, "entity_id: is required for delete")
		}
		if !httpguts.ValidHeaderFieldValue(op.EntityID) {
			return "", sdk.Errorf(sdk.BadRequest, "entity_id: contains characters not allowed in a header")
		}
		return method, nil
	}
	d := bytes.TrimSpace(op.Data)
	if len(d) == 0 || d[0] != '{' || !json.Valid(d) {
		return "", sdk.Errorf(sdk.BadRequest, "data: the record must be a JSON object")
	}
	return method, nil
}

// orderKey is the key under which operations must keep their order, or ""
// when the operation's record is unknown.
func (c *Client) orderKey(op Op) string {
	id := op.EntityID
	if id == "" && op.Op != OpDelete && c.cfg.IDFunc != nil {
		id = c.cfg.IDFunc(op.EntityToken, op.Data)
	}
	if id == "" {
		return ""
	}
	return op.EntityToken + "\x00" + id
}

// Batch runs ops with at most concurrency requests in flight (<= 0 means
// DefaultConcurrency, capped at MaxConcurrency) and returns one result per
// operation, in input order. Operations on the same record (same entity
// token and entity id) run one after another in input order; a failure does
// not stop the later ones. If ctx ends, the operations not yet started fail
// with its error.
func (c *Client) Batch(ctx context.Context, ops []Op, concurrency int) []OpResult {
	results := make([]OpResult, len(ops))
	if len(ops) == 0 {
		return results
	}
	if concurrency <= 0 {
		concurrency = DefaultConcurrency
	}
	concurrency = min(concurrency, MaxConcurrency)

	// Group operations into chains, each run sequentially: chains[c] is
	// the first operation of chain c, next[i] the operation after i in its
	// chain (-1 at the end). Operations whose record is unknown are chains
	// of one. No allocation per operation.
	chains := make([]int, 0, len(ops))
	next := make([]int, len(ops))
	last := map[string]int{} // order key → last operation of its chain
	for i, op := range ops {
		results[i].Index = i
		next[i] = -1
		k := c.orderKey(op)
		if k == "" {
			chains = append(chains, i)
			continue
		}
		if j, ok := last[k]; ok {
			next[j] = i
		} else {
			chains = append(chains, i)
		}
		last[k] = i
	}
	concurrency = min(concurrency, len(chains))

	work := make(chan int, concurrency)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first := range work {
				for i := first; i >= 0; i = next[i] {
					if err := ctx.Err(); err != nil {
						results[i].Err = sdk.Errorf(sdk.RequestTimeout, "dsync realtime %s: not started: %w", ops[i].Op, err)
						continue
					}
					results[i].Result, results[i].Err = c.Do(ctx, ops[i])
				}
			}
		}()
	}
	for _, first := range chains {
		work <- first
	}
	close(work)
	wg.Wait()
	return results
}
