package rows

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// DefaultBatchRows is the number of rows decoded at a time when ReadOptions
// leave BatchRows at zero.
const DefaultBatchRows = 4096

// ErrCorrupt is wrapped by the errors of Open and Read when the bytes are not
// a readable Parquet file (truncated, damaged, or not Parquet at all).
var ErrCorrupt = errors.New("not a readable Parquet file")

// Object is an open Parquet file.
type Object struct {
	pf     *file.Reader
	fr     *pqarrow.FileReader
	schema *arrow.Schema
}

// Source is what Open reads from: *bytes.Reader, *os.File,
// *io.SectionReader.
type Source interface {
	io.ReaderAt
	io.Seeker
	io.Reader
}

// Open reads the footer and schema of the Parquet file in r. r stays owned by
// the caller. Errors wrap ErrCorrupt.
func Open(r Source) (obj *Object, err error) {
	defer recoverCorrupt(&err)
	props := parquet.NewReaderProperties(memory.DefaultAllocator)
	props.BufferedStreamEnabled = true // read pages through a small buffer, not whole column chunks
	props.BufferSize = 64 << 10
	pf, err := file.NewParquetReader(noCloser{r}, file.WithReadProps(props))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if err := checkChunks(pf, r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	dropUnsafeStoredSchema(pf.MetaData().KeyValueMetadata())
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: DefaultBatchRows}, memory.DefaultAllocator)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	schema, err := fr.Schema()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return &Object{pf: pf, fr: fr, schema: schema}, nil
}

// noCloser hides the caller's Close from file.Reader.
type noCloser struct{ Source }

// recoverCorrupt turns a panic inside arrow-go on malformed input into an
// ErrCorrupt error.
func recoverCorrupt(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: decoder failed: %v", ErrCorrupt, r)
	}
}

// Schema is the Arrow schema of the whole file.
func (o *Object) Schema() *arrow.Schema { return o.schema }

// NumRows is the number of rows in the file.
func (o *Object) NumRows() int64 { return o.pf.NumRows() }

// NumRowGroups is the number of row groups in the file.
func (o *Object) NumRowGroups() int { return o.pf.NumRowGroups() }

// UnknownColumnError reports a projected column the file does not have.
type UnknownColumnError struct {
	// Index is the position of the column in the projection.
	Index int
	// Name is the requested column.
	Name string
	// Available lists the file's columns.
	Available []string
}

func (e *UnknownColumnError) Error() string {
	return fmt.Sprintf("columns[%d]: unknown column %q (the data has %v)", e.Index, e.Name, e.Available)
}

// Projection selects top-level columns of an Object, in the requested order.
type Projection struct {
	leaves []int // parquet leaf column indices, grouped by requested column
	schema *arrow.Schema
}

// Schema is the Arrow schema of the projected rows.
func (p *Projection) Schema() *arrow.Schema { return p.schema }

// Project selects columns by top-level name; nil or empty selects every
// column. A name the file lacks gives an *UnknownColumnError, a repeated name
// an error naming it.
func (o *Object) Project(columns []string) (*Projection, error) {
	fields := o.fr.Manifest.Fields
	var idx []int
	if len(columns) == 0 {
		for i := range fields {
			idx = append(idx, i)
		}
	} else {
		byName := map[string]int{}
		for i, f := range fields {
			if _, dup := byName[f.Field.Name]; !dup {
				byName[f.Field.Name] = i
			}
		}
		seen := map[string]int{}
		for n, c := range columns {
			if prev, ok := seen[c]; ok {
				return nil, fmt.Errorf("columns[%d]: %q repeats columns[%d]", n, c, prev)
			}
			seen[c] = n
			i, ok := byName[c]
			if !ok {
				avail := make([]string, len(fields))
				for k, f := range fields {
					avail[k] = f.Field.Name
				}
				return nil, &UnknownColumnError{Index: n, Name: c, Available: avail}
			}
			idx = append(idx, i)
		}
	}
	p := &Projection{}
	out := make([]arrow.Field, 0, len(idx))
	for _, i := range idx {
		p.leaves = appendLeaves(p.leaves, &fields[i])
		out = append(out, *fields[i].Field)
	}
	md := o.schema.Metadata()
	p.schema = arrow.NewSchema(out, &md)
	return p, nil
}

func appendLeaves(dst []int, f *pqarrow.SchemaField) []int {
	if f.IsLeaf() {
		return append(dst, f.ColIndex)
	}
	for i := range f.Children {
		dst = appendLeaves(dst, &f.Children[i])
	}
	return dst
}

// ReadOptions tune Read.
type ReadOptions struct {
	// BatchRows bounds the rows decoded at a time; default DefaultBatchRows.
	BatchRows int
}

// Read decodes the projected columns row group by row group, in batches of
// at most BatchRows rows, checks their structure (see validateRecord), and
// calls fn with each batch in row order. The
// batch is released when fn returns; fn must Retain it to keep it. An error
// of fn stops the read and is returned as is; decoding errors wrap
// ErrCorrupt.
func (o *Object) Read(ctx context.Context, p *Projection, opts ReadOptions, fn func(arrow.RecordBatch) error) error {
	batch := int64(opts.BatchRows)
	if batch <= 0 {
		batch = DefaultBatchRows
	}
	o.fr.Props.BatchSize = batch
	for rg := range o.pf.NumRowGroups() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := o.readRowGroup(ctx, p, rg, fn); err != nil {
			return err
		}
	}
	return nil
}

func (o *Object) readRowGroup(ctx context.Context, p *Projection, rg int, fn func(arrow.RecordBatch) error) (err error) {
	if len(p.leaves) == 0 {
		// No columns (a file without columns): emit empty rows.
		n := o.pf.MetaData().RowGroup(rg).NumRows()
		if n == 0 {
			return nil
		}
		return fn(emptyBatch(p.schema, n))
	}
	var rr pqarrow.RecordReader
	func() {
		defer recoverCorrupt(&err)
		rr, err = o.fr.GetRecordReader(ctx, p.leaves, []int{rg})
	}()
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			err = fmt.Errorf("%w: row group %d: %w", ErrCorrupt, rg, err)
		}
		return err
	}
	defer rr.Release()
	for {
		rec, ok, nerr := next(rr)
		if nerr != nil {
			return fmt.Errorf("%w: row group %d: %w", ErrCorrupt, rg, nerr)
		}
		if !ok {
			return nil
		}
		if err := validateRecord(rec); err != nil {
			return fmt.Errorf("%w: row group %d: %w", ErrCorrupt, rg, err)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}

// next advances rr, converting decoder panics to errors.
func next(rr pqarrow.RecordReader) (rec arrow.RecordBatch, ok bool, err error) {
	defer recoverCorrupt(&err)
	if rr.Next() {
		return rr.RecordBatch(), true, nil
	}
	if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return nil, false, err
	}
	return nil, false, nil
}

// emptyBatch is a batch of n rows without columns.
func emptyBatch(schema *arrow.Schema, n int64) arrow.RecordBatch {
	return array.NewRecordBatch(schema, nil, n)
}

// checkChunks checks that every column chunk the footer describes lies
// inside the file. pqarrow reads the columns of a struct in goroutines of its
// own, where a panic over a bad offset cannot be recovered and would end the
// process.
func checkChunks(pf *file.Reader, r io.Seeker) error {
	size, err := r.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	md := pf.MetaData()
	ncols := md.Schema.NumColumns()
	for rg := range md.NumRowGroups() {
		rgm := md.RowGroup(rg)
		if rgm.NumRows() < 0 {
			return fmt.Errorf("row group %d: negative row count", rg)
		}
		if rgm.NumColumns() != ncols {
			return fmt.Errorf("row group %d has %d column chunks for %d columns", rg, rgm.NumColumns(), ncols)
		}
		for c := range ncols {
			cc, err := rgm.ColumnChunk(c)
			if err != nil {
				return fmt.Errorf("row group %d column %d: %w", rg, c, err)
			}
			start, n := cc.DataPageOffset(), cc.TotalCompressedSize()
			if cc.HasDictionaryPage() && cc.DictionaryPageOffset() > 0 && start > cc.DictionaryPageOffset() {
				start = cc.DictionaryPageOffset()
			}
			if start < 0 || n < 0 || start > size || n > size-start {
				return fmt.Errorf("row group %d column %d: chunk [%d, +%d) is outside the %d-byte file", rg, c, start, n, size)
			}
		}
	}
	return nil
}
