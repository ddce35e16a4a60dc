package postgres

// Unfenced makes b answer lookups from any usable standby, however far
// it has replayed: keygate without the fences, for tests that show what
// they prevent.
func Unfenced(b *Backend) { b.unfenced = true }

// Fenced is the number of digests b fences one by one.
func Fenced(b *Backend) int { return b.fences.len() }
