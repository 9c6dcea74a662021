package redact

import (
	"slices"
	"strings"
)

// matcher replaces a fixed set of patterns with Mask in one pass. Results
// can be tens of megabytes (a fleet-wide list of watches with their
// Reports) and the patterns hundreds (every encoding of every token, each
// line of a key): strings.Replacer's trie runs at about 70 MB/s there.
// Here each position costs one bit test on its first two bytes; only the
// rare positions whose two bytes start some pattern compare further.
type matcher struct {
	pairs    [1 << 16 / 64]uint64 // bit set: the 2-byte prefixes of the patterns
	byPrefix map[uint16][]string  // patterns by prefix, longest first
	single   [256]bool            // 1-byte patterns
	minLen   int
}

func newMatcher(patterns []string) *matcher {
	if len(patterns) == 0 {
		return nil
	}
	m := &matcher{byPrefix: map[uint16][]string{}, minLen: len(patterns[0])}
	for _, p := range patterns {
		m.minLen = min(m.minLen, len(p))
		if len(p) == 1 {
			m.single[p[0]] = true
			continue
		}
		k := prefix(p, 0)
		m.pairs[k>>6] |= 1 << (k & 63)
		m.byPrefix[k] = append(m.byPrefix[k], p)
	}
	for _, ps := range m.byPrefix {
		// Longest first, so that a secret containing another is hidden
		// whole.
		slices.SortStableFunc(ps, func(a, b string) int { return len(b) - len(a) })
	}
	return m
}

func prefix(s string, i int) uint16 { return uint16(s[i])<<8 | uint16(s[i+1]) }

// match returns the length of the longest pattern at s[i:], or 0.
func (m *matcher) match(s string, i int) int {
	if i+1 < len(s) {
		for _, p := range m.byPrefix[prefix(s, i)] {
			if strings.HasPrefix(s[i:], p) {
				return len(p)
			}
		}
	}
	if m.single[s[i]] {
		return 1
	}
	return 0
}

// candidate is the fast test: can a pattern start at s[i]?
func (m *matcher) candidate(s string, i int) bool {
	if i+1 < len(s) {
		if k := prefix(s, i); m.pairs[k>>6]&(1<<(k&63)) != 0 {
			return true
		}
	}
	return m.single[s[i]]
}

// replace returns s with every pattern replaced by Mask; s itself when
// there is none (no allocation).
func (m *matcher) replace(s string) string {
	if len(s) < m.minLen {
		return s
	}
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); i++ {
		if !m.candidate(s, i) {
			continue
		}
		n := m.match(s, i)
		if n == 0 {
			continue
		}
		if last == 0 && b.Len() == 0 {
			b.Grow(len(s))
		}
		b.WriteString(s[last:i])
		b.WriteString(Mask)
		last = i + n
		i = last - 1
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}
