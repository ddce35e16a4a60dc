package admin

import (
	"slices"
	"strings"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policy"
)

// maxModulesNamed bounds how many open modules ScopeProblem lists.
const maxModulesNamed = 12

// ScopeProblem says why a new scope could never work under pol, or ""
// when it can: it does not follow the scope syntax, names a module pol
// does not know (a typo like project:read for projects, or a module since
// removed), or one pol closes to API keys. The admin API (as the detail of
// scopes[i]) and the CLI (after --scope) refuse scopes with these words.
//
// Only scopes being given are judged: a key keeps the scopes it has when
// the policy changes, and they grant what the policy allows at each
// decision (a module removed or closed grants nothing).
func ScopeProblem(pol *policy.Policy, scope string) string {
	if err := keystore.ValidateScope(scope); err != nil {
		return `must be "*", "<module>:read", "<module>:write" or "<module>:*"`
	}
	if scope == keystore.ScopeAll {
		return ""
	}
	module, _, _ := strings.Cut(scope, ":") // ValidateScope: a module name, safe to repeat
	switch _, access, ok := pol.Access(module); {
	case !ok:
		return "no module " + module + " in the policy" + openModules(pol)
	case access != policy.AccessAllow:
		return "module " + module + " is closed to API keys by the policy" + openModules(pol)
	}
	return ""
}

// openModules names the modules of pol open to API keys, for an error.
func openModules(pol *policy.Policy) string {
	var open []string
	for _, m := range pol.Modules {
		if m.APIKeys == policy.AccessAllow {
			open = append(open, m.Name)
		}
	}
	switch {
	case len(open) == 0:
		return "; no module is open to API keys"
	case len(open) > maxModulesNamed:
		open = append(slices.Clip(open[:maxModulesNamed]), "…")
	}
	return "; modules open to API keys: " + strings.Join(open, ", ")
}
