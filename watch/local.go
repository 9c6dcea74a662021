package watch

import (
	"context"
	"errors"

	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/tlswatch/tlswatch/probe"
)

// local is the owner's backend: calls go straight to the engine.
type local struct{ e *engine }

// handover maps "the database was closed under us" (the owner is shutting
// down while the call ran) to a retryable transport error.
func handover(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return errEngineClosed
	}
	return err
}

func (l local) add(ctx context.Context, s Spec) (Watch, error) {
	w, err := l.e.add(ctx, s)
	return w, handover(err)
}

func (l local) remove(ctx context.Context, id, target string) (Watch, error) {
	w, err := l.e.remove(ctx, id, target)
	return w, handover(err)
}

func (l local) get(_ context.Context, id string) (Watch, error) {
	w, err := l.e.get(id)
	return w, handover(err)
}

func (l local) list(context.Context) ([]Watch, error) {
	ws, err := l.e.list()
	return ws, handover(err)
}

func (l local) expiring(_ context.Context, days int) ([]Watch, error) {
	ws, err := l.e.expiring(days)
	return ws, handover(err)
}

func (l local) history(_ context.Context, id string, limit int) ([]probe.Report, error) {
	rs, err := l.e.history(id, limit)
	return rs, handover(err)
}
