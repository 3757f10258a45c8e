package stoa

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/connector-host/connector-host/sdk"
	stoaemu "github.com/connector-host/connector-host/testkit/emulators/stoa"
)

// fetchRows fetches req and returns its rows.
func fetchRows(t *testing.T, c *Client, req FetchRequest) []json.RawMessage {
	t.Helper()
	var got collector
	if _, err := c.Fetch(context.Background(), req, got.emit); err != nil {
		t.Fatal(err)
	}
	return got.rows
}

// compareExpected checks fetched rows against what a file reads back as.
func compareExpected(t *testing.T, rows []json.RawMessage, exp *stoaemu.Expected) {
	t.Helper()
	compareRows(t, rows, exp.Columns, exp.Rows)
}

func TestExportFormats(t *testing.T) {
	t.Parallel()
	srv := startEmu(t, stoaemu.Options{})
	c := newClient(t, srv, restCreds, Options{BatchRows: 50}, nil)
	ctx := context.Background()
	ids := srv.Keys(0)[:4]
	for _, columns := range [][]string{nil, {"attrs", "id", "text", "amount", "events"}} {
		fetch := FetchRequest{OrderIDs: ids, Columns: columns}
		fetched := fetchRows(t, c, fetch)
		for _, format := range []string{FormatParquet, FormatArrow, FormatCSV, FormatNDJSON, ""} {
			dir := t.TempDir()
			res, err := c.Export(ctx, ExportRequest{FetchRequest: fetch, Format: format, Path: "out/data." + format}, dir)
			if err != nil {
				t.Fatalf("export %q: %v", format, err)
			}
			wantPath := filepath.Join(dir, "out", "data."+format)
			st, err := os.Stat(wantPath)
			if err != nil || res.Path != wantPath || res.Bytes != st.Size() || res.Rows != int64(len(fetched)) {
				t.Fatalf("export %q: result %+v, file %v %v", format, res, st, err)
			}
			if n := len(res.Schema); (columns == nil && n != stoaemu.Schema().NumFields()) || (columns != nil && n != len(columns)) {
				t.Errorf("schema %+v", res.Schema)
			}
			if entries, _ := os.ReadDir(filepath.Join(dir, "out")); len(entries) != 1 {
				t.Errorf("temporary files left: %v", entries)
			}
			b, _ := os.ReadFile(wantPath)
			switch format {
			case FormatParquet, "":
				// arrow-go reads the file back equal to the fetched rows.
				exp, err := stoaemu.ExpectedFromParquet(b, nil)
				if err != nil {
					t.Fatal(err)
				}
				compareExpected(t, fetched, exp)
			case FormatArrow:
				r, err := ipc.NewFileReader(bytes.NewReader(b), ipc.WithAllocator(memory.DefaultAllocator))
				if err != nil {
					t.Fatal(err)
				}
				var recs []arrow.RecordBatch
				for i := range r.NumRecords() {
					rec, err := r.RecordBatch(i)
					if err != nil {
						t.Fatal(err)
					}
					rec.Retain()
					recs = append(recs, rec)
				}
				tbl := array.NewTableFromRecords(r.Schema(), recs)
				exp, err := stoaemu.ExpectedFromTable(tbl, nil)
				if err != nil {
					t.Fatal(err)
				}
				compareExpected(t, fetched, exp)
				tbl.Release()
				r.Close()
			case FormatNDJSON:
				sc := bufio.NewScanner(bytes.NewReader(b))
				sc.Buffer(nil, 1<<20)
				i := 0
				for ; sc.Scan(); i++ {
					if i >= len(fetched) || sc.Text() != string(fetched[i]) {
						t.Fatalf("ndjson line %d differs from the fetched row", i)
					}
				}
				if i != len(fetched) {
					t.Errorf("ndjson lines %d, want %d", i, len(fetched))
				}
			case FormatCSV:
				recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
				if err != nil {
					t.Fatal(err)
				}
				if len(recs) != len(fetched)+1 {
					t.Fatalf("csv records %d, want %d", len(recs), len(fetched)+1)
				}
				for i, row := range fetched {
					want := csvCells(t, row, recs[0])
					if strings.Join(recs[i+1], "\x00") != strings.Join(want, "\x00") {
						t.Fatalf("csv row %d:\n got  %q\n want %q", i, recs[i+1], want)
					}
				}
			}
		}
	}
}

// csvCells derives the expected CSV cells of a fetched JSON row: "" for
// null, the text of strings, numbers and booleans as written, nested values
// as their JSON.
func csvCells(t *testing.T, row json.RawMessage, header []string) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(row, &m); err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(header))
	for i, h := range header {
		raw := m[h]
		switch {
		case string(raw) == "null":
		case raw[0] == '"':
			var s string
			_ = json.Unmarshal(raw, &s)
			out[i] = s
		default:
			out[i] = string(raw)
		}
	}
	return out
}

func TestExportPaths(t *testing.T) {
	t.Parallel()
	srv := startEmu(t, stoaemu.Options{})
	c := newClient(t, srv, restCreds, Options{}, nil)
	ctx := context.Background()
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	fetch := FetchRequest{OrderIDs: srv.Keys(0)[:1]}
	for _, tc := range []struct {
		path, msg string
	}{
		{"", "request.path: is required"},
		{"../escape.parquet", "request.path"},
		{"a/../../escape.parquet", "request.path"},
		{filepath.Join(outside, "x.parquet"), "request.path"},
		{"/etc/passwd", "request.path"},
		{".", "request.path"},
		{"dir/", "request.path"},
		{"link/x.parquet", "outside the data dir"},
	} {
		_, err := c.Export(ctx, ExportRequest{FetchRequest: fetch, Path: tc.path}, dir)
		wantCode(t, err, sdk.BadRequest, tc.msg)
	}
	_, err := c.Export(ctx, ExportRequest{FetchRequest: fetch, Path: "x", Format: "xlsx"}, dir)
	wantCode(t, err, sdk.BadRequest, "request.format")
	_, err = c.Export(ctx, ExportRequest{FetchRequest: FetchRequest{OrderIDs: []string{""}}, Path: "x"}, dir)
	wantCode(t, err, sdk.BadRequest, "request.order_ids[0]")
	if st := srv.Stats(); st.Logins+st.Signs+st.ObjectGets != 0 {
		t.Errorf("refused exports reached the network: %+v", st)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("files written outside the data dir: %v", entries)
	}

	// An absolute path inside the data dir is fine; the data dir is
	// created when missing; an existing file is replaced.
	fresh := filepath.Join(t.TempDir(), "new", "data")
	for range 2 {
		res, err := c.Export(ctx, ExportRequest{FetchRequest: fetch, Path: filepath.Join(fresh, "a.ndjson"), Format: "ndjson"}, fresh)
		if err != nil || res.Path != filepath.Join(fresh, "a.ndjson") || res.Rows != rowsOf(srv, 0) {
			t.Fatalf("absolute path inside: %+v %v", res, err)
		}
	}
}

func TestExportFailures(t *testing.T) {
	t.Parallel()
	srv := startEmu(t, stoaemu.Options{})
	c := newClient(t, srv, restCreds, Options{}, nil)
	ctx := context.Background()
	ids := srv.Keys(0)[:3]
	srv.InjectFault(ids[1], stoaemu.Fault{Status: 500})
	dir := t.TempDir()
	// Default: an error naming the object, and no file.
	_, err := c.Export(ctx, ExportRequest{FetchRequest: FetchRequest{OrderIDs: ids}, Path: "x.parquet"}, dir)
	wantCode(t, err, sdk.BadGateway, ids[1])
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files left after a failed export: %v", entries)
	}
	// allow_partial: the file holds the others, the result lists the failure.
	res, err := c.Export(ctx, ExportRequest{FetchRequest: FetchRequest{OrderIDs: ids, AllowPartial: true}, Path: "x.parquet"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) != 1 || res.Failures[0].OrderID != ids[1] || res.Rows != 2*rowsOf(srv, 0) {
		t.Errorf("result %+v", res)
	}
	b, _ := os.ReadFile(res.Path)
	exp, err := stoaemu.ExpectedFromParquet(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	fetched := fetchRows(t, c, FetchRequest{OrderIDs: []string{ids[0], ids[2]}})
	compareExpected(t, fetched, exp)
	// Every object failing is an error, not an empty file.
	srv.InjectFault("/objects/", stoaemu.Fault{Status: 500})
	_, err = c.Export(ctx, ExportRequest{FetchRequest: FetchRequest{OrderIDs: ids, AllowPartial: true}, Path: "y.parquet"}, dir)
	wantCode(t, err, sdk.BadGateway, "3 of 3 objects failed")
	if _, err := os.Stat(filepath.Join(dir, "y.parquet")); !os.IsNotExist(err) {
		t.Errorf("y.parquet exists after a failed export: %v", err)
	}
}
