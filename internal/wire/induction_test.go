package wire

import (
	"net/netip"
	"testing"
)

func TestAnswersInduction(t *testing.T) {
	ind := AppendInduction(nil, 0x1234, 7, 1500, 8192, EncodePeerIP(netip.MustParseAddr("127.0.0.1")), 0)
	req, err := ParseHandshake(ind)
	if err != nil {
		t.Fatal(err)
	}
	answer := AppendInductionResponse(nil, &req, 0xc00c1e, 0)
	if !AnswersInduction(answer, 0x1234) {
		t.Error("a listener's induction response did not answer")
	}
	noMagic := req
	noMagic.Header = Header{Control: true, Type: CtrlHandshake, DestSocket: 0x1234}
	for name, b := range map[string][]byte{
		"to another socket":       AppendInductionResponse(nil, &Handshake{SocketID: 0x4321}, 1, 0),
		"the induction itself":    ind,
		"an answer without magic": noMagic.AppendCIF(nil),
		"cut short":               answer[:len(answer)-1],
		"nothing":                 nil,
	} {
		if AnswersInduction(b, 0x1234) {
			t.Errorf("%s answered", name)
		}
	}
	// Every real listener's first datagram answers its caller's induction.
	for _, c := range loadCaptures(t) {
		var caller, listener []byte
		for _, d := range c.Datagrams {
			if d.FromCaller && caller == nil {
				caller = d.Bytes
			}
			if !d.FromCaller && listener == nil {
				listener = d.Bytes
			}
		}
		hs, err := ParseHandshake(caller)
		if err != nil || hs.Type != HSInduction {
			t.Fatalf("%s: the caller did not open with an induction: %v", c.Name, err)
		}
		if !AnswersInduction(listener, hs.SocketID) {
			t.Errorf("%s: the listener's first datagram does not answer the induction", c.Name)
		}
	}
}
