// Package failurelimit counts failed attempts per source address in a
// fixed amount of memory and says when a source is over its budget
// (Limit: COUNT/WINDOW). The decision path (authz, failed API keys) and the
// admin API (failed admin tokens) each keep a Counter of their own.
package failurelimit
