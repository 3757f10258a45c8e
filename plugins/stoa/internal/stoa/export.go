package stoa

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/connector-host/connector-host/plugins/stoa/internal/rows"
	"github.com/connector-host/connector-host/sdk"
)

// Export formats.
const (
	FormatParquet = "parquet"
	FormatArrow   = "arrow"
	FormatCSV     = "csv"
	FormatNDJSON  = "ndjson"
)

// ExportRequest is a fetch whose rows go to one file under the data dir.
type ExportRequest struct {
	FetchRequest
	// Format of the file: "parquet" (default), "arrow" (Arrow IPC file, as
	// read by pyarrow.ipc/polars/DuckDB), "csv" (nested values as JSON) or
	// "ndjson" (the rows of fetch).
	Format string `json:"format,omitempty" jsonschema:"enum=parquet,enum=arrow,enum=csv,enum=ndjson,default=parquet"`
	// Path of the file, relative to the plugin's data dir (an absolute path
	// must lie inside it). Missing directories are created; an existing
	// file is replaced.
	Path string `json:"path"`
}

// ExportResult describes the written file.
type ExportResult struct {
	// Path is the absolute path of the file.
	Path string `json:"path"`
	// Rows is the number of rows written.
	Rows int64 `json:"rows"`
	// Bytes is the size of the file.
	Bytes int64 `json:"bytes"`
	// Schema describes the columns.
	Schema []Column `json:"schema"`
	// Failures lists the objects skipped under allow_partial.
	Failures []Failure `json:"failures,omitempty"`
	// NextPageToken continues the order after this page.
	NextPageToken string `json:"next_page_token,omitempty"`
}

// parquetRowGroupRows is the row-group length of exported Parquet files.
const parquetRowGroupRows = 128 * 1024

// Export fetches the rows req selects (see Fetch) and writes them, merged,
// to req.Path under dataDir in req.Format. The file appears only when
// complete (it is written to a temporary name and renamed). Paths outside
// dataDir, also through symbolic links, are refused with bad_request.
func (c *Client) Export(ctx context.Context, req ExportRequest, dataDir string) (*ExportResult, error) {
	format := req.Format
	if format == "" {
		format = FormatParquet
	}
	switch format {
	case FormatParquet, FormatArrow, FormatCSV, FormatNDJSON:
	default:
		return nil, sdk.Errorf(sdk.BadRequest, "request.format: must be one of parquet, arrow, csv, ndjson; got %s", quoteShort(req.Format))
	}
	rel, err := localPath(req.Path, dataDir)
	if err != nil {
		return nil, err
	}
	if _, err := checkFetch(req.FetchRequest); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, sdk.Errorf(sdk.InternalError, "export: creating the data dir: %v", err)
	}
	root, err := os.OpenRoot(dataDir)
	if err != nil {
		return nil, sdk.Errorf(sdk.InternalError, "export: opening the data dir: %v", err)
	}
	defer func() { _ = root.Close() }()
	if dir := filepath.Dir(rel); dir != "." {
		if err := root.MkdirAll(dir, 0o700); err != nil {
			return nil, pathError(err)
		}
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := rel + ".tmp-" + hex.EncodeToString(rnd[:])
	f, err := root.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, pathError(err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = f.Close()
			_ = root.Remove(tmp)
		}
	}()

	// The writers must not close f (the Parquet writer closes an
	// io.Closer): hide its Close.
	fs := &fileSink{format: format, w: struct{ io.Writer }{f}}
	res, err := c.run(ctx, req.FetchRequest, fs, true)
	if err == nil && fs.schema == nil {
		err = sdk.Errorf(sdk.InvalidResponse, "export: no object could be read")
	}
	if err == nil {
		err = fs.close()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		var se *sdk.Error
		if !errors.As(err, &se) {
			err = sdk.Errorf(sdk.InternalError, "export: writing %s: %v", quoteShort(req.Path), err)
		}
		return nil, err
	}
	if err := root.Rename(tmp, rel); err != nil {
		return nil, pathError(err)
	}
	committed = true
	st, err := root.Stat(rel)
	if err != nil {
		return nil, sdk.Errorf(sdk.InternalError, "export: %v", err)
	}
	abs, err := filepath.Abs(filepath.Join(dataDir, rel))
	if err != nil {
		abs = filepath.Join(dataDir, rel)
	}
	return &ExportResult{
		Path: abs, Rows: res.Rows, Bytes: st.Size(), Schema: columnsOf(fs.schema),
		Failures: res.Failures, NextPageToken: res.NextPageToken,
	}, nil
}

// localPath turns path into a path relative to dataDir, refusing anything
// that leaves it.
func localPath(path, dataDir string) (string, error) {
	if path == "" {
		return "", sdk.Errorf(sdk.BadRequest, "request.path: is required")
	}
	rel := path
	if filepath.IsAbs(path) {
		absDir, err := filepath.Abs(dataDir)
		if err != nil {
			return "", sdk.Errorf(sdk.InternalError, "export: resolving the data dir: %v", err)
		}
		if rel, err = filepath.Rel(absDir, filepath.Clean(path)); err != nil {
			return "", sdk.Errorf(sdk.BadRequest, "request.path: %s is outside the data dir", quoteShort(path))
		}
	}
	rel = filepath.Clean(rel)
	if !filepath.IsLocal(rel) || rel == "." || strings.HasSuffix(path, string(filepath.Separator)) {
		return "", sdk.Errorf(sdk.BadRequest, "request.path: %s is not a file path inside the data dir", quoteShort(path))
	}
	return rel, nil
}

// pathError maps a failure of an os.Root operation.
func pathError(err error) error {
	if strings.Contains(err.Error(), "escapes") {
		return sdk.Errorf(sdk.BadRequest, "request.path: leads outside the data dir (through a symbolic link)")
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return sdk.Errorf(sdk.BadRequest, "request.path: %s: %v", quoteShort(pe.Path), pe.Err)
	}
	return sdk.Errorf(sdk.InternalError, "export: %v", err)
}

// fileSink writes batches to an export file.
type fileSink struct {
	format string
	w      io.Writer
	schema *arrow.Schema

	pq    *pqarrow.FileWriter
	ipc   *ipc.FileWriter
	buf   *bufio.Writer
	csv   *csv.Writer
	enc   *rows.Encoder
	cells []string
	line  []byte
}

func (s *fileSink) begin(schema *arrow.Schema) error {
	s.schema = schema
	var err error
	switch s.format {
	case FormatParquet:
		props := parquet.NewWriterProperties(
			parquet.WithCompression(compress.Codecs.Snappy),
			parquet.WithMaxRowGroupLength(parquetRowGroupRows),
			parquet.WithAllocator(memory.DefaultAllocator),
		)
		s.pq, err = pqarrow.NewFileWriter(schema, s.w, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	case FormatArrow:
		s.ipc, err = ipc.NewFileWriter(s.w, ipc.WithSchema(schema), ipc.WithAllocator(memory.DefaultAllocator))
	case FormatCSV:
		s.enc, err = rows.NewEncoder(schema)
		s.buf = bufio.NewWriterSize(s.w, 256<<10)
		s.csv = csv.NewWriter(s.buf)
		if err == nil {
			names := make([]string, schema.NumFields())
			for i, f := range schema.Fields() {
				names[i] = f.Name
			}
			err = s.csv.Write(names)
		}
	case FormatNDJSON:
		s.enc, err = rows.NewEncoder(schema)
		s.buf = bufio.NewWriterSize(s.w, 256<<10)
	}
	if err != nil {
		return sdk.Errorf(sdk.InvalidResponse, "export: cannot write this data as %s: %v", s.format, err)
	}
	return nil
}

func (s *fileSink) write(orderID string, rec arrow.RecordBatch) error {
	// Batches of every object are re-labelled with the first object's
	// schema (run checked that the types are the same).
	rec = array.NewRecordBatch(s.schema, rec.Columns(), rec.NumRows())
	defer rec.Release()
	var err error
	switch s.format {
	case FormatParquet:
		if err = s.pq.WriteBuffered(rec); err == nil && s.pq.RowGroupTotalBytesWritten() > 64<<20 {
			err = s.pq.NewBufferedRowGroupChecked()
		}
	case FormatArrow:
		err = s.ipc.Write(rec)
	case FormatCSV:
		var b *rows.Batch
		if b, err = s.enc.Bind(rec); err != nil {
			break
		}
		for i := range b.Len() {
			s.cells = s.cells[:0]
			for col := range s.schema.NumFields() {
				s.line = b.AppendText(s.line[:0], col, i)
				s.cells = append(s.cells, string(s.line))
			}
			if err = s.csv.Write(s.cells); err != nil {
				break
			}
		}
	case FormatNDJSON:
		var b *rows.Batch
		if b, err = s.enc.Bind(rec); err != nil {
			break
		}
		for i := range b.Len() {
			s.line = append(b.AppendRow(s.line[:0], i), '\n')
			if _, err = s.buf.Write(s.line); err != nil {
				break
			}
		}
	}
	if err != nil {
		return &sinkError{fmt.Errorf("export: writing the rows of order id %s: %w", quoteShort(orderID), err)}
	}
	return nil
}

func (s *fileSink) flush() error { return nil }

// close finishes the file format (footers, buffers).
func (s *fileSink) close() error {
	switch {
	case s.pq != nil:
		return s.pq.Close()
	case s.ipc != nil:
		return s.ipc.Close()
	case s.csv != nil:
		s.csv.Flush()
		if err := s.csv.Error(); err != nil {
			return err
		}
		return s.buf.Flush()
	case s.buf != nil:
		return s.buf.Flush()
	}
	return nil
}
