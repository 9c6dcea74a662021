package alert

import (
	"testing"

	"go.uber.org/goleak"
)

// Goroutines this package starts (delivery loops, probes, notification
// fan-out) must all have stopped when the tests end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
