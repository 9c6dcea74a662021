package testlab

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain: the lab's servers (the hostile ones included) must stop every
// goroutine at cleanup, or the goleak checks of the packages using them
// would blame the code under test.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
