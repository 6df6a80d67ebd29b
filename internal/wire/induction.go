package wire

// AnswersInduction reports whether b is an HSv5 listener's answer to an
// induction sent from socket: an induction handshake addressed to that
// socket and carrying the SRT magic. Health checks and test probes ask a
// listener this way because it answers without keeping any state.
func AnswersInduction(b []byte, socket uint32) bool {
	hs, err := ParseHandshake(b)
	return err == nil && hs.Type == HSInduction && hs.Header.DestSocket == socket && hs.ExtField == Magic
}
