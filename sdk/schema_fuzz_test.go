package sdk

import (
	"encoding/json"
	"testing"
)

// FuzzQuickCheck: the quick check is a fast path in front of the JSON
// Schema validator, so it may only ever say "valid" where the validator
// does; and validateLazy must answer every document exactly as validate.
func FuzzQuickCheck(f *testing.F) {
	const id = `"abcdefghijABCDEFGHIJ_-"`
	for _, seed := range []string{
		`{"device_id":` + id + `,"messages":[{"interface":"a.b","path":"/x","value":1}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","timestamp":"2024-01-02T03:04:05.678Z"}],"limit":20,"ratio":-1.5e3,"mode":"b","flag":false,"tags":["abc","d"]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","values":{"k":[1,{"z":null}]}}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x"}],"limit":1.0}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x"}],"tags":["\u00e9\u00e9\u00e9"]}`,
		`{"device_id":"x","device_id":` + id + `,"messages":[{"interface":"a","path":"/x"}]}`,
		`{"device_\u0069d":` + id + `,"messages":[{"interface":"a","path":"/x"}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","timestamp":"2016-12-31T23:59:60Z"}]}`,
		`[]`, `null`, `{}`, `1e400`,
	} {
		f.Add([]byte(seed))
	}
	s := quickSchema(f)
	f.Fuzz(func(t *testing.T, doc []byte) {
		c := quickCursor{b: doc}
		quick := len(doc) > 0 && json.Valid(doc) && c.value(s.quick) && c.end()
		_, full := s.validate("request", json.RawMessage(doc))
		if quick && full != nil {
			t.Fatalf("quick check accepted %q, which the validator refuses: %v", doc, full)
		}
		_, lazy := s.validateLazy("request", json.RawMessage(doc))
		if (lazy == nil) != (full == nil) || (lazy != nil && lazy.Error() != full.Error()) {
			t.Fatalf("%q: validateLazy %v, validate %v", doc, lazy, full)
		}
	})
}
