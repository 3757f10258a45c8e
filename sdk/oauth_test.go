package sdk

import (
	"strings"
	"testing"
)

func TestCheckURLTemplate(t *testing.T) {
	t.Parallel()
	ok := []string{
		"https://{subdomain}.example.com/oauth/token",
		"https://example.com/{tenant}/token",
		"http://127.0.0.1:{port}/oauth/token",
		"http://localhost/token",
		"http://[::1]:8080/token",
	}
	for _, u := range ok {
		if err := checkURLTemplate("oauth.token_url", u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	bad := map[string]string{
		"":                               "is required",
		"example.com/token":              "not an absolute",
		"ftp://example.com/token":        "not an absolute",
		"https://user:pw@example.com/t":  "userinfo",
		"http://example.com/token":       "must use https",
		"http://{sub}.example.com/token": "must use https",
	}
	for u, want := range bad {
		err := checkURLTemplate("oauth.token_url", u)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "oauth.token_url") {
			t.Errorf("%q: err = %v, want %q", u, err, want)
		}
	}
}
