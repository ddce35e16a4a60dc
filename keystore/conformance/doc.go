// Package conformance is the store contract's test suite: every operation
// of keystore.Store on a keystore.Backend, its refusals, and how changes
// reach a watched cache, run against each backend by that backend's own
// tests, so that the two stores behave alike (dex's storage/conformance is
// the model).
//
//	func TestConformance(t *testing.T) {
//		conformance.RunTests(t, conformance.Harness{NewDatabase: newDatabase})
//	}
//
// A new store operation gets its tests here, in a test list RunTests
// runs. Watch, MustCreate and WaitUntil serve a backend's own tests of
// what only it does.
package conformance
