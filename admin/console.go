package admin

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
)

// consoleFiles are the console: plain HTML, CSS and JavaScript modules,
// served as they are (no build step, nothing loaded from elsewhere).
//
//go:embed console
var consoleFiles embed.FS

//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the OpenAPI 3.1 document of the admin API, as served at
// /v1/openapi.json.
func OpenAPI() []byte { return append([]byte(nil), openAPIDocument...) }

func serveOpenAPI(w http.ResponseWriter, _ *http.Request, _ Principal) *problem {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPIDocument)
	return nil
}

// consoleTypes are the media types of the console's files, fixed here
// rather than read from the machine's mime.types.
var consoleTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

func serveConsole(w http.ResponseWriter, r *http.Request, _ Principal) *problem {
	name := r.PathValue("file")
	if name == "" {
		name = "index.html"
	}
	b, err := fs.ReadFile(consoleFiles, path.Join("console", path.Clean("/" + name)[1:]))
	if err != nil || name == "." {
		return newProblem(probNotFound, "There is nothing at this path.")
	}
	ct, ok := consoleTypes[path.Ext(name)]
	if !ok {
		return newProblem(probNotFound, "There is nothing at this path.")
	}
	w.Header().Set("Content-Type", ct)
	w.Write(b)
	return nil
}
