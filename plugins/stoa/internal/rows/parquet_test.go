package rows

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	stoaemu "github.com/connector-host/connector-host/testkit/emulators/stoa"
)

// smallServer is an emulator (not started: only its objects are used) with
// small objects of several row groups.
func smallServer(rows, groupRows int) *stoaemu.Server {
	return stoaemu.New(stoaemu.Options{Products: []stoaemu.Product{{
		GroupName: "g", Name: "n", Workspace: "apps", OwnerID: "o", Objects: 2, RowsPerObject: rows, RowGroupRows: groupRows,
	}}})
}

// readAll decodes obj with projection columns and returns the JSON rows and
// the batch sizes.
func readAll(t *testing.T, obj *Object, columns []string, batchRows int) ([][]byte, []int) {
	t.Helper()
	p, err := obj.Project(columns)
	if err != nil {
		t.Fatalf("Project(%v): %v", columns, err)
	}
	enc, err := NewEncoder(p.Schema())
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]byte
	var sizes []int
	err = obj.Read(context.Background(), p, ReadOptions{BatchRows: batchRows}, func(rec arrow.RecordBatch) error {
		b, err := enc.Bind(rec)
		if err != nil {
			return err
		}
		sizes = append(sizes, b.Len())
		for i := range b.Len() {
			rows = append(rows, b.AppendRow(nil, i))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return rows, sizes
}

func TestReadCellByCell(t *testing.T) {
	t.Parallel()
	srv := smallServer(101, 17)
	key := srv.Keys(0)[1]
	b, err := srv.Object(key)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := Open(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if obj.NumRows() != 101 || obj.NumRowGroups() != 6 {
		t.Fatalf("rows %d groups %d", obj.NumRows(), obj.NumRowGroups())
	}
	for _, columns := range [][]string{nil, {"events", "id", "ts_us", "attrs", "big"}, {"point"}} {
		exp, err := srv.ExpectedRows(key, columns)
		if err != nil {
			t.Fatal(err)
		}
		rows, sizes := readAll(t, obj, columns, 5)
		if len(rows) != len(exp.Rows) {
			t.Fatalf("%v: %d rows, want %d", columns, len(rows), len(exp.Rows))
		}
		for i, row := range rows {
			if err := stoaemu.CompareRow(row, exp.Columns, exp.Rows[i]); err != nil {
				t.Fatalf("columns %v row %d: %v\n%s", columns, i, err, row)
			}
		}
		// Batches follow row groups (17 rows → 5,5,5,2 per group) and never
		// exceed the batch size.
		want := []int{}
		for g := 0; g < 101; g += 17 {
			n := min(17, 101-g)
			for ; n > 5; n -= 5 {
				want = append(want, 5)
			}
			want = append(want, n)
		}
		if !slices.Equal(sizes, want) {
			t.Errorf("batch sizes %v, want %v", sizes, want)
		}
	}
	// Every column type of the emulator appears, with nulls, in this object.
	all, _ := readAll(t, obj, nil, 0)
	nulls := map[string]bool{}
	for _, row := range all {
		var m map[string]any
		if err := json.Unmarshal(row, &m); err != nil {
			t.Fatal(err)
		}
		for k, v := range m {
			if v == nil {
				nulls[k] = true
			}
		}
	}
	for _, f := range stoaemu.Schema().Fields() {
		if f.Nullable && !nulls[f.Name] {
			t.Errorf("column %s has no null in 101 rows: the test data does not exercise nulls", f.Name)
		}
	}
}

func TestOpenCorrupt(t *testing.T) {
	t.Parallel()
	b, err := smallServer(20, 8).Object("1000000.snappy.parquet")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"empty":      nil,
		"garbage":    []byte("this is not a parquet file at all"),
		"half":       b[:len(b)/2],
		"no footer":  b[:len(b)-4],
		"magic only": []byte("PAR1PAR1"),
	} {
		if _, err := Open(bytes.NewReader(data)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Open error %v, want ErrCorrupt", name, err)
		}
	}
}

func TestProjectErrors(t *testing.T) {
	t.Parallel()
	b, _ := smallServer(3, 2).Object("1000000.snappy.parquet")
	obj, err := Open(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	_, err = obj.Project([]string{"id", "nope"})
	var unknown *UnknownColumnError
	if !errors.As(err, &unknown) || unknown.Index != 1 || unknown.Name != "nope" || len(unknown.Available) != stoaemu.Schema().NumFields() {
		t.Errorf("unknown column: %v", err)
	}
	if _, err := obj.Project([]string{"id", "flag", "id"}); err == nil || err.Error() != `columns[2]: "id" repeats columns[0]` {
		t.Errorf("repeated column: %v", err)
	}
	if _, err := obj.Project([]string{"point.x"}); !errors.As(err, &unknown) {
		t.Errorf("nested path is not a top-level column: %v", err)
	}
}

func TestReadStops(t *testing.T) {
	t.Parallel()
	b, _ := smallServer(50, 10).Object("1000000.snappy.parquet")
	obj, err := Open(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := obj.Project([]string{"id"})
	stop := errors.New("stop")
	calls := 0
	err = obj.Read(context.Background(), p, ReadOptions{}, func(arrow.RecordBatch) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("fn error: %v after %d calls", err, calls)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := obj.Read(ctx, p, ReadOptions{}, func(arrow.RecordBatch) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// FuzzRead feeds arbitrary bytes through Open, Project and Read and the JSON
// encoder: whatever the input, no panic, only ErrCorrupt errors, valid JSON.
func FuzzRead(f *testing.F) {
	b, err := smallServer(4, 3).Object("1000000.snappy.parquet")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add(b[len(b)/3:])
	mid := bytes.Clone(b)
	for i := 100; i < len(mid)-100; i += 97 {
		mid[i] ^= 0x5a
	}
	f.Add(mid)
	f.Add([]byte("PAR1\x00\x00\x00\x00PAR1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		obj, err := Open(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		p, err := obj.Project(nil)
		if err != nil {
			return
		}
		enc, err := NewEncoder(p.Schema())
		if err != nil {
			return
		}
		var buf []byte
		err = obj.Read(context.Background(), p, ReadOptions{BatchRows: 64}, func(rec arrow.RecordBatch) error {
			bt, err := enc.Bind(rec)
			if err != nil {
				return err
			}
			for i := range bt.Len() {
				buf = bt.AppendRow(buf[:0], i)
				if !json.Valid(buf) {
					t.Fatalf("invalid JSON row %q", buf)
				}
			}
			return nil
		})
		_ = err // corrupt data may fail to decode; it must not panic
	})
}

func TestStoredArrowSchema(t *testing.T) {
	t.Parallel()
	b, _ := smallServer(3, 2).Object("1000000.snappy.parquet")
	obj, err := Open(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	// A sound stored schema is used: Arrow-only details survive.
	sc := obj.Schema()
	text, _ := sc.FieldsByName("text")
	ts, _ := sc.FieldsByName("ts_us")
	if text[0].Type.ID() != arrow.LARGE_STRING || ts[0].Type.(*arrow.TimestampType).TimeZone != "Europe/Paris" {
		t.Errorf("stored schema not applied: text %s, ts_us %s", text[0].Type, ts[0].Type)
	}
	good := obj.pf.MetaData().KeyValueMetadata().FindValue(arrowSchemaKey)
	if good == nil || !storedSchemaSound(*good) {
		t.Fatal("the emulator's stored schema is judged unsound")
	}
	for name, v := range map[string]string{
		"not base64":     "!!!",
		"too short":      "AAAA",
		"length too big": "/////wAAAQA=",
	} {
		if storedSchemaSound(v) {
			t.Errorf("%s: judged sound", name)
		}
	}
	// Every single-byte change of a sound schema that the check lets
	// through is decoded by arrow-go without crashing the process (a panic
	// is recovered; an out-of-memory or stack overflow would kill the test).
	raw, _ := base64.StdEncoding.DecodeString(*good)
	passed := 0
	for i := range raw {
		for _, v := range []byte{0x00, 0xff, 0x7f, 0x40} {
			mut := bytes.Clone(raw)
			mut[i] = v
			if storedSchemaSound(base64.StdEncoding.EncodeToString(mut)) {
				passed++
				func() {
					defer func() { _ = recover() }()
					if r, err := ipc.NewReader(bytes.NewReader(mut)); err == nil {
						r.Release()
					}
				}()
			}
		}
	}
	if passed == 0 {
		t.Error("no mutation passed the check: it rejects everything")
	}
}
