// engine_fork.go: copying a session, so that the G samples of a group share one prefill of their prompt.

package model

// CopyFrom makes s a copy of o's state (cache up to o.Len, last logits and experts). Both must come from the
// same engine with the same MaxLen or larger for s.
func (s *Session) CopyFrom(o *Session) {
	c := s.e.Cfg
	for l := range s.latent {
		copy(s.latent[l][:o.Len*c.KVLoraRank], o.latent[l][:o.Len*c.KVLoraRank])
		copy(s.krope[l][:o.Len*c.QKRopeHeadDim], o.krope[l][:o.Len*c.QKRopeHeadDim])
		if s.Experts[l] != nil {
			copy(s.Experts[l], o.Experts[l])
		}
	}
	copy(s.Logits, o.Logits)
	s.Len = o.Len
}
