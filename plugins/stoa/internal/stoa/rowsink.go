package stoa

import (
	"runtime"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/connector-host/connector-host/plugins/stoa/internal/rows"
	"github.com/connector-host/connector-host/sdk"
)

// rowSink turns record batches into JSON rows on several cores and hands
// them to emit in order. The decoder (the caller of write) runs ahead of
// the encoders by at most a few batches, so memory stays bounded: at most
// cap(pending) batches are in flight, each as Arrow arrays and then as
// JSON.
type rowSink struct {
	emit RowFunc

	jobs    chan *encodeJob // to the encoders
	pending chan *encodeJob // to the emitter, in order
	wg      sync.WaitGroup

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
	err  error
}

// newRowSink starts the encoders and the emitter.
func newRowSink(emit RowFunc) *rowSink {
	workers := min(max(runtime.GOMAXPROCS(0), 1), 4)
	s := &rowSink{
		emit:    emit,
		jobs:    make(chan *encodeJob, workers),
		pending: make(chan *encodeJob, workers+1),
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
	if _, final := err.(*sinkError); !final {
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
		job.out <- encodeBatch(job)
		job.rec.Release()
	}
}

// encodeBatch encodes every row of job's batch into one buffer cut into
// rows (the receiver owns each row).
func encodeBatch(job *encodeJob) encoded {
	b, err := job.enc.Bind(job.rec)
	if err != nil {
		return encoded{err: sdk.Errorf(sdk.InvalidResponse, "order id %s: %v", quoteShort(job.orderID), err)}
	}
	out := make([][]byte, b.Len())
	var buf []byte
	for i := range b.Len() {
		start := len(buf)
		if cap(buf)-start < 4096 {
			// Start a new array sized for the rows left; the rows already
			// cut keep the old one. Rows are never written after cutting.
			left := b.Len() - i
			avg := 1024
			if i > 0 {
				avg = start/i + 1
			}
			buf = make([]byte, 0, max(avg*left+avg, 4096))
			start = 0
		}
		buf = b.AppendRow(buf, i)
		out[i] = buf[start:len(buf):len(buf)]
	}
	return encoded{rows: out}
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
	}
}
