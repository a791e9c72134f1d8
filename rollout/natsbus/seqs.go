// seqs.go: a bounded memory of recent stream sequences, with which the learner counts a terminated message
// once however many junk messages arrive.

package natsbus

// recentSeqs remembers the last n stream sequences added: a message redelivered before the server saw its
// termination is counted once, with memory bounded however many junk messages arrive.
type recentSeqs struct {
	seen map[uint64]bool
	ring []uint64
	next int
}

func newRecentSeqs(n int) recentSeqs {
	return recentSeqs{seen: make(map[uint64]bool, n), ring: make([]uint64, 0, n)}
}

// add records seq and says whether it is new.
func (r *recentSeqs) add(seq uint64) bool {
	if r.seen[seq] {
		return false
	}
	if len(r.ring) < cap(r.ring) {
		r.ring = append(r.ring, seq)
	} else {
		delete(r.seen, r.ring[r.next])
		r.ring[r.next] = seq
		r.next = (r.next + 1) % len(r.ring)
	}
	r.seen[seq] = true
	return true
}
