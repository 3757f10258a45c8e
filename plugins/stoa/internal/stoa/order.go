package stoa

import (
	"context"
	"fmt"
	"net/url"
	"strconv"

	"github.com/connector-host/connector-host/sdk"
)

// Order defaults and bounds (the Python client's checks).
const (
	DefaultVersion = "1.0"
	DefaultLimit   = 20
	MaxLimit       = 20
)

// OrderRequest selects the objects of a data product.
type OrderRequest struct {
	// ProductGroupName is the product's group.
	ProductGroupName string `json:"product_group_name,omitempty"`
	// ProductName is the product.
	ProductName string `json:"product_name,omitempty"`
	// Workspace is "apps" or "cart".
	Workspace string `json:"workspace,omitempty" jsonschema:"enum=apps,enum=cart"`
	// OwnerID is the owner of the product.
	OwnerID string `json:"owner_id,omitempty"`
	// Version of the product; default "1.0".
	Version string `json:"version,omitempty" jsonschema:"default=1.0"`
	// Offset is the number of objects to skip; default 0.
	Offset *int `json:"offset,omitempty" jsonschema:"minimum=0,default=0"`
	// Limit is the number of objects to return, 1 to 20; default 20.
	Limit *int `json:"limit,omitempty" jsonschema:"minimum=1,maximum=20,default=20"`
	// Ascending orders the objects oldest first; default false (newest
	// first).
	Ascending bool `json:"ascending,omitempty"`
}

// Normalized returns r with the defaults applied, or a bad_request error
// naming the first invalid field ("request.<field>").
func (r OrderRequest) Normalized() (OrderRequest, error) {
	for _, f := range []struct{ name, value string }{
		{"product_group_name", r.ProductGroupName},
		{"product_name", r.ProductName},
		{"workspace", r.Workspace},
		{"owner_id", r.OwnerID},
	} {
		if f.value == "" {
			return r, sdk.Errorf(sdk.BadRequest, "request.%s: is required", f.name)
		}
	}
	if r.Workspace != "apps" && r.Workspace != "cart" {
		return r, sdk.Errorf(sdk.BadRequest, "request.workspace: must be \"apps\" or \"cart\", got %q", r.Workspace)
	}
	if r.Version == "" {
		r.Version = DefaultVersion
	}
	offset, limit := 0, DefaultLimit
	if r.Offset != nil {
		offset = *r.Offset
	}
	if r.Limit != nil {
		limit = *r.Limit
	}
	if offset < 0 {
		return r, sdk.Errorf(sdk.BadRequest, "request.offset: must be 0 or more, got %d", offset)
	}
	if limit < 1 || limit > MaxLimit {
		return r, sdk.Errorf(sdk.BadRequest, "request.limit: must be between 1 and %d, got %d", MaxLimit, limit)
	}
	r.Offset, r.Limit = &offset, &limit
	return r, nil
}

// query is the order query string, in the Python client's encoding
// (ascending as "True"/"False"). r must be normalized.
func (r OrderRequest) query() url.Values {
	asc := "False"
	if r.Ascending {
		asc = "True"
	}
	return url.Values{
		"product_group_name": {r.ProductGroupName},
		"product_name":       {r.ProductName},
		"workspace":          {r.Workspace},
		"owner_id":           {r.OwnerID},
		"version":            {r.Version},
		"offset":             {strconv.Itoa(*r.Offset)},
		"limit":              {strconv.Itoa(*r.Limit)},
		"ascending":          {asc},
	}
}

// Order returns the order ids (object keys) of the page r selects:
// GET {api}/v2/order/. An empty answer is not_found.
func (c *Client) Order(ctx context.Context, r OrderRequest) ([]string, error) {
	r, err := r.Normalized()
	if err != nil {
		return nil, err
	}
	var ids []string
	if err := c.getJSON(ctx, "/v2/order/", r.query(), "order", &ids); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, sdk.Errorf(sdk.NotFound, "order: Stoa has no objects for product_group_name=%q product_name=%q workspace=%q owner_id=%q version=%q at offset %d",
			r.ProductGroupName, r.ProductName, r.Workspace, r.OwnerID, r.Version, *r.Offset)
	}
	seen := make(map[string]bool, len(ids))
	for i, id := range ids {
		if id == "" {
			return nil, sdk.Errorf(sdk.InvalidResponse, "order: Stoa's answer has an empty order id at index %d", i)
		}
		if seen[id] {
			return nil, sdk.Errorf(sdk.InvalidResponse, "order: Stoa's answer lists order id %q twice", id)
		}
		seen[id] = true
	}
	return ids, nil
}

// NextPageToken is the page token of the order page after r (normalized)
// when it returned n ids: "" when the page was not full (no more objects).
func NextPageToken(r OrderRequest, n int) string {
	if r.Offset == nil || r.Limit == nil || n < *r.Limit {
		return ""
	}
	return strconv.Itoa(*r.Offset + *r.Limit)
}

// maxOffset bounds offsets accepted from page tokens.
const maxOffset = 1 << 30

// OffsetFromPageToken reads a page token of NextPageToken: the offset of the
// next page. Anything else is invalid_page_token.
func OffsetFromPageToken(token string) (int, error) {
	n, err := strconv.Atoi(token)
	if err != nil || n < 0 || n > maxOffset || strconv.Itoa(n) != token {
		return 0, sdk.Errorf(sdk.InvalidPageToken, "page.token: %s is not a page token of this connector", quoteShort(token))
	}
	return n, nil
}

// quoteShort quotes s, clipped for error messages.
func quoteShort(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%q…", s[:40])
	}
	return fmt.Sprintf("%q", s)
}
