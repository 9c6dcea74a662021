package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"time"

	"github.com/tlswatch/tlswatch/probe"
)

// Aggregates summarise a watch per UTC hour and per UTC day: probes by
// status and the handshake latencies in a log-bucket sketch (the DDSketch
// idea). Bucket i holds latencies in (γ^(i-1), γ^i] microseconds with
// γ = 1.02 and reports the bucket's midpoint 2γ^i/(γ+1), so every latency
// figure read from an aggregate (p50, p95, max) is within 1% of the exact
// value from the raw samples: (γ-1)/(γ+1) = 0.99%. Counts are exact. Sketches
// merge by adding bucket counts, so a day is the exact merge of its hours and
// a month of its days, with the same 1% bound: no quantile of quantiles.
const sketchGamma = 1.02

// LatencyErrorBound is the largest relative error of a latency read from an
// aggregate, against the exact value from the raw samples.
const LatencyErrorBound = (sketchGamma - 1) / (sketchGamma + 1)

// maxBucket caps the index: γ^1100 µs is about 80 minutes, beyond any probe
// deadline.
const maxBucket = 1100

var lnGamma = math.Log(sketchGamma)

// Status indexes of agg.st and of a sample's status bits.
const (
	stOK = iota
	stWarning
	stCritical
	stDown
)

var statusNames = [4]probe.Status{probe.StatusOK, probe.StatusWarning, probe.StatusCritical, probe.StatusDown}

// statusCode maps a Report status to its index. A status this store does not
// know is kept as critical: not a failure (uptime), not healthy either.
func statusCode(s probe.Status) uint8 {
	switch s {
	case probe.StatusOK:
		return stOK
	case probe.StatusWarning:
		return stWarning
	case probe.StatusDown:
		return stDown
	}
	return stCritical
}

func bucketOf(us int64) uint32 {
	if us <= 1 {
		return 0
	}
	i := math.Ceil(math.Log(float64(us)) / lnGamma)
	if i > maxBucket {
		return maxBucket
	}
	return uint32(i)
}

// bucketMS is bucket i's representative latency in milliseconds.
func bucketMS(i uint32) float64 {
	if i == 0 {
		return 0.001
	}
	return 2 * math.Pow(sketchGamma, float64(i)) / (sketchGamma + 1) / 1000
}

type bucket struct{ idx, n uint32 }

// sketch is sorted by idx, without empty buckets.
type sketch []bucket

func (s *sketch) add(idx, n uint32) {
	i := sort.Search(len(*s), func(i int) bool { return (*s)[i].idx >= idx })
	if i < len(*s) && (*s)[i].idx == idx {
		(*s)[i].n += n
		return
	}
	*s = append(*s, bucket{})
	copy((*s)[i+1:], (*s)[i:])
	(*s)[i] = bucket{idx, n}
}

func (s sketch) count() uint64 {
	var n uint64
	for _, b := range s {
		n += uint64(b.n)
	}
	return n
}

// quantile is the value of rank floor(q*(n-1)) in sorted order (the lower
// nearest rank), to within LatencyErrorBound.
func (s sketch) quantile(q float64) float64 {
	n := s.count()
	if n == 0 {
		return 0
	}
	rank := uint64(q * float64(n-1))
	var seen uint64
	for _, b := range s {
		seen += uint64(b.n)
		if seen > rank {
			return bucketMS(b.idx)
		}
	}
	return bucketMS(s[len(s)-1].idx)
}

// agg is one period's aggregate.
type agg struct {
	st  [4]uint32 // probes by status: ok, warning, critical, down
	lat sketch    // handshake latencies of the probes that completed one
}

func (a *agg) probes() uint32 { return a.st[0] + a.st[1] + a.st[2] + a.st[3] }

// add counts one probe; hsUS <= 0 means no handshake completed.
func (a *agg) add(status uint8, hsUS int64) {
	a.st[status&3]++
	if hsUS > 0 {
		a.lat.add(bucketOf(hsUS), 1)
	}
}

func (a *agg) merge(b *agg) {
	for i := range a.st {
		a.st[i] += b.st[i]
	}
	for _, x := range b.lat {
		a.lat.add(x.idx, x.n)
	}
}

// Aggregate is what the store knows of one period (or of any range, merged).
type Aggregate struct {
	// Start is the period's start (a UTC hour or day; for a merged range,
	// the range's start).
	Start  time.Time `json:"start"`
	Probes int       `json:"probes"`
	// Failures are the probes whose status was down (not reachable or not
	// trusted), the watcher's notion of a failed probe.
	Failures int `json:"failures,omitempty"`
	// Uptime is the share of probes that did not fail, 0..1 (0 with no probes).
	Uptime float64 `json:"uptime"`
	// Statuses counts probes by status.
	Statuses StatusCounts `json:"statuses"`
	// Handshake latency of the probes that completed a handshake, in ms,
	// each within LatencyErrorBound of the exact figure (left out of the
	// JSON when none did).
	Handshakes     int     `json:"handshakes,omitempty"`
	HandshakeP50MS float64 `json:"handshake_p50_ms,omitempty"`
	HandshakeP95MS float64 `json:"handshake_p95_ms,omitempty"`
	HandshakeMaxMS float64 `json:"handshake_max_ms,omitempty"`
}

// StatusCounts counts probes by Report status (zero counts are left out of
// the JSON).
type StatusCounts struct {
	OK       int `json:"ok,omitempty"`
	Warning  int `json:"warning,omitempty"`
	Critical int `json:"critical,omitempty"`
	Down     int `json:"down,omitempty"`
}

func (a *agg) summary() Aggregate {
	out := Aggregate{
		Probes:     int(a.probes()),
		Failures:   int(a.st[stDown]),
		Statuses:   StatusCounts{int(a.st[stOK]), int(a.st[stWarning]), int(a.st[stCritical]), int(a.st[stDown])},
		Handshakes: int(a.lat.count()),
	}
	if out.Probes > 0 {
		out.Uptime = round(float64(out.Probes-out.Failures)/float64(out.Probes), 6)
	}
	if len(a.lat) > 0 {
		// To the microsecond, as samples are: the sketch's 1% is coarser.
		out.HandshakeP50MS = round(a.lat.quantile(0.50), 3)
		out.HandshakeP95MS = round(a.lat.quantile(0.95), 3)
		out.HandshakeMaxMS = round(bucketMS(a.lat[len(a.lat)-1].idx), 3)
	}
	return out
}

// round keeps digits decimals (dividing by a power of ten, so that the
// result prints as short as it reads).
func round(v float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(v*p) / p
}

// --- encoding ---
//
// One aggregate, first byte h:
//
//	1 0 0 0 0 L s s   one probe of status s; L: a latency follows as a
//	                  zigzag delta of its bucket against the previous one
//	0 1 0 0 0 0 s s   n probes (uvarint follows), all of status s
//	0 0 0 0 0 0 0 0   mixed: four uvarint counts follow
//
// then, unless single: uvarint k buckets; if k > 0 the first index as a
// zigzag delta against the previous aggregate's first bucket, its count, and
// for the others the gap to the previous index minus one and the count. The
// "previous bucket" chain makes an hour of one probe at a stable latency
// cost two bytes.
const (
	aggSingle = 0x80
	aggLat    = 0x04
	aggSame   = 0x40
)

func appendAgg(b []byte, a *agg, prev *uint32) []byte {
	n := a.probes()
	if n == 1 && len(a.lat) <= 1 {
		var s uint8
		for i, c := range a.st {
			if c == 1 {
				s = uint8(i)
			}
		}
		if len(a.lat) == 0 {
			return append(b, aggSingle|s)
		}
		b = append(b, aggSingle|aggLat|s)
		b = binary.AppendVarint(b, int64(a.lat[0].idx)-int64(*prev))
		*prev = a.lat[0].idx
		return b
	}
	same := -1
	for i, c := range a.st {
		if c == n {
			same = i
		}
	}
	if same >= 0 {
		b = append(b, aggSame|uint8(same))
		b = binary.AppendUvarint(b, uint64(n))
	} else {
		b = append(b, 0)
		for _, c := range a.st {
			b = binary.AppendUvarint(b, uint64(c))
		}
	}
	b = binary.AppendUvarint(b, uint64(len(a.lat)))
	for i, x := range a.lat {
		if i == 0 {
			b = binary.AppendVarint(b, int64(x.idx)-int64(*prev))
			*prev = x.idx
		} else {
			b = binary.AppendUvarint(b, uint64(x.idx-a.lat[i-1].idx-1))
		}
		b = binary.AppendUvarint(b, uint64(x.n))
	}
	return b
}

var errBadAgg = errors.New("malformed aggregate")

func readAgg(d *decoder, prev *uint32) (agg, error) {
	var a agg
	if len(d.b) == 0 {
		return a, errBadAgg
	}
	h := d.b[0]
	d.b = d.b[1:]
	switch {
	case h&aggSingle != 0:
		a.st[h&3] = 1
		if h&aggLat != 0 {
			idx := int64(*prev) + d.num()
			if idx < 0 || idx > maxBucket {
				return a, errBadAgg
			}
			*prev = uint32(idx)
			a.lat = sketch{{uint32(idx), 1}}
		}
		return a, d.err
	case h&aggSame != 0:
		a.st[h&3] = uint32(d.unum())
	default:
		for i := range a.st {
			a.st[i] = uint32(d.unum())
		}
	}
	k := d.unum()
	if k > maxBucket+1 {
		return a, errBadAgg
	}
	a.lat = make(sketch, 0, k)
	var idx int64
	for i := uint64(0); i < k && d.err == nil; i++ {
		if i == 0 {
			idx = int64(*prev) + d.num()
			*prev = uint32(max(idx, 0))
		} else {
			idx += int64(d.unum()) + 1
		}
		if idx < 0 || idx > maxBucket {
			return a, errBadAgg
		}
		a.lat = append(a.lat, bucket{uint32(idx), uint32(d.unum())})
	}
	return a, d.err
}

// dayAggs is the value of one watch's UTC day in the aggregates bucket: the
// hours that have probes and, once hours start being pruned while the day is
// still kept, the day's own aggregate rolled up from all of them (dayOK).
type dayAggs struct {
	day   agg
	dayOK bool
	mask  uint32 // bit h: hour h present
	hours [24]agg
}

const dayAggsV1 = 1

func (v *dayAggs) encode() []byte {
	b := make([]byte, 0, 64)
	b = append(b, dayAggsV1)
	var prev uint32
	if v.dayOK {
		b = append(b, 1)
		b = appendAgg(b, &v.day, &prev)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(v.mask))
	for h := 0; h < 24; h++ {
		if v.mask&(1<<h) != 0 {
			b = appendAgg(b, &v.hours[h], &prev)
		}
	}
	return b
}

func decodeDayAggs(raw []byte) (dayAggs, error) {
	var v dayAggs
	if len(raw) < 2 || raw[0] != dayAggsV1 {
		return v, fmt.Errorf("aggregates: unknown encoding")
	}
	d := decoder{b: raw[2:]}
	var prev uint32
	var err error
	if raw[1]&1 != 0 {
		v.dayOK = true
		if v.day, err = readAgg(&d, &prev); err != nil {
			return v, fmt.Errorf("aggregates: day: %w", err)
		}
	}
	v.mask = uint32(d.unum())
	if v.mask >= 1<<24 || d.err != nil {
		return v, fmt.Errorf("aggregates: bad hour mask")
	}
	for m := v.mask; m != 0; m &= m - 1 {
		h := bits.TrailingZeros32(m)
		if v.hours[h], err = readAgg(&d, &prev); err != nil {
			return v, fmt.Errorf("aggregates: hour %d: %w", h, err)
		}
	}
	return v, nil
}

// whole is the day's aggregate: the rolled-up one, or the merge of its hours.
func (v *dayAggs) whole() agg {
	if v.dayOK {
		return v.day
	}
	var a agg
	for m := v.mask; m != 0; m &= m - 1 {
		a.merge(&v.hours[bits.TrailingZeros32(m)])
	}
	return a
}

func (d *decoder) unum() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShortRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}
