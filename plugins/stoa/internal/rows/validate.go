package rows

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// validateRecord checks decoded arrays before anything reads their values:
// arrow-go decodes damaged files without complaint into arrays whose
// offsets point past their values, and reading those panics. It runs
// array.Validate (buffer sizes, child lengths: constant time) and checks
// every offset and dictionary index (linear, but without
// array.ValidateFull's UTF-8 scan of every string, which the JSON encoder
// does not need: it replaces invalid UTF-8).
func validateRecord(rec arrow.RecordBatch) (err error) {
	defer recoverCorrupt(&err)
	for i, col := range rec.Columns() {
		if int64(col.Len()) < rec.NumRows() {
			return fmt.Errorf("column %d has %d values for %d rows", i, col.Len(), rec.NumRows())
		}
		if err := array.Validate(col); err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
		if err := checkArray(col); err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	return nil
}

// dataLen is the length of buffer i of arr (0 when absent).
func dataLen(arr arrow.Array, i int) int64 {
	bufs := arr.Data().Buffers()
	if i >= len(bufs) || bufs[i] == nil {
		return 0
	}
	return int64(bufs[i].Len())
}

// checkOffsets checks that offsets never decrease and stay inside a data
// buffer of n bytes.
func checkOffsets[T int32 | int64](offs []T, n int64) error {
	if len(offs) == 0 {
		return nil
	}
	prev := offs[0]
	if prev < 0 {
		return fmt.Errorf("negative offset %d", prev)
	}
	for _, o := range offs[1:] {
		if o < prev {
			return fmt.Errorf("offsets decrease (%d after %d)", o, prev)
		}
		prev = o
	}
	if int64(prev) > n {
		return fmt.Errorf("offset %d past the %d-byte data", prev, n)
	}
	return nil
}

// checkArray checks the offsets and indices of arr and its children.
func checkArray(arr arrow.Array) error {
	switch a := arr.(type) {
	case *array.String:
		return checkOffsets(a.ValueOffsets(), dataLen(a, 2))
	case *array.LargeString:
		return checkOffsets(a.ValueOffsets(), dataLen(a, 2))
	case *array.Binary:
		return checkOffsets(a.ValueOffsets(), dataLen(a, 2))
	case *array.LargeBinary:
		return checkOffsets(a.ValueOffsets(), dataLen(a, 2))
	case *array.StringView, *array.BinaryView:
		return array.ValidateFull(arr)
	case array.ListLike: // list, large list, list view, fixed-size list, map
		values := a.ListValues()
		n := int64(values.Len())
		for i := range a.Len() {
			if a.IsNull(i) {
				continue
			}
			start, end := a.ValueOffsets(i)
			if start < 0 || end < start || end > n {
				return fmt.Errorf("list %d spans [%d, %d) of %d values", i, start, end, n)
			}
		}
		return checkArray(values)
	case *array.Struct:
		for k := range a.NumField() {
			if err := checkArray(a.Field(k)); err != nil {
				return err
			}
		}
	case *array.Dictionary:
		n := a.Dictionary().Len()
		for i := range a.Len() {
			if a.IsValid(i) {
				if j := a.GetValueIndex(i); j < 0 || j >= n {
					return fmt.Errorf("dictionary index %d out of %d values", j, n)
				}
			}
		}
		return checkArray(a.Dictionary())
	case array.ExtensionArray:
		return checkArray(a.Storage())
	}
	return nil
}
