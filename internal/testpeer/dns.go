package testpeer

import (
	"net"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// DNS is a real DNS server on a free localhost UDP port, answering A, AAAA
// and SRV questions from records a test changes while it runs. Names it
// has no records of get NXDOMAIN; while failing, every question gets
// SERVFAIL (a resolver that is up but cannot answer).
type DNS struct {
	Addr    string
	srv     *dns.Server
	mu      sync.Mutex
	records map[string][]dns.RR // fqdn → records
	failing bool
}

// StartDNS starts the server; it stops when the test ends.
func StartDNS(t testing.TB) *DNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &DNS{Addr: pc.LocalAddr().String(), records: map[string][]dns.RR{}}
	started := make(chan struct{})
	d.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.serve), NotifyStartedFunc: func() { close(started) }}
	go func() { _ = d.srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = d.srv.Shutdown() })
	return d
}

// Set replaces the records of the names they carry, given in zone-file
// form ("origins.test. 1 IN A 127.0.0.2"); a name given with no records
// (Set(name)) loses all of them.
func (d *DNS) Set(t testing.TB, name string, rrs ...string) {
	t.Helper()
	var list []dns.RR
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("record %q: %v", s, err)
		}
		list = append(list, rr)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.records[dns.Fqdn(name)] = list
}

// Fail makes every answer SERVFAIL (true) or normal again (false).
func (d *DNS) Fail(failing bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failing = failing
}

func (d *DNS) serve(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	d.mu.Lock()
	if d.failing {
		m.Rcode = dns.RcodeServerFailure
	} else if len(req.Question) == 1 {
		q := req.Question[0]
		rrs, known := d.records[q.Name]
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
		if !known || len(rrs) == 0 {
			m.Rcode = dns.RcodeNameError
		}
	}
	d.mu.Unlock()
	_ = w.WriteMsg(m)
}

// StallingResolver is a UDP socket that takes DNS questions and never
// answers them; it closes when the test ends.
func StallingResolver(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}
