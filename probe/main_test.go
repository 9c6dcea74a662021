package probe

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/tlswatch/tlswatch/internal/pebblelab"
)

// TestMain fails the package's tests when a goroutine outlives them (a
// probe, server or fetch that does not stop is a leak in a long-running
// server).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction(pebblelab.VAWorker))
}
