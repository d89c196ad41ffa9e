package node

// ForwardQueueDepth returns the forwarded messages of this frontend queued
// on its forward streams and not yet written, and the requests waiting for
// their response (queued or written).
func (n *Node) ForwardQueueDepth() (queued, waiting int) {
	f := n.fwd
	f.mu.Lock()
	streams := make([]*fwdStream, 0, len(f.streams))
	for _, st := range f.streams {
		streams = append(streams, st)
	}
	f.mu.Unlock()
	for _, st := range streams {
		q, w := st.queueDepth()
		queued, waiting = queued+q, waiting+w
	}
	return queued, waiting
}

// MemberCounts returns the number of servers of each type in the
// membership.
func (n *Node) MemberCounts() map[string]int {
	out := map[string]int{}
	for _, s := range n.Members("") {
		out[s.Type]++
	}
	return out
}
