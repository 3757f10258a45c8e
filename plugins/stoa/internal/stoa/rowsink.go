package stoa

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/connector-host/connector-host/plugins/stoa/internal/rows"
	"github.com/connector-host/connector-host/sdk"
)

// rowSink turns record batches into JSON rows on several cores and hands
// them to emit in order. The decoder (the caller of write) runs ahead of
// the encoders by at most a few batches, so memory stays bounded: at most
// cap(pending) batches are in flight, each as Arrow arrays and then as
// JSON. The JSON buffers are recycled once their rows were emitted (emit
// does not keep a row after it returns), so a fetch allocates them only
// while the pipeline fills up.
type rowSink struct {
	emit RowFunc

	jobs    chan *encodeJob // to the encoders
	pending chan *encodeJob // to the emitter, in order
	wg      sync.WaitGroup

	free   chan []byte  // emitted JSON buffers, for the encoders to reuse
	rowLen atomic.Int64 // bytes per row of the latest batch, to size buffers

	mu  sync.Mutex
	err error // first error of emit or of encoding; the sink is dead after it

	enc    *rows.Encoder // of the latest schema; used by write only
	schema *arrow.Schema
}

// encodeJob is one batch on its way through the sink, or a flush barrier
// (rec nil).
type encodeJob struct {
	orderID string
	enc     *rows.Encoder
	rec     arrow.RecordBatch
	out     chan encoded // capacity 1: encoders never block
	flushed chan struct{}
}

type encoded struct {
	rows [][]byte
	bufs [][]byte // the arrays the rows are cut from, recycled after emit
	err  error
}

// newRowSink starts the encoders and the emitter.
func newRowSink(emit RowFunc) *rowSink {
	workers := min(max(runtime.GOMAXPROCS(0), 1), 4)
	s := &rowSink{
		emit:    emit,
		jobs:    make(chan *encodeJob, workers),
		pending: make(chan *encodeJob, workers+1),
		free:    make(chan []byte, 2*workers+2),
	}
	s.wg.Add(workers + 1)
	for range workers {
		go s.encoder()
	}
	go s.emitter()
	return s
}

func (s *rowSink) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *rowSink) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

func (s *rowSink) begin(*arrow.Schema) error { return nil }

// write queues rec for encoding; it blocks while the pipeline is full.
func (s *rowSink) write(orderID string, rec arrow.RecordBatch) error {
	if err := s.failed(); err != nil {
		return err
	}
	if s.enc == nil || !sameSchema(s.schema, rec.Schema()) {
		enc, err := rows.NewEncoder(rec.Schema())
		if err != nil {
			return sdk.Errorf(sdk.InvalidResponse, "order id %s: %v", quoteShort(orderID), err)
		}
		s.enc, s.schema = enc, rec.Schema()
	}
	rec.Retain()
	job := &encodeJob{orderID: orderID, enc: s.enc, rec: rec, out: make(chan encoded, 1)}
	s.pending <- job
	s.jobs <- job
	return nil
}

// flush waits until every queued row has been emitted and returns the
// sink's error, if any. An encoding error concerns the object just written
// and is cleared; an error of emit (a *sinkError) is final.
func (s *rowSink) flush() error {
	barrier := &encodeJob{flushed: make(chan struct{})}
	s.pending <- barrier
	<-barrier.flushed
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.err
	var final *sinkError
	if !errors.As(err, &final) {
		s.err = nil
	}
	return err
}

// close stops the goroutines; queued rows are dropped.
func (s *rowSink) close() {
	s.fail(errSinkClosed)
	close(s.jobs)
	close(s.pending)
	s.wg.Wait()
}

var errSinkClosed = &sinkError{err: sdk.Errorf(sdk.InternalError, "fetch: row sink closed")}

func (s *rowSink) encoder() {
	defer s.wg.Done()
	for job := range s.jobs {
		job.out <- s.encodeBatch(job)
		job.rec.Release()
	}
}

// buffer returns an empty byte array of capacity at least n, recycled when
// one is free.
func (s *rowSink) buffer(n int) []byte {
	select {
	case b := <-s.free:
		if cap(b) >= n {
			return b[:0]
		}
	default:
	}
	return make([]byte, 0, n)
}

// recycle offers emitted buffers to the encoders; extra ones are dropped.
func (s *rowSink) recycle(bufs [][]byte) {
	for _, b := range bufs {
		select {
		case s.free <- b:
		default:
		}
	}
}

// encodeBatch encodes every row of job's batch into byte arrays cut into
// rows, usually one array sized by the row length of the batch before.
func (s *rowSink) encodeBatch(job *encodeJob) encoded {
	b, err := job.enc.Bind(job.rec)
	if err != nil {
		return encoded{err: sdk.Errorf(sdk.InvalidResponse, "order id %s: %v", quoteShort(job.orderID), err)}
	}
	out := make([][]byte, b.Len())
	var bufs [][]byte
	var buf []byte
	avg := int(s.rowLen.Load())
	if avg <= 0 {
		avg = 1024
	}
	for i := range b.Len() {
		start := len(buf)
		if cap(buf)-start < 4096 {
			// Start a new array sized for the rows left (an eighth more);
			// the rows already cut keep the old one. Rows are never written
			// after cutting.
			if i > 0 {
				avg = start/i + 1
			}
			left := b.Len() - i
			if buf != nil {
				bufs = append(bufs, buf)
			}
			buf = s.buffer(max(avg*left+avg*left/8, 4096))
			start = 0
		}
		buf = b.AppendRow(buf, i)
		out[i] = buf[start:len(buf):len(buf)]
	}
	if buf != nil {
		bufs = append(bufs, buf)
	}
	if n := b.Len(); n > 0 {
		total := 0
		for _, r := range out {
			total += len(r)
		}
		s.rowLen.Store(int64(total/n + 1))
	}
	return encoded{rows: out, bufs: bufs}
}

func (s *rowSink) emitter() {
	defer s.wg.Done()
	for job := range s.pending {
		if job.flushed != nil {
			close(job.flushed)
			continue
		}
		res := <-job.out
		if s.failed() != nil {
			continue // drain
		}
		if res.err != nil {
			s.fail(res.err)
			continue
		}
		for _, row := range res.rows {
			if err := s.emit(row); err != nil {
				s.fail(&sinkError{err})
				break
			}
		}
		s.recycle(res.bufs)
	}
}
