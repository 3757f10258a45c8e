package stoa

import (
	"context"
	"fmt"
	"net/url"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/connector-host/connector-host/sdk"
)

// MaxOrderIDs bounds the order ids of one sign or fetch request.
const MaxOrderIDs = 10000

// checkOrderIDs rejects an empty list, empty ids and repeats, naming the
// field as "request.order_ids[i]".
func checkOrderIDs(ids []string) error {
	if len(ids) == 0 {
		return sdk.Errorf(sdk.BadRequest, "request.order_ids: must list at least one order id")
	}
	if len(ids) > MaxOrderIDs {
		return sdk.Errorf(sdk.BadRequest, "request.order_ids: at most %d order ids, got %d", MaxOrderIDs, len(ids))
	}
	seen := make(map[string]int, len(ids))
	for i, id := range ids {
		if id == "" {
			return sdk.Errorf(sdk.BadRequest, "request.order_ids[%d]: must not be empty", i)
		}
		if j, dup := seen[id]; dup {
			return sdk.Errorf(sdk.BadRequest, "request.order_ids[%d]: %s repeats request.order_ids[%d]", i, quoteShort(id), j)
		}
		seen[id] = i
	}
	return nil
}

// Sign returns a presigned URL per order id, signing up to download_workers
// ids at once: GET {api}/v2/sign/?key=<id>. A missing or empty url is
// invalid_response; the first failure cancels the rest and names its id.
func (c *Client) Sign(ctx context.Context, ids []string) (map[string]string, error) {
	if err := checkOrderIDs(ids); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(ids))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.cfg.DownloadWorkers)
	for _, id := range ids {
		g.Go(func() error {
			u, err := c.signOne(gctx, id)
			if err != nil {
				return err
			}
			mu.Lock()
			out[id] = u
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// signOne signs one order id and checks the URL.
func (c *Client) signOne(ctx context.Context, id string) (string, error) {
	what := fmt.Sprintf("sign of order id %s", quoteShort(id))
	var out struct {
		URL *string `json:"url"`
	}
	if err := c.getJSON(ctx, "/v2/sign/", url.Values{"key": {id}}, what, &out); err != nil {
		return "", err
	}
	if out.URL == nil || *out.URL == "" {
		return "", sdk.Errorf(sdk.InvalidResponse, "%s: Stoa's answer has no url", what)
	}
	u, err := url.Parse(*out.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", sdk.Errorf(sdk.InvalidResponse, "%s: Stoa's url is not an absolute http(s) URL", what)
	}
	return *out.URL, nil
}
