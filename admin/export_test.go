package admin

import (
	"context"

	"github.com/keygate/keygate/keystore"
)

// RoutePatterns lists the server's ServeMux patterns, for the test that
// keeps the OpenAPI document and the routes in step.
func RoutePatterns(s *Server) []string {
	var out []string
	for _, r := range s.routes() {
		out = append(out, r.pattern)
	}
	return out
}

// ListKeysScanning is ListKeys with a search by name that reads batch keys
// at a time and at most max for a page.
func ListKeysScanning(ctx context.Context, store *keystore.Store, req ListRequest, batch, max int) (Page, error) {
	return listKeys(ctx, store, req, nameScan{batch: batch, max: max})
}
