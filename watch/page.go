package watch

// Lists come in pages: at 100,000 watches a whole list_watches answer was
// 75 MB and eight of them at once took the server to 4.5 GB. A page is at
// most MaxPageLimit watches; a cursor (opaque to callers, see validate.go)
// says where the next one starts. Pages read only what they show. A watch
// added, removed or changed between two pages may appear in neither or in
// both, as with any cursor over a live list.

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tlswatch/tlswatch/probe"
	"github.com/tlswatch/tlswatch/store"
)

// List returns one page of the watches (see Service).
func (e *Engine) List(_ context.Context, cursor string, limitN int) (WatchPage, error) {
	after, err := parseCursor(cursorList, cursor)
	if err != nil {
		return WatchPage{}, err
	}
	n, err := limit("limit", limitN, DefaultPageLimit, MaxPageLimit)
	if err != nil {
		return WatchPage{}, err
	}
	if err := e.open(); err != nil {
		return WatchPage{}, err
	}
	p, err := e.st.ListPage(after, n)
	if err != nil {
		return WatchPage{}, err
	}
	for _, id := range p.Undecodable {
		e.log.Warn("watch: a watch record does not decode; left out of the list (the next start sets it aside)", "id", id)
	}
	if e.cfg.NoScheduler {
		// No background pass without a scheduler (the CLI): the page's
		// own figures, a few reads per watch.
		ids := make([]string, len(p.Views))
		for i, v := range p.Views {
			ids[i] = v.Record.ID
		}
		e.refreshRecent(ids)
	}
	out := WatchPage{Watches: make([]Watch, len(p.Views))}
	stale := e.StaleSince()
	e.mu.Lock()
	for i, v := range p.Views {
		out.Watches[i] = toWatch(v.Record, v.LastReport)
		out.Watches[i].StaleSince = stale
		if en := e.entries[v.Record.ID]; en != nil {
			en.recent.apply(&out.Watches[i])
		}
	}
	e.mu.Unlock()
	if p.Next != "" {
		out.NextCursor = makeCursor(cursorList, p.Next)
	}
	return out, nil
}

// EachPage calls fn with every page of the watches in id order until the
// list ends, fn fails or ctx ends: how a caller that needs them all (the
// command line, /metrics) reads them without any one answer holding them
// all. limit is the page size (0: DefaultPageLimit).
func EachPage(ctx context.Context, svc Service, limit int, fn func([]Watch) error) error {
	cursor := ""
	for {
		p, err := svc.List(ctx, cursor, limit)
		if err != nil {
			return err
		}
		if err := fn(p.Watches); err != nil {
			return err
		}
		if p.NextCursor == "" {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		cursor = p.NextCursor
	}
}

// Expiring answers list_expiring (see Service).
func (e *Engine) Expiring(_ context.Context, withinDays *int, cursor string, limitN int) (ExpiringList, error) {
	days, err := ExpiringDays(withinDays)
	if err != nil {
		return ExpiringList{}, err
	}
	pos, err := parseCursor(cursorExpiring, cursor)
	if err != nil {
		return ExpiringList{}, err
	}
	after, err := parseExpiryKey(pos)
	if err != nil {
		return ExpiringList{}, err
	}
	n, err := limit("limit", limitN, DefaultPageLimit, MaxPageLimit)
	if err != nil {
		return ExpiringList{}, err
	}
	if err := e.open(); err != nil {
		return ExpiringList{}, err
	}
	ws, next, err := e.expiring(days, after, n)
	if err != nil {
		return ExpiringList{}, err
	}
	stale := e.StaleSince()
	for i := range ws {
		ws[i].StaleSince = stale
	}
	return ExpiringList{WithinDays: days, Watches: ws, NextCursor: next, StaleSince: stale}, nil
}

// expiryKey orders list_expiring: soonest not_after first, watches that
// never presented a certificate (down from the start) last, then by id.
type expiryKey struct {
	none     bool
	notAfter int64 // Unix nanoseconds
	id       string
}

func (a expiryKey) less(b expiryKey) bool {
	if a.none != b.none {
		return b.none
	}
	if a.notAfter != b.notAfter {
		return a.notAfter < b.notAfter
	}
	return a.id < b.id
}

// String is the key as a cursor position ("-" for none).
func (a expiryKey) String() string {
	if a.none {
		return "-/" + a.id
	}
	return strconv.FormatInt(a.notAfter, 10) + "/" + a.id
}

// parseExpiryKey reads a cursor position ("" is before the first).
func parseExpiryKey(pos string) (*expiryKey, error) {
	if pos == "" {
		return nil, nil
	}
	at, id, ok := strings.Cut(pos, "/")
	if !ok || id == "" {
		return nil, badCursor()
	}
	k := &expiryKey{id: id, none: at == "-"}
	if !k.none {
		n, err := strconv.ParseInt(at, 10, 64)
		if err != nil {
			return nil, badCursor()
		}
		k.notAfter = n
	}
	return k, nil
}

// cacheWindow: watches whose certificate expires within it, or that are
// not healthy, keep their last Report in memory (see entry.last).
const cacheWindow = 90 * 24 * time.Hour

func cacheable(r *store.Record, now time.Time) bool {
	return r.State == StateDown || r.LastStatus != string(probe.StatusOK) ||
		(!r.NotAfter.IsZero() && r.NotAfter.Before(now.Add(cacheWindow)))
}

// expiring: the ids come from the store's expiry index (no scan), their
// order from memory; only the page is built, its Reports from the cache,
// falling back to the store for what is not cached.
func (e *Engine) expiring(withinDays int, after *expiryKey, n int) ([]Watch, string, error) {
	now := e.clock.Now()
	// days_remaining (rounded down) <= withinDays  <=>  not_after < now + (withinDays+1) days.
	until := now.Add(time.Duration(withinDays+1) * 24 * time.Hour)
	ids, err := e.st.ExpiringIDs(until)
	if err != nil {
		return nil, "", err
	}
	keys := e.expiringKeys(ids, until)
	sort.Slice(keys, func(i, j int) bool { return keys[i].less(keys[j]) })
	start := 0
	if after != nil {
		start = sort.Search(len(keys), func(i int) bool { return after.less(keys[i]) })
	}
	end := min(start+n, len(keys))
	out := make([]Watch, 0, end-start)
	read := 0
	defer func() {
		if read > 0 {
			e.releaseMemory() // what the store reads mapped (see releaseEvery)
		}
	}()
	for _, k := range keys[start:end] {
		w, ok, fromStore, err := e.expiringWatch(k.id, now)
		if err != nil {
			return nil, "", err
		}
		if fromStore {
			if read++; read%100 == 0 {
				e.releaseMemory()
			}
		}
		if ok {
			out = append(out, w)
		}
	}
	next := ""
	if end < len(keys) {
		next = makeCursor(cursorExpiring, keys[end-1].String())
	}
	return out, next, nil
}

// expiringKeys are the sort keys of the watches of ids that memory agrees
// are expiring before until or down.
func (e *Engine) expiringKeys(ids []string, until time.Time) []expiryKey {
	keys := make([]expiryKey, 0, len(ids))
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		en := e.entries[id]
		if en == nil {
			continue
		}
		// The index is what is committed; memory may be up to one group
		// commit ahead (a renewal just seen), so re-check.
		r := &en.rec
		if r.State != StateDown && (r.NotAfter.IsZero() || !r.NotAfter.Before(until)) {
			continue
		}
		keys = append(keys, expiryKey{none: r.NotAfter.IsZero(), notAfter: r.NotAfter.UnixNano(), id: id})
	}
	return keys
}

// expiringWatch is one watch of a list_expiring page, from the cache when
// its Report is there (else fromStore); ok is false when it was removed
// meanwhile.
func (e *Engine) expiringWatch(id string, now time.Time) (w Watch, ok, fromStore bool, err error) {
	e.mu.Lock()
	en := e.entries[id]
	if en == nil {
		e.mu.Unlock()
		return Watch{}, false, false, nil
	}
	if en.last != nil && !en.stale {
		rep := *en.last // callers get their own Report value
		w := toWatch(en.rec, &rep)
		en.recent.apply(&w)
		e.mu.Unlock()
		return w, true, false, nil
	}
	e.mu.Unlock()
	w, ok, err = e.expiringFromStore(en, now)
	return w, ok, true, err
}

func (e *Engine) expiringFromStore(en *entry, now time.Time) (Watch, bool, error) {
	v, err := e.st.Get(en.rec.ID)
	if errors.Is(err, store.ErrNotFound) {
		return Watch{}, false, nil // removed meanwhile
	}
	if err != nil {
		return Watch{}, false, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	rec := en.rec
	if en.stale {
		rec = v.Record
	}
	// Cache only a Report that matches the record in memory (the store may
	// lag by one group commit).
	if v.LastReport != nil && v.LastReport.CheckedAt.Equal(rec.LastCheckedAt) && en.last == nil && !en.stale && cacheable(&rec, now) {
		c := *v.LastReport
		en.last = &c
	}
	w := toWatch(rec, v.LastReport)
	en.recent.apply(&w)
	return w, true, nil
}
