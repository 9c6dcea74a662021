package testlab

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// DNSZone maps a name (no trailing dot) to its CAA records in zone-file
// form, such as `0 issue "letsencrypt.org"`. The single value DNSServFail
// makes the name answer SERVFAIL. Other names exist without records.
type DNSZone map[string][]string

// DNSServFail as a name's only record makes its lookups fail.
const DNSServFail = "SERVFAIL"

// DNSServer is a CAA-answering DNS server on 127.0.0.1, UDP and TCP on
// the same port.
type DNSServer struct {
	Addr    string        // 127.0.0.1:port
	Queries *atomic.Int64 // questions answered, over both transports
}

// ServeDNS serves zone until the test ends. With truncateUDP, every UDP
// answer is empty and truncated, as a resolver answers when the records do
// not fit a datagram, so clients must retry over TCP.
func ServeDNS(t testing.TB, zone DNSZone, truncateUDP bool) *DNSServer {
	t.Helper()
	pc, ln := listenSamePort(t)
	s := &DNSServer{Addr: pc.LocalAddr().String(), Queries: new(atomic.Int64)}
	handler := func(udp bool) dns.HandlerFunc {
		return func(w dns.ResponseWriter, req *dns.Msg) {
			s.Queries.Add(1)
			w.WriteMsg(answerCAA(t, zone, req, udp && truncateUDP))
		}
	}
	servers := []*dns.Server{
		{PacketConn: pc, Handler: handler(true)},
		{Listener: ln, Handler: handler(false)},
	}
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("testlab: DNS server did not start")
		}
		t.Cleanup(func() { srv.Shutdown() })
	}
	return s
}

// listenSamePort opens UDP and TCP listeners on one loopback port.
func listenSamePort(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testlab: listen udp: %v", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
	}
	t.Fatal("testlab: no port free for both UDP and TCP")
	return nil, nil
}

func answerCAA(t testing.TB, zone DNSZone, req *dns.Msg, truncate bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := req.Question[0]
	name := strings.ToLower(strings.TrimSuffix(q.Name, "."))
	recs := zone[name]
	switch {
	case len(recs) == 1 && recs[0] == DNSServFail:
		m.Rcode = dns.RcodeServerFailure
	case truncate:
		m.Truncated = true
	case q.Qtype == dns.TypeCAA:
		for _, r := range recs {
			rr, err := dns.NewRR(q.Name + " 300 IN CAA " + r)
			if err != nil {
				t.Errorf("testlab: bad CAA record %q: %v", r, err)
				continue
			}
			m.Answer = append(m.Answer, rr)
		}
	}
	return m
}
