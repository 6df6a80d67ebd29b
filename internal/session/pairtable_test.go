package session

import "testing"

func TestPairTable(t *testing.T) {
	var tab pairTable
	a, b, c := &relayPair{}, &relayPair{}, &relayPair{}
	ka, kb := tab.put(a), tab.put(b)
	if ka == wakeKey || kb == wakeKey || ka == kb {
		t.Fatalf("keys %d and %d: want two distinct keys other than %d", ka, kb, wakeKey)
	}
	if tab.get(ka) != a || tab.get(kb) != b || tab.get(wakeKey) != nil || tab.get(1000) != nil {
		t.Fatal("get returned the wrong pair")
	}
	tab.drop(ka)
	tab.drop(ka) // twice: no double free
	if tab.get(ka) != nil || tab.n != 1 {
		t.Fatalf("after drop: get = %v, n = %d", tab.get(ka), tab.n)
	}
	kc := tab.put(c)
	if kc != ka {
		t.Fatalf("put after drop took key %d, want the freed %d", kc, ka)
	}
	if kd := tab.put(a); kd == ka || kd == kb || kd == wakeKey {
		t.Fatalf("a new key %d collides", kd)
	}
	if tab.n != 3 || tab.get(kb) != b || tab.get(kc) != c {
		t.Fatal("the table lost a pair")
	}
}
