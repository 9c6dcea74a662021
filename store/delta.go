package store

import (
	"encoding/binary"
	"errors"
)

// A delta encodes target as copies from base and literal runs, for a
// checkpoint Report against the last change's Report: their JSON differs in
// a few numbers and times, so the delta is a few dozen bytes. DEFLATE with
// base as dictionary compresses as well, but costs a fresh 600 KB
// compressor per call (a dictionary writer cannot be reset and reused).
//
// Form: a sequence of ops, each a uvarint n<<1|c: c=1 copies n bytes from
// the base at the uvarint offset that follows; c=0 inserts the n bytes that
// follow.

const (
	deltaMinMatch = 8
	deltaTableLog = 12
)

func deltaHash(b []byte) uint32 {
	return uint32((binary.LittleEndian.Uint64(b) * 0x9E3779B97F4A7C15) >> (64 - deltaTableLog))
}

// appendDelta appends the delta from base to target.
func appendDelta(dst, base, target []byte) []byte {
	var table [1 << deltaTableLog]int32 // position + 1 in base
	for i := 0; i+deltaMinMatch <= len(base); i++ {
		h := deltaHash(base[i:])
		if table[h] == 0 {
			table[h] = int32(i + 1)
		}
	}
	lit := 0
	for i := 0; i+deltaMinMatch <= len(target); {
		p := int(table[deltaHash(target[i:])]) - 1
		if p < 0 || string(base[p:p+deltaMinMatch]) != string(target[i:i+deltaMinMatch]) {
			i++
			continue
		}
		for i > lit && p > 0 && base[p-1] == target[i-1] {
			i, p = i-1, p-1
		}
		n := deltaMinMatch
		for p+n < len(base) && i+n < len(target) && base[p+n] == target[i+n] {
			n++
		}
		dst = appendLiteral(dst, target[lit:i])
		dst = binary.AppendUvarint(dst, uint64(n)<<1|1)
		dst = binary.AppendUvarint(dst, uint64(p))
		i += n
		lit = i
	}
	return appendLiteral(dst, target[lit:])
}

func appendLiteral(dst, b []byte) []byte {
	if len(b) == 0 {
		return dst
	}
	dst = binary.AppendUvarint(dst, uint64(len(b))<<1)
	return append(dst, b...)
}

var errBadDelta = errors.New("malformed delta")

// applyDelta rebuilds the target from base and a delta.
func applyDelta(base, delta []byte) ([]byte, error) {
	out := make([]byte, 0, len(base)+64)
	for len(delta) > 0 {
		op, n := binary.Uvarint(delta)
		if n <= 0 {
			return nil, errBadDelta
		}
		delta = delta[n:]
		size := op >> 1
		if op&1 == 0 {
			if size > uint64(len(delta)) {
				return nil, errBadDelta
			}
			out = append(out, delta[:size]...)
			delta = delta[size:]
			continue
		}
		off, n := binary.Uvarint(delta)
		if n <= 0 || off > uint64(len(base)) || size > uint64(len(base))-off {
			return nil, errBadDelta
		}
		delta = delta[n:]
		out = append(out, base[off:off+size]...)
	}
	return out, nil
}
