package store

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Page is one page of the watches in id order.
type Page struct {
	Views []View
	// Next is the id to pass as after for the following page; "" when this
	// page is the last.
	Next string
	// Undecodable lists the ids on this page whose record (or newest
	// report) does not decode; they are left out of Views, so that one bad
	// record does not fail the page for everyone.
	Undecodable []string
}

// ListPage returns up to limit watches with their newest report, in id
// order, starting after the id after ("" from the first). Only the page is
// read: a list of 100,000 watches is never held at once.
func (db *DB) ListPage(after string, limit int) (Page, error) {
	if limit < 1 {
		return Page{}, fmt.Errorf("store: list page of %d watches", limit)
	}
	var p Page
	err := db.bolt.View(func(tx *bolt.Tx) error {
		p = Page{Views: make([]View, 0, min(limit, 1024))}
		c := tx.Bucket(bWatches).Cursor()
		k, _ := c.First()
		if after != "" {
			k, _ = c.Seek([]byte(after))
			if k != nil && bytes.Equal(k, []byte(after)) {
				k, _ = c.Next()
			}
		}
		var last []byte
		for n := 0; k != nil && n < limit; k, _ = c.Next() {
			last, n = k, n+1
			if n%releaseViewsEvery == 0 {
				// Each record and report read maps fifteen neighbouring
				// pages too (ReleaseMemory): a page of 1,000 would map
				// 200 MB of the file.
				_ = db.releaseMapping(tx)
			}
			v, err := view(tx, k)
			if err != nil { // a decode error: damage panics, and the guard reports it
				p.Undecodable = append(p.Undecodable, string(k))
				continue
			}
			p.Views = append(p.Views, v)
		}
		if k != nil {
			p.Next = string(last)
		}
		return db.releaseMapping(tx)
	})
	return p, err
}

// releaseViewsEvery paces the unmapping of the file while a page is read.
const releaseViewsEvery = 100
