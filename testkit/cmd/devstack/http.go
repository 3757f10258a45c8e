package main

import (
	"net/http"
	"time"
)

var client = &http.Client{Timeout: 2 * time.Second}

// get reports whether url answers 200.
func get(url string) bool {
	resp, err := client.Get(url)
	if err != nil {
		return false
	}
	_ = resp.Body.Close() // only the status is read
	return resp.StatusCode == http.StatusOK
}
