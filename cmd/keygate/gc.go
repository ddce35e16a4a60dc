package main

import (
	"log/slog"
	"math"
	"runtime/debug"
	"strconv"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// defaultGOGC is serve's GC target when GOGC is not set. keygate's live
// heap is small (the cache) and its garbage is per-request (gRPC buffers
// and decoded requests), so the default of 100 collects far more often than
// it needs to; 400 trades some memory for CPU. A memory limit (below)
// keeps that trade from growing into an out-of-memory kill.
const defaultGOGC = 400

// gcSettings are the effective GC settings, for the start-up log.
type gcSettings struct {
	gogc        string // "400 (keygate default)" or "100 (GOGC)"
	memoryLimit string // "none", or bytes with their source
}

// tuneGC applies keygate's GC defaults where the environment sets none:
// GOGC=400, and GOMEMLIMIT at 90% of the container's (cgroup) memory limit,
// or of the machine's memory. GOGC and GOMEMLIMIT, when set, win.
func tuneGC(getenv func(string) string, logger *slog.Logger) gcSettings {
	var s gcSettings
	if v := getenv("GOGC"); v != "" {
		s.gogc = v + " (GOGC)"
	} else {
		debug.SetGCPercent(defaultGOGC)
		s.gogc = strconv.Itoa(defaultGOGC) + " (keygate default)"
	}
	limit, err := memlimit.Set(
		memlimit.WithRatio(0.9),
		memlimit.WithProvider(memlimit.ApplyFallback(memlimit.FromCgroup, memlimit.FromSystem)),
	)
	switch {
	case err != nil:
		logger.Warn("could not set a memory limit", "error", err)
		s.memoryLimit = "none"
	case limit == math.MaxInt64:
		s.memoryLimit = "none"
	case getenv("GOMEMLIMIT") != "":
		s.memoryLimit = strconv.FormatInt(limit, 10) + " (GOMEMLIMIT)"
	default:
		s.memoryLimit = strconv.FormatInt(limit, 10) + " (90% of the memory limit)"
	}
	return s
}
