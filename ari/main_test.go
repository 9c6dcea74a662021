package ari

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/tlswatch/tlswatch/internal/pebblelab"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction(pebblelab.VAWorker))
}
