package wire

import "fmt"

// What a caller's HSv5 conclusion may carry, as libsrt and gosrt callers
// send it: exactly one HSREQ of three words, at most one KMREQ whose key
// material is well formed and matches the encryption field, at most one
// stream ID and congestion block, no response blocks, no unknown ones,
// and an extension field that announces what is there. Origins drop
// other shapes, some without a word (gosrt), some after reading too far
// (libsrt before 1.5.6): the relay refuses them before any origin sees
// them, and before they hold a handshake slot.

// hsreqLen is the body of an HSREQ: SRT version, flags, latencies.
const hsreqLen = 12

// maxCongestionLen is the longest congestion controller name block
// ("live", "file").
const maxCongestionLen = 4

// CheckCallerConclusion checks the extensions of a caller's HSv5
// conclusion (ParseConclusion has walked them already).
func CheckCallerConclusion(hs *Handshake) error {
	if hs.Version != 5 || hs.Type != HSConclusion {
		return nil
	}
	var seen [ExtGroup + 1]int
	var kmKeyLen int
	rest := hs.Extensions
	for {
		ext, r, ok, err := NextExtension(rest)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		rest = r
		if ext.Type == 0 || ext.Type > ExtGroup {
			return fmt.Errorf("%w: unknown extension type %d", ErrExtension, ext.Type)
		}
		seen[ext.Type]++
		switch ext.Type {
		case ExtHSRSP, ExtKMRSP:
			return fmt.Errorf("%w: a response block (type %d) in a request", ErrExtension, ext.Type)
		case ExtHSREQ:
			if len(ext.Body) != hsreqLen {
				return fmt.Errorf("%w: HSREQ of %d bytes, want %d", ErrExtension, len(ext.Body), hsreqLen)
			}
		case ExtKMREQ:
			if err := CheckKeyMaterial(ext.Body); err != nil {
				return fmt.Errorf("%w: KMREQ: %v", ErrExtension, err)
			}
			kmKeyLen = int(ext.Body[15]) * 4
		case ExtCongestion:
			if len(ext.Body) > maxCongestionLen {
				return fmt.Errorf("%w: congestion block of %d bytes", ErrExtension, len(ext.Body))
			}
		}
	}
	for typ, n := range seen {
		if n > 1 && typ != ExtFilter {
			return fmt.Errorf("%w: extension type %d repeated", ErrExtension, typ)
		}
	}
	if seen[ExtHSREQ] != 1 || hs.ExtField&ExtFlagHSREQ == 0 {
		return fmt.Errorf("%w: no HSREQ, or not announced", ErrExtension)
	}
	if (seen[ExtKMREQ] == 1) != (hs.ExtField&ExtFlagKMREQ != 0) {
		return fmt.Errorf("%w: KMREQ flag and block disagree", ErrExtension)
	}
	if kmKeyLen != 0 && hs.Encryption != 0 && int(hs.Encryption)*8 != kmKeyLen {
		return fmt.Errorf("%w: encryption field %d against a %d-byte key", ErrExtension, hs.Encryption, kmKeyLen)
	}
	if hs.ExtField&^(ExtFlagHSREQ|ExtFlagKMREQ|ExtFlagCONFIG) != 0 {
		return fmt.Errorf("%w: extension field %#x", ErrExtension, hs.ExtField)
	}
	return nil
}
