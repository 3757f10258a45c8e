package connector

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func batchJSON(n int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"device_id":"abcdefghijABCDEFGHIJ_-","messages":[`)
	for k := range n {
		if k > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"interface":"com.example.Bench","path":"/s%d/v","value":%d.5}`, k%16, k)
	}
	sb.WriteString(`]}`)
	return []byte(sb.String())
}

// BenchmarkDecodeBatch is the typed decode of a send_batch request of 1000
// messages, as the SDK does it.
func BenchmarkDecodeBatch(b *testing.B) {
	raw := batchJSON(1000)
	b.ReportAllocs()
	for b.Loop() {
		var req SendBatchRequest
		if err := json.Unmarshal(raw, &req); err != nil {
			b.Fatal(err)
		}
	}
}

// The hand-read send_batch request is exactly what encoding/json makes of
// it, and what it does not handle goes to encoding/json.
func TestBatchDecodeFast(t *testing.T) {
	t.Parallel()
	const id = `"abcdefghijABCDEFGHIJ_-"`
	fast := []string{
		string(batchJSON(3)),
		`{"device_id":` + id + `,"messages":[]}`,
		`{"messages":[{"interface":"a","path":"/x","value":-1.5e+3}],"device_id":` + id + `}`,
		" {\n\t\"device_id\" : " + id + " ,\r\n \"messages\" : [ { \"path\" : \"/x\" , \"interface\" : \"a\" , \"value\" : \"héllo\" , \"timestamp\" : \"2024-01-02T03:04:05.678+01:00\" } , {} ] } ",
		`{"device_id":"","messages":[{"interface":"","path":"","value":""}]}`,
		`{"device_id":` + id + `}`,
		`{}`,
	}
	slow := []string{
		`null`,
		`{"device_id":` + id + `,"messages":null}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","value":null}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","value":true}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","value":[1,2]}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","value":{"a":1}}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","values":{"a":1}}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a\u0062","path":"/x","value":"x"}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","value":"\u00e9"}]}`,
		`{"device_id":` + id + `,"messages":[{"Interface":"a","path":"/x","value":1}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","interface":"b","path":"/x"}]}`,
		`{"device_id":` + id + `,"device_id":"x","messages":[]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","timestamp":null}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","timestamp":"2024-01-02T03:04:60Z"}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x","timestamp":"yesterday"}]}`,
		`{"device_id":` + id + `,"messages":[{"interface":"a","path":"/x"}],"extra":1}`,
		`{"device_id":` + id + `,"messages":[1]}`,
		`{"device_id":1,"messages":[]}`,
		"{\"device_id\":\"\xff\",\"messages\":[]}",
	}
	for k, doc := range append(append([]string{}, fast...), slow...) {
		c := batchCursor{b: []byte(doc)}
		_, ok := c.request()
		ok = ok && c.end()
		if ok != (k < len(fast)) {
			t.Errorf("%s: fast path %v", doc, ok)
		}
		var got SendBatchRequest
		gotErr := json.Unmarshal([]byte(doc), &got)
		var want sendBatchRequestJSON
		wantErr := json.Unmarshal([]byte(doc), &want)
		if fmt.Sprint(gotErr) != strings.ReplaceAll(fmt.Sprint(wantErr), "sendBatchRequestJSON.", "SendBatchRequest.") {
			t.Errorf("%s: error %v, encoding/json %v", doc, gotErr, wantErr)
		}
		if !reflect.DeepEqual(got, SendBatchRequest(want)) {
			t.Errorf("%s:\n got %#v\nwant %#v", doc, got, SendBatchRequest(want))
		}
	}
	// A type error names the struct as it would without UnmarshalJSON.
	var r SendBatchRequest
	if err := json.Unmarshal([]byte(`{"device_id":1}`), &r); err == nil || !strings.Contains(err.Error(), "Go struct field SendBatchRequest.device_id of type string") {
		t.Errorf("type error: %v", err)
	}
	// A request decoded into a non-empty value merges as encoding/json does.
	got := SendBatchRequest{DeviceID: "old"}
	want := sendBatchRequestJSON{DeviceID: "old"}
	doc := []byte(`{"messages":[{"interface":"a","path":"/x","value":1}]}`)
	if err := json.Unmarshal(doc, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(doc, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, SendBatchRequest(want)) {
		t.Fatalf("merge: %#v, want %#v", got, want)
	}
}

// BenchmarkDecodeBatchJSON is BenchmarkDecodeBatch with encoding/json only.
func BenchmarkDecodeBatchJSON(b *testing.B) {
	raw := batchJSON(1000)
	b.ReportAllocs()
	for b.Loop() {
		var req sendBatchRequestJSON
		if err := json.Unmarshal(raw, &req); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzBatchDecode: SendBatchRequest decodes every document as encoding/json
// does (same value, same error).
func FuzzBatchDecode(f *testing.F) {
	f.Add(batchJSON(2))
	f.Add([]byte(`{"device_id":"x","messages":[{"path":"/x","interface":"a","value":"s","timestamp":"2024-01-02T03:04:05Z"},{}]}`))
	f.Add([]byte(`{"device_id":"x","messages":[{"interface":"a","value":null,"values":{"a":1}}]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		var got SendBatchRequest
		gotErr := json.Unmarshal(doc, &got)
		var want sendBatchRequestJSON
		wantErr := json.Unmarshal(doc, &want)
		if fmt.Sprint(gotErr) != strings.ReplaceAll(fmt.Sprint(wantErr), "sendBatchRequestJSON.", "SendBatchRequest.") {
			t.Fatalf("%q: error %v, encoding/json %v", doc, gotErr, wantErr)
		}
		if !reflect.DeepEqual(got, SendBatchRequest(want)) {
			t.Fatalf("%q:\n got %#v\nwant %#v", doc, got, SendBatchRequest(want))
		}
	})
}
