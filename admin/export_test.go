package admin

// RoutePatterns lists the server's ServeMux patterns, for the test that
// keeps the OpenAPI document and the routes in step.
func RoutePatterns(s *Server) []string {
	var out []string
	for _, r := range s.routes() {
		out = append(out, r.pattern)
	}
	return out
}
