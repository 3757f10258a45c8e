package stoa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/connector-host/connector-host/plugins/stoa/internal/rows"
	"github.com/connector-host/connector-host/sdk"
)

// FetchRequest selects the objects to read: the order arguments, or
// OrderIDs to skip ordering.
type FetchRequest struct {
	OrderRequest
	// OrderIDs are the objects to read, in this order; when set, no order
	// call is made and the order arguments are ignored.
	OrderIDs []string `json:"order_ids,omitempty"`
	// Columns projects the rows on these top-level columns, in this order;
	// default every column.
	Columns []string `json:"columns,omitempty"`
	// AllowPartial keeps going when an object cannot be downloaded after the
	// retries: the rows of the others are delivered and the failures listed
	// at the end. By default the first such failure ends the fetch with an
	// error naming the order id.
	AllowPartial bool `json:"allow_partial,omitempty"`
}

// Column describes a column of the delivered rows.
type Column struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Nullable bool   `json:"nullable"`
}

// Failure is an object that could not be read.
type Failure struct {
	OrderID   string `json:"order_id"`
	ErrorCode string `json:"error_code"`
	Message   string `json:"message"`
}

// FetchResult summarizes a fetch.
type FetchResult struct {
	// OrderIDs are the objects of the fetch, in delivery order.
	OrderIDs []string `json:"order_ids"`
	// Rows is the number of rows delivered.
	Rows int64 `json:"rows"`
	// Bytes is the size of the objects read.
	Bytes int64 `json:"bytes"`
	// Columns describe the rows (of the first object read).
	Columns []Column `json:"columns,omitempty"`
	// Failures lists the objects skipped under AllowPartial.
	Failures []Failure `json:"failures,omitempty"`
	// NextPageToken continues the order after this page ("" at the end or
	// when OrderIDs were given).
	NextPageToken string `json:"next_page_token,omitempty"`
}

// FailureError is nil when every object was read, else a bad_gateway-class
// error (the code of the first failure) listing the failed order ids, with
// app error code "stoa.partial_fetch".
func (r *FetchResult) FailureError() error {
	if len(r.Failures) == 0 {
		return nil
	}
	e := failuresError(r.Failures, r.Rows, len(r.OrderIDs))
	e.AppErrorCode = "stoa.partial_fetch"
	return e
}

// failuresError describes failed objects.
func failuresError(fs []Failure, rowsSent int64, total int) *sdk.Error {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = fmt.Sprintf("%s (%s: %s)", quoteShort(f.OrderID), f.ErrorCode, f.Message)
	}
	noun := "object"
	if total != 1 {
		noun = "objects"
	}
	e := sdk.Errorf(sdk.Code(fs[0].ErrorCode), "fetch: %d of %d %s failed: %s; %d rows were delivered",
		len(fs), total, noun, strings.Join(parts, "; "), rowsSent)
	e.AppErrorCode = "stoa.fetch_failed"
	return e
}

// RowFunc receives one row: a JSON object, valid until the call returns —
// its bytes are reused for later rows, so a callee that keeps a row copies
// it. Calls come one at a time, in row order, from a goroutine of the fetch
// (not necessarily the caller's).
type RowFunc func(row json.RawMessage) error

// Fetch streams the rows of the objects req selects to emit: objects in
// order of the order ids, rows in file order, read row group by row group.
// Up to download_workers objects are signed and downloaded ahead of the
// one being read; a download that fails is retried with backoff, re-signed
// when its signature expired. An error from emit stops the fetch and is
// returned as is.
func (c *Client) Fetch(ctx context.Context, req FetchRequest, emit RowFunc) (*FetchResult, error) {
	rs := newRowSink(emit)
	defer rs.close()
	return c.run(ctx, req, rs, false)
}

// sinkError carries an error of the caller's sink unchanged.
type sinkError struct{ err error }

func (e *sinkError) Error() string { return e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }

// sink receives the record batches of a fetch.
type sink interface {
	// begin is called once, before the first batch, with the schema of
	// the first object read.
	begin(schema *arrow.Schema) error
	// write takes one batch; it may keep it (retained) until flush.
	write(orderID string, rec arrow.RecordBatch) error
	// flush finishes the batches written so far (at the end of each
	// object).
	flush() error
}

func sameSchema(a, b *arrow.Schema) bool {
	if a == nil || b == nil || a.NumFields() != b.NumFields() {
		return false
	}
	for i := range a.NumFields() {
		fa, fb := a.Field(i), b.Field(i)
		if fa.Name != fb.Name || !arrow.TypeEqual(fa.Type, fb.Type) {
			return false
		}
	}
	return true
}

// columnsOf describes a schema.
func columnsOf(s *arrow.Schema) []Column {
	out := make([]Column, s.NumFields())
	for i, f := range s.Fields() {
		out[i] = Column{Name: f.Name, Type: f.Type.String(), Nullable: f.Nullable}
	}
	return out
}

// checkFetch validates req before any network call.
func checkFetch(req FetchRequest) (FetchRequest, error) {
	if len(req.OrderIDs) > 0 {
		if err := checkOrderIDs(req.OrderIDs); err != nil {
			return req, err
		}
	} else {
		or, err := req.Normalized()
		if err != nil {
			return req, err
		}
		req.OrderRequest = or
	}
	seen := make(map[string]int, len(req.Columns))
	for i, col := range req.Columns {
		if col == "" {
			return req, sdk.Errorf(sdk.BadRequest, "request.columns[%d]: must not be empty", i)
		}
		if j, dup := seen[col]; dup {
			return req, sdk.Errorf(sdk.BadRequest, "request.columns[%d]: %s repeats request.columns[%d]", i, quoteShort(col), j)
		}
		seen[col] = i
	}
	return req, nil
}

// slot is one object of the fetch, filled by its download worker.
type slot struct {
	done chan struct{}
	dl   *download
	err  error
}

// run is the fetch engine shared by Fetch and Export. strict requires every
// object to have the first object's schema (a failure of that object
// otherwise).
func (c *Client) run(ctx context.Context, req FetchRequest, s sink, strict bool) (*FetchResult, error) {
	req, err := checkFetch(req)
	if err != nil {
		return nil, err
	}
	res := &FetchResult{}
	ids := req.OrderIDs
	if len(ids) == 0 {
		if ids, err = c.Order(ctx, req.OrderRequest); err != nil {
			return nil, err
		}
		res.NextPageToken = NextPageToken(req.OrderRequest, len(ids))
	}
	res.OrderIDs = ids

	ctx, cancel := context.WithCancel(ctx)
	slots := make([]slot, len(ids))
	for i := range slots {
		slots[i].done = make(chan struct{})
	}
	// window bounds the objects downloaded or held ahead of the reader.
	window := make(chan struct{}, c.cfg.DownloadWorkers)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range ids {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				for j := i; j < len(ids); j++ {
					slots[j].err = ctx.Err()
					close(slots[j].done)
				}
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				slots[i].dl, slots[i].err = c.download(ctx, ids[i])
				close(slots[i].done)
			}()
		}
	}()
	defer func() {
		cancel()
		wg.Wait()
		for i := range slots {
			if slots[i].dl != nil {
				slots[i].dl.close()
			}
		}
	}()

	var schema *arrow.Schema
	for i, id := range ids {
		sl := &slots[i]
		<-sl.done
		if sl.err != nil && ctx.Err() != nil {
			return res, c.final(ctx, ctx.Err())
		}
		var n int64
		if sl.err == nil {
			n, err = c.readObject(ctx, id, sl.dl, req.Columns, s, &schema, strict, res)
			res.Rows += n
			res.Bytes += sl.dl.size
			sl.dl.close()
			sl.dl = nil
			var se *sinkError
			switch {
			case err == nil:
			case errors.As(err, &se):
				return res, se.err
			case isRequestError(err) || ctx.Err() != nil:
				return res, err
			default:
				sl.err = err
			}
		}
		<-window
		if sl.err == nil {
			continue
		}
		f := failureOf(id, sl.err)
		if n > 0 {
			f.Message += fmt.Sprintf(" (after %d of its rows were delivered)", n)
		}
		res.Failures = append(res.Failures, f)
		if !req.AllowPartial {
			// Name every failure known so far, then stop.
			for j := i + 1; j < len(ids); j++ {
				select {
				case <-slots[j].done:
					if slots[j].err != nil && !errors.Is(slots[j].err, context.Canceled) {
						res.Failures = append(res.Failures, failureOf(ids[j], slots[j].err))
					}
				default:
				}
			}
			return res, failuresError(res.Failures, res.Rows, len(ids))
		}
	}
	if len(res.Failures) == len(ids) {
		return res, failuresError(res.Failures, res.Rows, len(ids))
	}
	return res, nil
}

// isRequestError reports errors about the request itself (an unknown
// column), which fail the whole fetch whatever the failure policy.
func isRequestError(err error) bool {
	var se *sdk.Error
	return errors.As(err, &se) && se.Code == sdk.BadRequest
}

func failureOf(id string, err error) Failure {
	var se *sdk.Error
	if errors.As(err, &se) {
		return Failure{OrderID: id, ErrorCode: string(se.Code), Message: se.Message}
	}
	return Failure{OrderID: id, ErrorCode: string(sdk.UnexpectedError), Message: err.Error()}
}

// readObject projects and decodes one downloaded object into s.
func (c *Client) readObject(ctx context.Context, id string, dl *download, columns []string, s sink, schema **arrow.Schema, strict bool, res *FetchResult) (int64, error) {
	proj, err := dl.obj.Project(columns)
	if err != nil {
		var uc *rows.UnknownColumnError
		if errors.As(err, &uc) {
			return 0, sdk.Errorf(sdk.BadRequest, "request.columns[%d]: unknown column %s (order id %s has %s)",
				uc.Index, quoteShort(uc.Name), quoteShort(id), strings.Join(uc.Available, ", "))
		}
		return 0, sdk.Errorf(sdk.BadRequest, "request.%v", err)
	}
	if *schema == nil {
		*schema = proj.Schema()
		res.Columns = columnsOf(proj.Schema())
		if err := s.begin(proj.Schema()); err != nil {
			return 0, err
		}
	} else if strict && !sameSchema(*schema, proj.Schema()) {
		return 0, sdk.Errorf(sdk.InvalidResponse, "order id %s has another schema than the first object: %s", quoteShort(id), proj.Schema())
	}
	var n int64
	err = dl.obj.Read(ctx, proj, rows.ReadOptions{BatchRows: c.opts.BatchRows}, func(rec arrow.RecordBatch) error {
		if err := s.write(id, rec); err != nil {
			return err
		}
		n += rec.NumRows()
		return nil
	})
	if ferr := s.flush(); ferr != nil {
		return n, ferr
	}
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, rows.ErrCorrupt):
		return n, sdk.Errorf(sdk.InvalidResponse, "order id %s: %v", quoteShort(id), err)
	}
	var se *sdk.Error
	var sk *sinkError
	if errors.As(err, &sk) || errors.As(err, &se) {
		return n, err
	}
	if ctx.Err() != nil {
		return n, c.final(ctx, ctx.Err())
	}
	return n, &sinkError{err}
}

// download is one object, stored and opened.
type download struct {
	sp   *spool
	obj  *rows.Object
	size int64
}

func (d *download) close() {
	if d != nil && d.sp != nil {
		_ = d.sp.Close()
		d.sp = nil
	}
}

// maxResigns bounds re-signing after 403 answers for one object.
const maxResigns = 2

// download signs and downloads one object, retrying failures and
// re-signing when the presigned URL is refused (403: expired or invalid
// signature).
func (c *Client) download(ctx context.Context, id string) (*download, error) {
	what := fmt.Sprintf("download of order id %s", quoteShort(id))
	var signed string
	resigns := 0
	var last *callError
	for attempt := 1; attempt <= c.retry.Attempts; {
		if signed == "" {
			u, err := c.signOne(ctx, id)
			if err != nil {
				return nil, err
			}
			signed = u
		}
		dl, err := c.getObject(ctx, signed, what)
		if err == nil {
			return dl, nil
		}
		if ctx.Err() != nil {
			return nil, c.final(ctx, ctx.Err())
		}
		var ce *callError
		if !errors.As(err, &ce) {
			return nil, c.final(ctx, err)
		}
		if ce.status == http.StatusForbidden && resigns < maxResigns {
			resigns++
			signed = ""
			c.opts.Logger.Info("stoa refused a presigned url (expired or invalid signature); signing again", "order_id", id, "resign", resigns)
			continue
		}
		if !ce.retryable {
			return nil, c.final(ctx, ce)
		}
		last = ce
		if attempt == c.retry.Attempts {
			break
		}
		if ce.retryAfter > c.retry.MaxRetryAfter {
			ce.retryable = false
			ce.msg += fmt.Sprintf(" (Retry-After %s exceeds the %s the client waits)", ce.retryAfter, c.retry.MaxRetryAfter)
			return nil, c.final(ctx, ce)
		}
		pause := c.backoff(attempt, ce.retryAfter)
		c.logRetry(ce, attempt, pause)
		if err := sleep(ctx, pause); err != nil {
			return nil, c.final(ctx, err)
		}
		attempt++
	}
	last.msg += fmt.Sprintf(" (gave up after %d attempts)", c.retry.Attempts)
	return nil, c.final(ctx, last)
}

// getObject downloads a presigned URL into a spool and opens it as Parquet.
// A short or unreadable object is a retryable invalid_response.
func (c *Client) getObject(ctx context.Context, u, what string) (*download, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, &callError{code: sdk.InvalidResponse, msg: what + ": Stoa's presigned url is not a valid URL"}
	}
	resp, err := c.roundTrip(ctx, req, what)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(what, resp)
	}
	sp := newSpool(c.opts.SpoolDir, c.opts.SpoolMemoryBytes, resp.ContentLength)
	n, err := io.Copy(sp, resp.Body)
	if err != nil {
		_ = sp.Close()
		var spe *spoolError
		if errors.As(err, &spe) {
			return nil, &callError{code: sdk.InternalError, msg: fmt.Sprintf("%s: %v", what, spe)}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		terr := transportError(what, err)
		var ce *callError
		if errors.As(terr, &ce) {
			ce.msg = fmt.Sprintf("%s: the transfer broke after %d bytes: %v", what, n, errors.Unwrap(ce))
			if errors.Is(err, errIdleTimeout) {
				ce.msg = fmt.Sprintf("%s: the transfer stalled after %d bytes for longer than timeout_s", what, n)
			}
		}
		return nil, terr
	}
	obj, err := rows.Open(sp.reader())
	if err != nil {
		_ = sp.Close()
		return nil, &callError{
			code: sdk.InvalidResponse, retryable: true, cause: err,
			msg: fmt.Sprintf("%s: the object (%d bytes) may be truncated: %v", what, n, err),
		}
	}
	return &download{sp: sp, obj: obj, size: n}, nil
}
