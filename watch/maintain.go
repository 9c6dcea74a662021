package watch

import (
	"context"
	"fmt"

	"github.com/tlswatch/tlswatch/store"
)

// The database's own upkeep, answered by the engine of the process that
// owns the file (a follower's call is forwarded to it, like any other):
// what the file holds, and an online compaction.

type dbMaintainer interface {
	Usage() (store.Usage, error)
	Compact() (store.CompactResult, error)
}

// DatabaseUsage says what the database holds and what each part costs
// (tlswatch db stats).
func (e *Engine) DatabaseUsage(context.Context) (store.Usage, error) {
	m, err := e.maintainer("read the database's usage")
	if err != nil {
		return store.Usage{}, err
	}
	return m.Usage()
}

// CompactDatabase gives back the space that pruned history left as free
// pages: the store copies the file and swaps the copy in while every call
// waits (tlswatch db compact).
func (e *Engine) CompactDatabase(context.Context) (store.CompactResult, error) {
	m, err := e.maintainer("compact the database")
	if err != nil {
		return store.CompactResult{}, err
	}
	res, err := m.Compact()
	if err == nil {
		e.log.Info("watch: database compacted", "bytes_before", res.Before, "bytes_after", res.After)
	}
	return res, err
}

func (e *Engine) maintainer(what string) (dbMaintainer, error) {
	if err := e.open(); err != nil {
		return nil, err
	}
	m, ok := e.st.(dbMaintainer)
	if !ok {
		return nil, fmt.Errorf("watch: cannot %s: the store is not a database file", what)
	}
	return m, nil
}
