package policy_test

import (
	"errors"
	"fmt"

	"github.com/keygate/keygate/policy"
)

func ExamplePolicy_Route() {
	p := policy.Example()
	for _, path := range []string{
		"/api/v1/projects/42?page=2",
		"/api/v1/projects//../users",
		"/api/v1/projects/%2e%2e/users",
	} {
		r, err := p.Route(path)
		switch {
		case errors.Is(err, policy.ErrInvalidPath):
			fmt.Printf("%s: 400 (%v)\n", path, err)
		case r.Restricted:
			fmt.Printf("%s: 403, module %s is closed to API keys\n", path, r.RestrictedModule)
		default:
			fmt.Printf("%s: module %q, the key's scopes decide\n", path, r.Module)
		}
	}
	// Output:
	// /api/v1/projects/42?page=2: module "projects", the key's scopes decide
	// /api/v1/projects//../users: 403, module users is closed to API keys
	// /api/v1/projects/%2e%2e/users: 400 (invalid path: encoded "." (%2E) at byte 17)
}

func ExampleCanonicalize() {
	c, err := policy.Canonicalize(`/API/v1/./projects;v=2//42\..\%7Eme?x=1`)
	fmt.Println(c, err)
	// Output: /api/v1/projects/~me <nil>
}

func ExampleParse() {
	_, err := policy.Parse("policy.yaml", []byte(`
modules:
  users:
    paths: [/api/v1/users]
    api_keys: maybe
`))
	fmt.Println(err)
	// Output: policy.yaml:5: modules.users.api_keys: must be "allow" or "deny", got "maybe"
}
