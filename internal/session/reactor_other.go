//go:build !linux

package session

// Without epoll, fast-path sessions relay with a goroutine per direction.

type relayPair struct{ caller, upstream Link }

func newRelayPair(*Session, Link) *relayPair { return nil }

func (p *relayPair) handOver() {}
func (p *relayPair) release()  {}
func (p *relayPair) discard()  {}

var useReactor = false

// RelayWakeups is zero: no reactor relays here.
func RelayWakeups() (datagrams, timer uint64) { return 0, 0 }
