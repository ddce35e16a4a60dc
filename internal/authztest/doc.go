// Package authztest holds what the tests of the decision and of its
// transports share: an in-memory key lookup (the one seam where those
// tests use a fake; the store and the cache have real-database tests), a
// world of keys of every kind, and the decision table as transport-neutral
// cases that each transport's tests replay through their own wire format.
package authztest
