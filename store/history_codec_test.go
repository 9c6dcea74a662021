package store

import (
	"bytes"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// exactQuantile is the definition the sketch approximates: the value of
// rank floor(q*(n-1)) in sorted order.
func exactQuantile(sorted []float64, q float64) float64 {
	return sorted[int(q*float64(len(sorted)-1))]
}

// within: got is want to within a relative bound, after the rounding to
// the microsecond that aggregates apply.
func within(got, want, bound float64) bool {
	return math.Abs(got-want) <= bound*want+5e-4
}

func TestSketchQuantilesWithinBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		gen  func() float64 // ms
		n    int
	}{
		{"one", func() float64 { return 12.345 }, 1},
		{"lognormal", func() float64 { return 20 * math.Exp(rng.NormFloat64()*0.3) }, 5000},
		{"bimodal", func() float64 {
			if rng.IntN(10) == 0 {
				return 900 + rng.Float64()*100
			}
			return 3 + rng.Float64()
		}, 3000},
		{"sub-millisecond", func() float64 { return 0.05 + rng.Float64()*0.2 }, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a agg
			var vals []float64
			for range tc.n {
				ms := tc.gen()
				us := usOf(ms)
				vals = append(vals, float64(us)/1000)
				a.add(stOK, us)
			}
			slices.Sort(vals)
			s := a.summary()
			for _, c := range []struct {
				name      string
				got, want float64
			}{
				{"p50", s.HandshakeP50MS, exactQuantile(vals, 0.5)},
				{"p95", s.HandshakeP95MS, exactQuantile(vals, 0.95)},
				{"max", s.HandshakeMaxMS, vals[len(vals)-1]},
			} {
				if !within(c.got, c.want, LatencyErrorBound) {
					t.Errorf("%s = %.4f, exact %.4f: off by %.2f%%", c.name, c.got, c.want, 100*math.Abs(c.got-c.want)/c.want)
				}
			}
			if s.Handshakes != tc.n || s.Probes != tc.n {
				t.Errorf("counts: %+v", s)
			}
		})
	}
}

func TestSketchMergeEqualsWhole(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var whole, a, b agg
	for i := range 2000 {
		us := int64(1000 + rng.IntN(200000))
		st := uint8(rng.IntN(4))
		whole.add(st, us)
		if i%3 == 0 {
			a.add(st, us)
		} else {
			b.add(st, us)
		}
	}
	a.merge(&b)
	if !reflect.DeepEqual(a, whole) {
		t.Error("merge of parts differs from the aggregate of the whole")
	}
}

func TestAggCodecRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	mk := func(n int, statuses int, lat bool) agg {
		var a agg
		for range n {
			us := int64(0)
			if lat {
				us = int64(500 + rng.IntN(50000))
			}
			a.add(uint8(rng.IntN(statuses)), us)
		}
		return a
	}
	for _, tc := range []struct {
		name string
		v    dayAggs
	}{
		{"empty", dayAggs{}},
		{"one probe an hour", func() dayAggs {
			var v dayAggs
			for h := range 24 {
				v.hours[h] = mk(1, 1, true)
				v.mask |= 1 << h
			}
			return v
		}()},
		{"down without handshake", func() dayAggs {
			var v dayAggs
			v.hours[3].add(stDown, 0)
			v.mask = 1 << 3
			return v
		}()},
		{"dense mixed with day part", func() dayAggs {
			var v dayAggs
			for _, h := range []int{0, 7, 23} {
				v.hours[h] = mk(3600, 4, true)
				v.mask |= 1 << h
			}
			v.day, v.dayOK = v.whole(), true
			return v
		}()},
		{"same status many", func() dayAggs {
			var v dayAggs
			v.hours[12] = mk(60, 1, true)
			v.mask = 1 << 12
			return v
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeDayAggs(tc.v.encode())
			if err != nil {
				t.Fatal(err)
			}
			norm := func(v dayAggs) dayAggs {
				for i := range v.hours {
					if len(v.hours[i].lat) == 0 {
						v.hours[i].lat = nil
					}
				}
				if len(v.day.lat) == 0 {
					v.day.lat = nil
				}
				return v
			}
			if !reflect.DeepEqual(norm(got), norm(tc.v)) {
				t.Errorf("round trip differs:\n got %+v\nwant %+v", got, tc.v)
			}
		})
	}
	// Garbage never panics.
	for i := range 2000 {
		b := make([]byte, rng.IntN(40))
		for j := range b {
			b[j] = byte(rng.IntN(256))
		}
		if i%2 == 0 && len(b) > 0 {
			b[0] = dayAggsV1
		}
		decodeDayAggs(b)
	}
}

func TestSampleBlockRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var want []rawSample
	at := int64(1_780_000_000_000)
	r := ref{1, 2, 3}
	for i := range 200 {
		at += 1000 + int64(rng.IntN(30))
		if i == 50 {
			r = ref{9, 9}
		}
		if i == 60 {
			at -= 5000 // a clock step back is recorded at the previous time
		}
		want = append(want, rawSample{at: at, status: uint8(rng.IntN(4)), ref: r,
			lat: [3]int64{int64(rng.IntN(3)), 3000 + int64(rng.IntN(100)), 9000 + int64(rng.IntN(900))}})
	}
	b, st := newBlock(want[0])
	for _, s := range want[1:] {
		b = st.appendSample(b, s)
	}
	want[60].at = want[59].at
	for i := 61; i < len(want); i++ {
		want[i].at = max(want[i].at, want[i-1].at)
	}
	var got []rawSample
	if _, err := decodeBlock(want[0].at, b, func(s *rawSample) bool { got = append(got, *s); return true }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip differs at %d samples", len(got))
	}
	if per := float64(len(b)-9-8) / float64(len(want)); per > 8 {
		t.Errorf("%.1f bytes per sample at a steady 1 s schedule, want at most 8", per)
	}
	for n := range len(b) {
		decodeBlock(0, b[:n], nil) // truncated: an error, never a panic
	}
}

func TestDeltaRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	base := []byte(`{"target":{"host":"a.test","port":443},"status":"ok","findings":[{"code":"expiring_soon","message":"expires in 12 days"}],"leaf":{"days_remaining":12,"sha256":"88720decba7598959ba30174845329a3faf3cb66f4c4ecd6d5ee8ca5da429236"},"revocation":{"this_update":"2026-11-26T10:00:00Z"}}`)
	mutate := func(b []byte, n int) []byte {
		out := append([]byte(nil), b...)
		for range n {
			switch i := rng.IntN(len(out)); rng.IntN(3) {
			case 0:
				out[i] = byte('0' + rng.IntN(10))
			case 1:
				out = append(out[:i], out[i+1:]...)
			default:
				out = append(out[:i], append([]byte{byte('a' + rng.IntN(26))}, out[i:]...)...)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		target []byte
		max    int // bytes the delta may take
	}{
		{"same", base, 8},
		{"one digit", bytes.Replace(base, []byte("12"), []byte("11"), -1), 40},
		{"few edits", mutate(base, 4), 80},
		{"unrelated", []byte("something else entirely, not JSON at all"), 60},
		{"empty", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := appendDelta(nil, base, tc.target)
			got, err := applyDelta(base, d)
			if err != nil || !bytes.Equal(got, tc.target) {
				t.Fatalf("round trip: %q, %v", got, err)
			}
			if len(d) > tc.max {
				t.Errorf("delta %d bytes, want at most %d", len(d), tc.max)
			}
		})
	}
	for range 2000 {
		d := make([]byte, rng.IntN(20))
		for j := range d {
			d[j] = byte(rng.IntN(256))
		}
		applyDelta(base, d) // garbage: an error, never a panic
	}
}
