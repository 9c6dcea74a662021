package store

// bbolt reads the freelist page while it opens a file, before any
// transaction exists, and a panic there cannot be contained cleanly: the
// half-opened handle's memory map is never unmapped, and a mapping keeps the
// file's flock held until the process exits. So before bbolt sees a file,
// precheck reads its meta pages and its freelist with plain reads and
// refuses a file that is shorter than its meta page says or whose freelist
// bbolt would choke on. This follows bbolt's on-disk format (version 2):
//
//	page header  id u64 | flags u16 | count u16 | overflow u32   (16 bytes)
//	meta         magic u32 | version u32 | page size u32 | flags u32 |
//	             root pgid u64 | root sequence u64 | freelist pgid u64 |
//	             high-water pgid u64 | txid u64 | checksum u64 (FNV-64a
//	             of everything before it)
//
// in the machine's byte order, as bbolt writes it. A file whose meta pages
// do not parse is left to bbolt, which says so without reading further.

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"os"
	"sort"
)

const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	pageHeaderSize   = 16
	metaSize         = 64
	freelistPageFlag = 0x10
	noFreelist       = ^uint64(0)
	// maxFreelistBytes bounds what precheck reads of a freelist (a count
	// in a damaged header could claim terabytes).
	maxFreelistBytes = 256 << 20
)

type metaPage struct {
	pageSize                  uint64
	freelist, highWater, txid uint64
}

// precheck returns a *DamageError for a file bbolt would fault or panic on
// while opening it, nil otherwise.
func precheck(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // bbolt reports it
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	m, ok := readMeta(f)
	if !ok {
		return nil
	}
	damaged := func(format string, a ...any) error {
		return &DamageError{Path: path, Op: "open", Detail: fmt.Sprintf(format, a...)}
	}
	if need := m.highWater * m.pageSize; uint64(fi.Size()) < need {
		return damaged("the file is %d bytes, its meta page says %d: truncated", fi.Size(), need)
	}
	if m.freelist == noFreelist {
		return nil
	}
	if m.freelist < 2 || m.freelist >= m.highWater {
		return damaged("freelist page %d is outside the file's %d pages", m.freelist, m.highWater)
	}
	ids, err := readFreelist(f, m)
	if err != nil {
		return damaged("freelist page %d: %v", m.freelist, err)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for i, id := range ids {
		if id < 2 || id >= m.highWater || (i > 0 && ids[i-1] == id) {
			return damaged("freelist page %d lists page %d twice or out of range", m.freelist, id)
		}
	}
	return nil
}

// metaDamage says which meta page does not parse ("" when both do, or
// when neither does: bbolt then refuses the file itself).
func metaDamage(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	_, ok := readMetas(f)
	switch {
	case ok[0] && !ok[1]:
		return "meta page 1 is damaged (the newest write may be lost)"
	case !ok[0] && ok[1]:
		return "meta page 0 is damaged (the newest write may be lost)"
	}
	return ""
}

// readMeta returns the meta bbolt would use: the valid one with the highest
// transaction id.
func readMeta(f *os.File) (metaPage, bool) {
	m, ok := readMetas(f)
	switch {
	case ok[0] && ok[1] && m[1].txid > m[0].txid, !ok[0] && ok[1]:
		return m[1], true
	case ok[0]:
		return m[0], true
	}
	return metaPage{}, false
}

// readMetas parses both meta pages; the second is where the first says
// pages end, or at the OS page size when the first does not parse.
func readMetas(f *os.File) (m [2]metaPage, ok [2]bool) {
	m[0], ok[0] = parseMeta(f, 0)
	ps := m[0].pageSize
	if !ok[0] {
		ps = uint64(os.Getpagesize())
	}
	m[1], ok[1] = parseMeta(f, int64(ps))
	return m, ok
}

func parseMeta(f *os.File, off int64) (metaPage, bool) {
	var buf [pageHeaderSize + metaSize]byte
	if _, err := f.ReadAt(buf[:], off); err != nil {
		return metaPage{}, false
	}
	ne := binary.NativeEndian
	meta := buf[pageHeaderSize:]
	h := fnv.New64a()
	h.Write(meta[:56])
	if ne.Uint32(meta[0:]) != boltMagic || ne.Uint32(meta[4:]) != boltVersion || ne.Uint64(meta[56:]) != h.Sum64() {
		return metaPage{}, false
	}
	m := metaPage{pageSize: uint64(ne.Uint32(meta[8:])), freelist: ne.Uint64(meta[32:]), highWater: ne.Uint64(meta[40:]), txid: ne.Uint64(meta[48:])}
	if m.pageSize < 512 || m.pageSize > 1<<20 {
		return metaPage{}, false
	}
	return m, true
}

// readFreelist reads the page ids the freelist page lists, checking its
// header as bbolt would.
func readFreelist(f *os.File, m metaPage) ([]uint64, error) {
	ne := binary.NativeEndian
	var hdr [pageHeaderSize + 8]byte
	if _, err := f.ReadAt(hdr[:], int64(m.freelist*m.pageSize)); err != nil {
		return nil, err
	}
	if id := ne.Uint64(hdr[0:]); id != m.freelist {
		return nil, fmt.Errorf("the page says it is page %d", id)
	}
	if flags := ne.Uint16(hdr[8:]); flags != freelistPageFlag {
		return nil, fmt.Errorf("page type %#x, not a freelist", flags)
	}
	count, start := uint64(ne.Uint16(hdr[10:])), uint64(pageHeaderSize)
	if count == 0xFFFF {
		count, start = ne.Uint64(hdr[pageHeaderSize:]), pageHeaderSize+8
	}
	span := (uint64(ne.Uint32(hdr[12:])) + 1) * m.pageSize
	if count > maxFreelistBytes/8 || start+count*8 > span || m.freelist*m.pageSize+span > m.highWater*m.pageSize {
		return nil, fmt.Errorf("%d entries do not fit its %d bytes", count, span)
	}
	raw := make([]byte, count*8)
	if _, err := f.ReadAt(raw, int64(m.freelist*m.pageSize+start)); err != nil {
		return nil, err
	}
	ids := make([]uint64, count)
	for i := range ids {
		ids[i] = ne.Uint64(raw[i*8:])
	}
	return ids, nil
}
